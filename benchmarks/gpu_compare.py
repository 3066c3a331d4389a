"""neat's training step against a plain PyTorch loop on the same model, in one process.

Both train the same GPT module with bf16 autocast, fused AdamW, torch.compile, gradient
clipping and random tokens on the device; the plain loop is what one writes by hand
(nanoGPT's train.py without its data loader). Both are compiled and warmed up first, then
timed in interleaved rounds (plain, neat, plain, neat, ...) so clock and thermal drift hit
both alike; medians are reported. Run on a GPU machine:

    python benchmarks/gpu_compare.py -c examples/gpt2_124m.yaml [--set training.batch_size=64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from neat.config import load_config
from neat.data.tokenizers import ByteTokenizer
from neat.di import build_container
from neat.di.factories import make_model
from neat.training.bench import BenchSession, RandomBatches
from neat.training.device import enable_fast_math, peak_flops


def plain_loop(config_path: str, overrides: list[str]) -> tuple[Callable[[int], float], int]:
    """A hand-written step over neat's GPT; returns (run `n` steps -> seconds, parameters)."""
    config = load_config(Path(config_path), overrides)
    device = torch.device("cuda")
    enable_fast_math(device)
    model = make_model(config.model, config.training, ByteTokenizer()).to(device)
    opt = config.optimization
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": opt.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=opt.lr, betas=(opt.beta1, opt.beta2), fused=True)
    compiled = torch.compile(model)
    b, t = config.training.batch_size, config.model.block_size
    data = RandomBatches(int(config.model.vocab_size or 50304), b, t, device)

    def run(steps: int) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            batch = data.next_batch()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = compiled(batch.input_ids, batch.targets)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return time.perf_counter() - start

    return run, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    plain, _ = plain_loop(args.config, args.sets)
    config = load_config(Path(args.config), args.sets)
    tmp = tempfile.TemporaryDirectory()
    session = BenchSession(build_container(config, run_dir=Path(tmp.name)), random_data=True)
    plain(args.warmup)
    session.run(args.warmup)
    torch.cuda.reset_peak_memory_stats()
    times: dict[str, list[float]] = {"plain": [], "neat": []}
    for _ in range(args.rounds):
        times["plain"].append(plain(args.steps))
        times["neat"].append(session.run(args.steps)[0])

    tokens_per_step = config.training.batch_size * config.model.block_size
    flops = session.model.flops_per_token(config.model.block_size)
    peak = peak_flops(session.device) or float("nan")
    result: dict[str, object] = {
        "config": args.config,
        "overrides": args.sets,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "batch_size": config.training.batch_size,
        "peak_memory_gib_both": torch.cuda.max_memory_allocated() / 2**30,
    }
    for name, rounds in times.items():
        tokens_per_s = args.steps * tokens_per_step / statistics.median(rounds)
        result[name] = {
            "tokens_per_s": round(tokens_per_s),
            "step_ms": 1000 * statistics.median(rounds) / args.steps,
            "mfu": flops * tokens_per_s / peak,
        }
    result["neat_over_plain"] = statistics.median(
        p / n for p, n in zip(times["plain"], times["neat"], strict=True)
    )
    print(json.dumps(result, indent=2))
    tmp.cleanup()


if __name__ == "__main__":
    main()
