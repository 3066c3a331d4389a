"""Greedy generation tokens/s: neat's KV-cache decoding against Hugging Face's `generate`.

Both decode the same weights: a neat checkpoint and its `neat checkpoints export-hf` folder,
in bf16 on one GPU, from the same random prompts, a fixed number of new tokens (no early
stop). neat: `neat.evaluation.generation.generate` (prefill, then one token per step from
the KV cache, the step replayed from a CUDA graph). Hugging Face: `model.generate` with its
default dynamic cache and, with `--hf-static`, its static cache under torch.compile (its
fastest documented path). Each is run once to warm up, then timed; tokens/s counts new
tokens of the whole batch. Also reported: how many rows of neat's and HF's output agree
token for token (bf16 kernels differ, so greedy paths can part after a near tie).

    python benchmarks/generation_vs_hf.py --checkpoint runs/gpt2 --hf /tmp/gpt2-hf
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(run: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    run()  # warm-up: allocations, CUDA graph capture, compilation
    synchronize()
    start = time.perf_counter()
    out = run()
    synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--hf", type=Path, required=True, help="the export-hf folder")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--hf-static", action="store_true", help="also HF's static cache")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import transformers

    from neat.evaluation.generation import generate
    from neat.models.load import load_trained_model

    device = torch.device(args.device)
    model, _, config = load_trained_model(args.checkpoint, device)
    model = model.to(torch.bfloat16).eval()
    hf = transformers.AutoModelForCausalLM.from_pretrained(args.hf, dtype=torch.bfloat16)
    hf = hf.to(device).eval()
    vocab = int(hf.config.vocab_size)
    new = args.new_tokens
    rows: list[dict[str, object]] = []
    for batch in (int(b) for b in args.batches.split(",")):
        gen = torch.Generator().manual_seed(batch)
        prompt = torch.randint(vocab, (batch, args.prompt_tokens), generator=gen).to(device)
        ones = torch.ones_like(prompt)
        hf_kwargs = dict(
            attention_mask=ones,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
        )

        def run_neat(prompt: torch.Tensor = prompt) -> torch.Tensor:
            with torch.inference_mode():
                return generate(
                    model, prompt, new, block_size=config.model.block_size, temperature=0.0
                )

        def run_hf(
            prompt: torch.Tensor = prompt, kwargs: dict[str, object] = hf_kwargs, **extra: object
        ) -> torch.Tensor:
            with torch.inference_mode():
                out: torch.Tensor = hf.generate(prompt, **kwargs, **extra)  # type: ignore[arg-type]
                return out

        neat_s, neat_out = timed(run_neat)
        hf_s, hf_out = timed(run_hf)
        row: dict[str, object] = {
            "batch": batch,
            "neat_tokens_per_s": batch * new / neat_s,
            "hf_tokens_per_s": batch * new / hf_s,
            "neat_over_hf": hf_s / neat_s,
            "rows_identical": int((neat_out == hf_out).all(dim=1).sum()),
        }
        if args.hf_static:
            try:
                static_s, _ = timed(lambda: run_hf(cache_implementation="static"))
                row["hf_static_tokens_per_s"] = batch * new / static_s
                row["neat_over_hf_static"] = static_s / neat_s
            except Exception as exc:  # report it, keep the other figures
                row["hf_static_error"] = repr(exc)[-500:]
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else str(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": new,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
