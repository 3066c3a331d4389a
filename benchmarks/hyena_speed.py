"""Forward + backward time of one sequence mixer, Hyena (order 2) vs causal SDPA attention
(flash kernels under bf16), as the sequence grows: the Hyena paper (Poli et al. 2023, Fig. 4.3)
puts the crossover between 4k and 8k tokens.

python benchmarks/hyena_speed.py --device cuda --lengths 1024 2048 4096 8192 16384 32768 65536

Measured on one H200 (batch 1, width 768, 12 heads, bf16 autocast, eager, unfused FFTs):
hyena / mha ms = 3.3/1.1 at 1k, 3.4/1.0 at 4k, 3.8/1.4 at 8k, 5.6/3.8 at 16k, 10.8/14.2 at
32k, 22.3/53.2 at 64k: the crossover lies between 16k and 32k, and Hyena is 2.4x faster at
64k. Below 16k Hyena is launch-bound (about 3.3 ms whatever the length).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from neat.models.blocks import ATTENTION
from neat.models.gpt import GPTConfig


def time_mixer(
    mixer: nn.Module, seq_len: int, dim: int, batch: int, iters: int, device: torch.device
) -> float:
    """Mean milliseconds of one forward + backward under bf16 autocast."""
    x = torch.randn(batch, seq_len, dim, device=device, requires_grad=True)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            y = mixer(x)
        y.float().sum().backward()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    for seq_len in args.lengths:
        row: dict[str, float | int] = {"seq_len": seq_len}
        for kind in ("hyena", "mha"):
            cfg = GPTConfig(
                n_embd=args.dim, n_head=args.heads, block_size=seq_len, bias=False, attention=kind
            )
            mixer = ATTENTION[kind](args.dim, args.heads, cfg).to(device)
            row[f"{kind}_ms"] = round(
                time_mixer(mixer, seq_len, args.dim, args.batch, args.iters, device), 3
            )
        row["mha_over_hyena"] = round(float(row["mha_ms"]) / float(row["hyena_ms"]), 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
