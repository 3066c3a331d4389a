"""The CPU Shakespeare example against nanoGPT's README CPU command: whole-process wall time
and peak memory, as a ratio measured in one command.

    python benchmarks/cpu_vs_nanogpt.py --nanogpt DIR [--pairs 3] [--json OUT] [--max-iters N]

DIR is a nanoGPT checkout, a benchmark baseline only (never part of neat). Its
shakespeare_char data is prepared offline: neat's copy of tiny Shakespeare is put there as
input.txt first, and prepare.py runs with a stand-in for `requests` (which it imports but
does not call when input.txt exists), so nothing is downloaded.

Each run is a whole subprocess started from a fresh wrapper process, so the figures include
interpreter start, imports, data loading, evaluation and checkpoint saving: wall seconds,
and peak RSS as `getrusage(RUSAGE_CHILDREN).ru_maxrss` of the wrapper (its one child). Runs
are interleaved (nanoGPT, neat, nanoGPT, neat, ...) so load and clock drift on a shared
machine hit both alike; medians are reported. One untimed 1-step run of each comes first
(page cache for torch's libraries, neat's token cache). Both get the same thread count:
torch's default on this machine, set explicitly through OMP_NUM_THREADS (see `--threads`).
The neat measured is the checkout this script sits in (its root is put first on PYTHONPATH).

The two runs match in model (4 layers, 4 heads, 128 wide, context 64, no bias, dropout 0,
tied head, vocab 65), optimisation (AdamW lr 1e-3, warmup 100, cosine to 1e-4 over 2000
steps, beta2 0.99, weight decay 0.1, clip 1.0), batch 12, 2000 steps, fp32, no compile, and
the 90/10 split of the same text. Differences, all in neat's favour of *less* work except
logging:
- evaluation: nanoGPT evaluates at step 0 and every 250 steps on 20 batches of *both*
  splits (9 x 40 batches); neat evaluates every 250 steps from step 250 on 20 validation
  batches (8 x 20 batches);
- logging: nanoGPT prints every step (`--log_interval=1`, a `loss.item()` each); neat every
  50 steps;
- checkpoints: nanoGPT writes ckpt.pt whenever val loss improves (each evaluation after
  step 0 here); neat every 500 steps, keeping the last 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NEAT_CONFIG = ROOT / "examples" / "shakespeare_char_cpu.yaml"
CORPUS = ROOT / "examples" / "data" / "tinyshakespeare.txt"

# Runs argv[1:] as its only child; prints wall seconds and the child's peak RSS in KiB.
WRAPPER = """
import resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.call(sys.argv[1:], stdout=sys.stdout, stderr=subprocess.STDOUT)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"@@WRAPPER rc={rc} wall={wall:.3f} peak_kib={peak}", flush=True)
"""

# prepare.py imports requests at the top but only calls it when input.txt is missing.
PREPARE = """
import runpy, sys, types
sys.modules.setdefault("requests", types.ModuleType("requests"))
runpy.run_path("prepare.py", run_name="__main__")
"""


def prepare_nanogpt(nanogpt: Path) -> None:
    """Write nanoGPT's train.bin/val.bin/meta.pkl from neat's copy of the corpus, offline."""
    data_dir = nanogpt / "data" / "shakespeare_char"
    if not (nanogpt / "train.py").is_file() or not (data_dir / "prepare.py").is_file():
        raise SystemExit(f"{nanogpt} is not a nanoGPT checkout (train.py, data/shakespeare_char)")
    target = data_dir / "input.txt"
    if not target.exists() or target.read_bytes() != CORPUS.read_bytes():
        shutil.copyfile(CORPUS, target)
        (data_dir / "train.bin").unlink(missing_ok=True)
    if not (data_dir / "train.bin").exists():
        subprocess.run([sys.executable, "-c", PREPARE], cwd=data_dir, check=True)


def nanogpt_cmd(out_dir: Path, iters: int) -> list[str]:
    """nanoGPT's README CPU command, writing into `out_dir`."""
    return [
        sys.executable,
        "train.py",
        "config/train_shakespeare_char.py",
        "--device=cpu",
        "--compile=False",
        "--eval_iters=20",
        "--log_interval=1",
        "--block_size=64",
        "--batch_size=12",
        "--n_layer=4",
        "--n_head=4",
        "--n_embd=128",
        f"--max_iters={iters}",
        f"--lr_decay_iters={iters}",
        "--dropout=0.0",
        f"--out_dir={out_dir}",
    ]


def neat_cmd(run_dir: Path, iters: int) -> list[str]:
    """`neat train -c examples/shakespeare_char_cpu.yaml` into a fresh run dir."""
    cmd = [sys.executable, "-m", "neat", "train", "-c", str(NEAT_CONFIG), "--run-dir", str(run_dir)]
    return cmd if iters == 2000 else [*cmd, "--set", f"training.max_steps={iters}"]


def run_once(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """One whole process under a fresh wrapper: wall seconds, peak MB, best val loss."""
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"@@WRAPPER rc=(-?\d+) wall=([\d.]+) peak_kib=(\d+)", proc.stdout)
    if found is None or found.group(1) != "0":
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"run failed: {' '.join(cmd)}")
    out = proc.stdout
    # nanoGPT: "step 250: train loss 2.43, val loss 2.44"; neat: "best val loss 1.8790".
    vals = [float(v) for v in re.findall(r"val loss (\d+\.\d+)", out)]
    best = re.findall(r"best val loss (\d+\.\d+)", out)
    return {
        "wall_s": float(found.group(2)),
        "peak_mb": int(found.group(3)) / 1024,
        "best_val_loss": float(best[-1]) if best else (min(vals) if vals else None),
    }


def default_threads() -> int:
    """torch's default intra-op thread count here, read in a throwaway process."""
    probe = "import torch; print(torch.get_num_threads())"
    return int(subprocess.check_output([sys.executable, "-c", probe], text=True).strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved (nanoGPT, neat) pairs")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--max-iters", type=int, default=2000, help="shorter runs while iterating")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for both (torch default)")
    args = parser.parse_args()

    nanogpt = args.nanogpt.resolve()
    prepare_nanogpt(nanogpt)
    threads = args.threads or default_threads()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    runs: dict[str, list[dict[str, Any]]] = {"nanogpt": [], "neat": []}
    with tempfile.TemporaryDirectory(prefix="cpu_vs_nanogpt_") as tmp:
        scratch = Path(tmp)
        run_once(nanogpt_cmd(scratch / "warm_nanogpt", 1), nanogpt, env)  # untimed warm-up
        run_once(neat_cmd(scratch / "warm_neat", 1), ROOT, env)
        for i in range(args.pairs):
            for name, cmd, cwd in (
                ("nanogpt", nanogpt_cmd(scratch / f"nanogpt_{i}", args.max_iters), nanogpt),
                ("neat", neat_cmd(scratch / f"neat_{i}", args.max_iters), ROOT),
            ):
                result = run_once(cmd, cwd, env)
                runs[name].append(result)
                print(
                    f"pair {i + 1} {name:7s} {result['wall_s']:7.1f} s "
                    f"{result['peak_mb']:6.1f} MB val {result['best_val_loss']}",
                    flush=True,
                )

    med = {
        name: {key: statistics.median(r[key] for r in rs) for key in ("wall_s", "peak_mb")}
        for name, rs in runs.items()
    }
    speed = med["nanogpt"]["wall_s"] / med["neat"]["wall_s"]
    memory = med["neat"]["peak_mb"] / med["nanogpt"]["peak_mb"]
    for name in ("nanogpt", "neat"):
        print(f"median {name:7s} {med[name]['wall_s']:7.1f} s {med[name]['peak_mb']:6.1f} MB")
    print(f"neat speed / nanoGPT speed: {speed:.3f}x   neat peak / nanoGPT peak: {memory:.3f}")
    if args.json:
        report = {
            "max_iters": args.max_iters,
            "pairs": args.pairs,
            "threads": threads,
            "runs": runs,
            "median": med,
            "speed_ratio": speed,
            "peak_ratio": memory,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
