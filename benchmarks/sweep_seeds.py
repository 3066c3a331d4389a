"""Run one config under several seeds in parallel and report the spread of its metrics.

A figure from one seed can be luck; this reports mean, min and max over seeds. Each run is
a real `neat train` subprocess with one CPU thread, so N runs use N cores.

    python benchmarks/sweep_seeds.py -c examples/math_cpu.yaml --seeds 0-7 \
        --seed-key data.seed --metric acc_id [--set KEY=VALUE ...] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def parse_seeds(text: str) -> list[int]:
    """``0-7`` or ``0,3,5``."""
    if "-" in text:
        lo, hi = text.split("-", 1)
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def run_one(
    config: str, seed_key: str, seed: int, sets: list[str], root: Path
) -> tuple[int, list[dict[str, float]], float]:
    run_dir = root / f"seed{seed}"
    cmd = [sys.executable, "-m", "neat", "train", "-c", config, "--run-dir", str(run_dir)]
    for item in [f"{seed_key}={seed}", *sets]:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NEAT_CACHE_DIR": str(root / "cache")}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"seed {seed} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return seed, rows, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--seeds", default="0-3")
    parser.add_argument("--seed-key", default="training.seed")
    parser.add_argument("--metric", action="append", required=True)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    with (
        tempfile.TemporaryDirectory(prefix="neat-sweep-") as tmp,
        ThreadPoolExecutor(args.jobs) as pool,
    ):
        results = list(
            pool.map(lambda s: run_one(args.config, args.seed_key, s, args.sets, Path(tmp)), seeds)
        )
    for metric in args.metric:
        finals = []
        for seed, rows, wall in results:
            values = [r[metric] for r in rows if metric in r]
            if not values:
                raise SystemExit(f"no {metric!r} in seed {seed}'s metrics.jsonl")
            finals.append(values[-1])
            best = max(values)
            print(f"seed {seed}: {metric} final {values[-1]:.4f} best {best:.4f}, {wall:.0f} s")
        print(
            f"{metric} over {len(finals)} seeds: mean {statistics.mean(finals):.4f} "
            f"min {min(finals):.4f} max {max(finals):.4f}"
        )


if __name__ == "__main__":
    main()
