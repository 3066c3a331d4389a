"""Wall seconds to a target validation loss: nanoGPT's recipe against neat's speedrun.

One command on one GPU: build the code corpus (benchmarks/make_code_corpus.py) unless given,
tokenize it once (`neat data prepare`, shared by both runs), train the baseline
(examples/gpt2_124m_code.yaml: nanoGPT's GPT-2 124M recipe) to its end, take its final
validation loss as the target, then train the speedrun (examples/gpt2_124m_speedrun.yaml)
and stop it at its first evaluation at or below the target. Both use the same data,
tokenizer, batch and evaluation (interval and batches). Seconds are neat's own `elapsed_s`
of the training loop (from its first step: compilation counted, tokenization not) at the
evaluation's step, which counts the evaluations before it (the same cadence in both).

    python benchmarks/time_to_loss.py --out /tmp/ttl [--corpus data/code | --mb 300]
        [--set-baseline KEY=VALUE ...] [--set-speedrun KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "examples" / "gpt2_124m_code.yaml"
SPEEDRUN = ROOT / "examples" / "gpt2_124m_speedrun.yaml"


def neat(*args: str) -> list[str]:
    return [sys.executable, "-m", "neat", *args]


def data_overrides(corpus: Path) -> list[str]:
    return [
        f"data.sources=[{{type: jsonl, path: {corpus}, include: ['shard-*.jsonl']}}]",
        f"data.tokenizer.path={corpus / 'tokenizer.json'}",
    ]


def sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return rows


def curve(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """(step, elapsed_s, val_loss) of each evaluation; elapsed from the train row of its step."""
    elapsed = {r["step"]: r["elapsed_s"] for r in rows if r.get("event") == "train"}
    return [
        {"step": r["step"], "elapsed_s": elapsed[r["step"]], "val_loss": r["val_loss"]}
        for r in rows
        if r.get("event") == "eval" and r["step"] in elapsed and "val_loss" in r
    ]


def train(
    config: Path, run_dir: Path, overrides: list[str], target: float | None
) -> list[dict[str, float]]:
    """Train; with `target`, stop (SIGINT, as Ctrl-C) at the first eval at or below it."""
    cmd = neat("train", "-c", str(config), "--run-dir", str(run_dir), *sets(overrides))
    cmd += ["--set", "monitoring.progress=plain"]
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    while process.poll() is None:
        time.sleep(1.0)
        if target is not None and any(
            p["val_loss"] <= target for p in curve(read_metrics(run_dir))
        ):
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
            break
    if process.returncode not in (0, 130, -signal.SIGINT):
        raise RuntimeError(f"{config.name} failed ({process.returncode}): see {log.name}")
    return curve(read_metrics(run_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, help="a built corpus (default: build one)")
    parser.add_argument("--mb", type=float, default=300.0, help="corpus size when building")
    parser.add_argument("--set-baseline", action="append", default=[])
    parser.add_argument("--set-speedrun", action="append", default=[])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    corpus = args.corpus
    if corpus is None:
        corpus = args.out / "corpus"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "make_code_corpus.py"),
                "--out",
                str(corpus),
                "--mb",
                str(args.mb),
            ],
            check=True,
        )
    result["corpus"] = json.loads((corpus / "manifest.json").read_text())
    common = data_overrides(corpus)
    started = time.perf_counter()
    subprocess.run(neat("data", "prepare", "-c", str(BASELINE), *sets(common)), check=True)
    result["prepare_s"] = round(time.perf_counter() - started, 1)
    out_json = args.out / "time_to_loss.json"

    baseline = train(BASELINE, args.out / "baseline", common + args.set_baseline, None)
    target = baseline[-1]["val_loss"]
    result |= {"baseline": baseline, "target": target, "baseline_s": baseline[-1]["elapsed_s"]}
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"target": target, "baseline_s": result["baseline_s"]}), flush=True)

    speedrun = train(SPEEDRUN, args.out / "speedrun", common + args.set_speedrun, target)
    reached = [p for p in speedrun if p["val_loss"] <= target]
    result["speedrun"] = speedrun
    result["speedrun_s"] = reached[0]["elapsed_s"] if reached else None
    if reached:
        result["speedup"] = result["baseline_s"] / reached[0]["elapsed_s"]
    result["overrides"] = {"baseline": args.set_baseline, "speedrun": args.set_speedrun}
    result["env"] = {k: v for k, v in os.environ.items() if k.startswith("TORCH")}
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result.get(k) for k in ("target", "baseline_s", "speedrun_s", "speedup")}))


if __name__ == "__main__":
    main()
