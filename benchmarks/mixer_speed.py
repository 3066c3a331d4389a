"""Forward + backward time of one sequence mixer: Hyena vs causal SDPA attention, by length.

The Hyena paper (Poli et al. 2023, Fig. 4.3) puts the crossover with FlashAttention between
4k and 8k tokens; this measures ours on the machine at hand, both mixers built from the block
tables with the same width and bf16 autocast on a GPU:

    python benchmarks/mixer_speed.py --dim 768 --heads 12 --lengths 1024,2048,4096,8192,16384
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from neat.models.blocks import ATTENTION
from neat.models.gpt import GPTConfig


def time_mixer(kind: str, dim: int, heads: int, length: int, batch: int, repeats: int) -> float:
    """Median seconds of one forward + backward of the mixer on (batch, length, dim)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = GPTConfig(n_embd=dim, n_head=heads, block_size=length, attention=kind, bias=False)
    mixer = ATTENTION[kind](dim, heads, cfg).to(device)
    x = torch.randn(batch, length, dim, device=device, requires_grad=True)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    times = []
    for i in range(repeats + 2):  # two warm-up rounds
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            out = mixer(x)
        out.float().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lengths", default="1024,2048,4096,8192,16384,32768,65536")
    args = parser.parse_args()
    rows = []
    for length in (int(n) for n in args.lengths.split(",")):
        attention = time_mixer("mha", args.dim, args.heads, length, args.batch, args.repeats)
        hyena = time_mixer("hyena", args.dim, args.heads, length, args.batch, args.repeats)
        rows.append(
            {
                "length": length,
                "attention_ms": 1e3 * attention,
                "hyena_ms": 1e3 * hyena,
                "hyena_speedup": attention / hyena,
            }
        )
        print(
            f"L={length:>6}: attention {1e3 * attention:8.2f} ms, hyena {1e3 * hyena:8.2f} ms, "
            f"attention / hyena {attention / hyena:5.2f}",
            flush=True,
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
