"""Generation tokens/s with and without the KV cache, for a config's model (random weights).

Greedy decoding from a random prompt, both ways in the same process, after a warm-up; the
two outputs must be the same tokens (the cache changes the speed, never the text):

    python benchmarks/generation_speed.py -c examples/gpt2_124m.yaml --new-tokens 256
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from neat.config import load_config
from neat.data import ByteTokenizer
from neat.di.factories import make_model
from neat.evaluation.generation import generate


def tokens_per_s(
    model: torch.nn.Module, prompt: torch.Tensor, new: int, block_size: int, use_cache: bool
) -> tuple[float, torch.Tensor]:
    device = prompt.device
    # a whole warm-up run: every shape the timed run meets (one per length) has been seen once
    generate(model, prompt, new, block_size=block_size, temperature=0.0, use_cache=use_cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate(model, prompt, new, block_size=block_size, temperature=0.0, use_cache=use_cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return prompt.shape[0] * new / (time.perf_counter() - start), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = make_model(config.model, config.training, ByteTokenizer()).to(device)
    model.to(getattr(torch, args.dtype)).eval()
    vocab = int(config.model.vocab_size or ByteTokenizer().vocab_size)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(vocab, (args.batch, args.prompt_tokens), generator=generator)
    prompt = prompt.to(device)
    block_size = config.model.block_size
    with torch.inference_mode():
        cached, with_cache = tokens_per_s(model, prompt, args.new_tokens, block_size, True)
        plain, without = tokens_per_s(model, prompt, args.new_tokens, block_size, False)
    same = bool(torch.equal(with_cache, without))
    result = {
        "device": str(device),
        "dtype": args.dtype,
        "new_tokens": args.new_tokens,
        "cached_tokens_per_s": cached,
        "uncached_tokens_per_s": plain,
        "speedup": cached / plain,
        "same_tokens": same,
    }
    print(
        f"{device} {args.dtype}: with cache {cached:,.0f} tok/s, without {plain:,.0f} tok/s, "
        f"x{cached / plain:.1f}; same tokens: {same}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
