"""FLOPs per byte of a BLT (per part, at a given mean patch size) and of a byte GPT.

python benchmarks/blt_flops.py examples/blt.yaml examples/byte_gpt_cpu.yaml --patch-size 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neat.config import build, load_config
from neat.interfaces.contexts import ModelContext

VOCAB = 257


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blt_config")
    parser.add_argument("gpt_config")
    parser.add_argument("--patch-size", type=float, default=4.0)
    args = parser.parse_args()
    blt_cfg = load_config(Path(args.blt_config)).model.model_copy(update={"entropy_model": None})
    gpt_cfg = load_config(Path(args.gpt_config)).model
    blt, gpt = (
        build("model", blt_cfg, ModelContext(VOCAB)),
        build("model", gpt_cfg, ModelContext(VOCAB)),
    )
    seq = int(blt_cfg.block_size)
    parts = blt.flops_breakdown(seq, args.patch_size)
    print(
        json.dumps(
            {
                "mean_patch_size": args.patch_size,
                "blt_params": blt.num_params(),
                "gpt_params": gpt.num_params(),
                "blt_flops_per_byte": parts,
                "blt_total": sum(parts.values()),
                "gpt_flops_per_byte": gpt.flops_per_token(int(gpt_cfg.block_size)),
                "gpt_over_blt_global": gpt.flops_per_token(int(gpt_cfg.block_size))
                / parts["global"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
