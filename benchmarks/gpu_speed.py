"""neat's training step against nanoGPT's bench.py on the GPT-2 124M shape, one GPU, one command.

Each run is its own process, one after another on the same GPU: nanoGPT's `bench.py`
(random tokens, bf16 autocast, torch.compile, fused AdamW; its own timing of 20 steps after
10, with the `.item()` it does every step) and `neat bench` on `examples/gpt2_124m.yaml`
(random tokens on the device) with each speed switch on its own, at batch 12 and 64. nanoGPT
is a benchmark baseline only: pass a checkout of it (`git clone
https://github.com/karpathy/nanoGPT`), nothing of it is imported into neat.

Peak memory is `torch.cuda.max_memory_allocated()` over the timed steps (neat) or the whole
process (nanoGPT, read at exit). The largest batch that fits is extrapolated from the two
batch sizes: peak memory is an intercept (weights, gradients, optimizer state) plus a slope
per row (activations), up to the GPU's memory.

    python benchmarks/gpu_speed.py --nanogpt ~/nanoGPT --out speed.json [--only neat,fused_loss]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "gpt2_124m.yaml"
TOKENS_PER_ROW = 1024

# nanoGPT's bench.py, run as itself, with the peak memory printed at exit.
NANOGPT_WRAPPER = (
    "import atexit, runpy, sys, torch; "
    "atexit.register(lambda: print('PEAK_BYTES', torch.cuda.max_memory_allocated())); "
    "sys.argv = ['bench.py'] + sys.argv[1:]; runpy.run_path('bench.py', run_name='__main__')"
)


@dataclass
class Variant:
    """One measured configuration: neat's overrides (or nanoGPT) and environment."""

    name: str
    overrides: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    nanogpt: bool = False


VARIANTS = [
    Variant("nanogpt", nanogpt=True),
    Variant("neat"),
    Variant("fused_loss", ["training.fused_loss=true"]),
    Variant("cudnn_attention", ["training.attention_backend=cudnn"]),
    Variant("cuda_graphs", ["training.compile_mode=reduce-overhead"]),
    Variant("coordinate_descent", env={"TORCHINDUCTOR_COORDINATE_DESCENT_TUNING": "1"}),
    Variant("float8", ["training.float8=true"]),
    Variant("compiled_optimizer", ["training.compile_optimizer=true"]),
    Variant("muon", ["optimization.type=muon"]),  # not faster by itself: its cost per step
]


def run_nanogpt(checkout: Path, batch: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-c", NANOGPT_WRAPPER, f"--batch_size={batch}", "--real_data=False"]
    out = subprocess.run(
        cmd, cwd=checkout, capture_output=True, text=True, timeout=timeout, check=True
    ).stdout
    step_ms = float(re.findall(r"time per iteration: ([\d.]+)ms", out)[-1])
    peak = int(re.findall(r"PEAK_BYTES (\d+)", out)[-1])
    return {
        "step_ms": step_ms,
        "tokens_per_s": batch * TOKENS_PER_ROW / (step_ms / 1000),
        "peak_memory_gib": peak / 2**30,
    }


def run_neat(variant: Variant, batch: int, steps: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "neat", "bench", "-c", str(CONFIG), "--data", "random"]
    cmd += ["--json", "--steps", str(steps), "--warmup", "10"]
    for override in [f"training.batch_size={batch}", *variant.overrides]:
        cmd += ["--set", override]
    env = os.environ | variant.env
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    text = done.stdout
    return dict(json.loads(text[text.index("{") :]))


def max_batch(points: dict[int, float], memory_gib: float) -> int | None:
    """The batch where the line through two (batch, peak GiB) points meets the GPU's memory."""
    if len(points) < 2:
        return None
    (b0, m0), (b1, m1) = sorted(points.items())[:2]
    slope = (m1 - m0) / (b1 - b0)
    return int((memory_gib - (m0 - slope * b0)) / slope) if slope > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--plan",
        default="",
        help="which variants at which batch, e.g. '12:nanogpt,neat;64:nanogpt,neat,float8' "
        "(default: every variant at 12 and 64)",
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per run")
    args = parser.parse_args()

    import torch

    memory_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    by_name = {v.name: v for v in VARIANTS}
    plan = [(b, v) for b in (12, 64) for v in VARIANTS]
    if args.plan:
        plan = [
            (int(batch), by_name[name])
            for part in args.plan.split(";")
            for batch, names in [part.split(":")]
            for name in names.split(",")
        ]
    runs: list[dict[str, Any]] = []
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    report |= {"memory_gib": memory_gib, "runs": runs}
    for batch, variant in plan:
        started = time.perf_counter()
        row: dict[str, Any] = {"variant": variant.name, "batch": batch, **asdict(variant)}
        try:
            if variant.nanogpt:
                row |= run_nanogpt(args.nanogpt, batch, args.timeout)
            else:
                row |= run_neat(variant, batch, args.steps, args.timeout)
        except (subprocess.SubprocessError, RuntimeError, ValueError, IndexError) as exc:
            row["error"] = str(exc)[-1500:]
        row["wall_s"] = round(time.perf_counter() - started, 1)
        runs.append(row)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        shown = ("variant", "batch", "tokens_per_s", "step_ms", "peak_memory_gib", "wall_s")
        print(json.dumps({k: row.get(k) for k in (*shown, "error")}), flush=True)

    base = {r["batch"]: r["tokens_per_s"] for r in runs if r["nanogpt"] and "error" not in r}
    for row in runs:
        if "error" not in row and row["batch"] in base:
            row["over_nanogpt"] = row["tokens_per_s"] / base[row["batch"]]
    report["max_batch"] = {}
    for name in dict.fromkeys(v.name for _, v in plan):
        points = {
            r["batch"]: r["peak_memory_gib"]
            for r in runs
            if r["variant"] == name and r.get("peak_memory_gib")
        }
        report["max_batch"][name] = max_batch(points, memory_gib)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'variant':>20} {'batch':>5} {'tokens/s':>10} {'x nanoGPT':>9} {'GiB':>6}")
    for row in runs:
        if "error" in row:
            print(f"{row['variant']:>20} {row['batch']:>5}  error: {row['error'][-200:]}")
            continue
        ratio = row.get("over_nanogpt")
        shown = "-" if ratio is None else f"{ratio:.3f}"  # no nanoGPT row at this batch
        print(
            f"{row['variant']:>20} {row['batch']:>5} {row['tokens_per_s']:>10,.0f} "
            f"{shown:>9} {row['peak_memory_gib']:>6.1f}"
        )
    print("largest batch (extrapolated):", json.dumps(report["max_batch"]))


if __name__ == "__main__":
    main()
