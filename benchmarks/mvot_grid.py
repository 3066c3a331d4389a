"""MVoT against text-only chain of thought on FrozenLake grid worlds, over seeds.

What it measures: the task accuracy of greedy answers (the `grid_reasoning` evaluator: `acc_id`,
`acc_heldout`, `acc_ood` on larger grids, per question kind, `vis_acc` of the generated images,
`val_loss`, and any other key the evaluator reports) of the same small GPT, on the same problems
(`data.seed` fixed) and the same budget (steps x batch size), trained as

- ``text_cot``:   text-only chain of thought (examples/grid_cot_cpu.yaml);
- ``mvot_ce``:    interleaved text and tile-code images, cross-entropy only
                  (examples/mvot_cpu.yaml, mvot.discrepancy_weight=0);
- ``mvot_ce_ld``: the same plus the token discrepancy loss L_D (discrepancy_weight 1.0);
- ``mvot_vq``:    (only with ``--vq RUN_DIR``) CE + L_D with the codes of a trained VQ image
                  tokenizer (`data.image_tokenizer=RUN_DIR`, `data.tokenizer.codes=K`, K the
                  run's `model.codebook_size`) instead of the exact tile codes.

The budget is equal in steps, sequences and tokens: all the configs use block_size 768, which
holds the longest problem with its images (740 tokens on 8x8 ood grids), so no response is cut
at the context (a shorter block made answers that cannot fit count as wrong).

Each (variant, seed) is one `python -m neat train` subprocess (seed key `training.seed`), up to
`--jobs` at once (one CPU thread each on cpu; on cuda all share the one GPU). Every run ends with
one evaluation (`evaluation.interval` = `checkpoint.interval` = `--steps`), whose row of the run's
metrics.jsonl is the result. Per variant and metric it reports mean, sample std and a 95%
bootstrap interval of the mean over seeds, the wall time per run, and the paired differences
(mvot_ce_ld - text_cot, mvot_ce_ld - mvot_ce) of acc_id and acc_ood across seeds. Rows go to
`<out>/results.jsonl`, the statistics to `<out>/summary.json` and `<out>/summary.md`; token caches
are shared through `<out>/cache` (NEAT_CACHE_DIR). A rerun reuses every run whose run dir already
holds its final evaluation (same command), so an interrupted benchmark resumes.

Run:
    python benchmarks/mvot_grid.py --steps 20 --problems 4 --seeds 0-1 --jobs 2 \\
        --out /tmp/mvot_bench_smoke                          # cpu smoke run, about a minute
    python benchmarks/mvot_grid.py                           # cpu defaults: 800 steps, 3 seeds
    python benchmarks/mvot_grid.py --device cuda --model base --steps 3000 --batch-size 32 \\
        --problems 100 --seeds 0-2 --jobs 9                  # one H200, ~5 min
    python benchmarks/mvot_grid.py ... --vq runs/vq-grid-<time>  # adds mvot_vq

Measured on one H200 (--device cuda --model base --steps 4000 --batch-size 32 --problems 100
--seeds 0-4 --jobs 12 --vq runs/vq-grid; 12 runs at once, 350 s), mean ± std over 5 seeds,
acc id / heldout / ood: text_cot 0.39 / 0.34 / 0.35; mvot_ce 0.59 / 0.58 / 0.30 (vis_acc 0.42,
vis_redundancy 0.32); mvot_ce_ld 0.68 / 0.63 / 0.34 (0.58, 0.10); mvot_vq 0.54 / 0.54 / 0.38
(0.22, 0.65). Paired: mvot_ce_ld - text_cot +0.28 [0.20, 0.34] id, -0.01 [-0.13, 0.12] ood.
The README's MVoT section has the table and what it means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
COT_CONFIG = EXAMPLES / "grid_cot_cpu.yaml"
MVOT_CONFIG = EXAMPLES / "mvot_cpu.yaml"

MODEL_PRESETS: dict[str, tuple[str, ...]] = {
    "small": (),  # the yaml as is
    "base": ("model.n_layer=4", "model.n_head=4", "model.n_embd=256"),
}
TABLE_METRICS = ("acc_id", "acc_heldout", "acc_ood", "vis_acc", "vis_redundancy", "val_loss")
OPTIONAL_COLUMNS = frozenset({"vis_redundancy"})  # shown only when some run reports it
PAIRED = (("mvot_ce_ld", "text_cot"), ("mvot_ce_ld", "mvot_ce"))
PAIRED_METRICS = ("acc_id", "acc_ood")
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Variant:
    """One arm of the comparison: a config and the overrides that make it."""

    name: str
    config: Path
    sets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """One training run: a variant under one seed, with its full command."""

    variant: str
    seed: int
    run_dir: Path
    cmd: tuple[str, ...]
    env: dict[str, str] = field(hash=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.variant} seed {self.seed}"

    @property
    def record_path(self) -> Path:
        """Beside the run dir (not in it): neat owns the run dir's contents."""
        return self.run_dir.with_name(self.run_dir.name + ".bench.json")


# ---------------------------------------------------------------- configuration


def parse_seeds(text: str) -> list[int]:
    """``0-2`` or ``0,3,5``."""
    if "-" in text:
        lo, hi = text.split("-", 1)
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def vq_codebook_size(run_dir: Path) -> int:
    """K of a trained VQ image tokenizer, from the resolved config its run saved."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise SystemExit(f"--vq {run_dir}: no config.yaml there (a `neat train` run dir?)")
    model = (yaml.safe_load(path.read_text()) or {}).get("model", {})
    if model.get("type") != "vq" or "codebook_size" not in model:
        raise SystemExit(f"--vq {run_dir}: not a VQ tokenizer run (model.type {model.get('type')})")
    return int(model["codebook_size"])


def variants(vq_run: Path | None) -> list[Variant]:
    """The arms, in table order; the VQ arm only when a tokenizer run is given."""
    arms = [
        Variant("text_cot", COT_CONFIG),
        Variant("mvot_ce", MVOT_CONFIG, ("mvot.discrepancy_weight=0",)),
        Variant("mvot_ce_ld", MVOT_CONFIG),
    ]
    if vq_run is not None:
        codes = vq_codebook_size(vq_run)
        vq_sets = (f"data.image_tokenizer={vq_run.resolve()}", f"data.tokenizer.codes={codes}")
        arms.append(Variant("mvot_vq", MVOT_CONFIG, vq_sets))
    return arms


def common_sets(args: argparse.Namespace) -> list[str]:
    """Overrides every run shares: the budget, the device, one evaluation at the end."""
    precision = "bf16" if args.device.startswith("cuda") else "fp32"
    return [
        *MODEL_PRESETS[args.model],
        f"training.max_steps={args.steps}",
        f"training.batch_size={args.batch_size}",
        f"training.device={args.device}",
        f"training.precision={precision}",
        f"evaluation.num_problems={args.problems}",
        f"evaluation.interval={args.steps}",
        f"checkpoint.interval={args.steps}",
    ]


def run_env(args: argparse.Namespace, cache: Path) -> dict[str, str]:
    """One BLAS thread per run on cpu (runs are the parallelism); a share of the cores on cuda."""
    cpus = os.cpu_count() or 1
    threads = 1 if args.device == "cpu" else max(1, cpus // max(1, args.jobs))
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["NEAT_CACHE_DIR"] = str(cache)
    return env


def make_jobs(args: argparse.Namespace, arms: Sequence[Variant], out: Path) -> list[Job]:
    """Every (variant, seed) run; the user's --set win over ours, the seed over all."""
    env = run_env(args, out / "cache")
    jobs = []
    for arm in arms:
        for seed in parse_seeds(args.seeds):
            run_dir = out / "runs" / f"{arm.name}-seed{seed}"
            cmd = [sys.executable, "-m", "neat", "train", "-c", str(arm.config)]
            cmd += ["--run-dir", str(run_dir)]
            sets = [*arm.sets, *common_sets(args), *args.sets, f"training.seed={seed}"]
            for item in sets:
                cmd += ["--set", item]
            jobs.append(Job(arm.name, seed, run_dir, tuple(cmd), env))
    return jobs


# ---------------------------------------------------------------- metrics.jsonl


def parse_metrics(text: str) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; a torn last line (a killed run) is skipped."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def final_eval(rows: Iterable[dict[str, Any]], steps: int) -> dict[str, float] | None:
    """The numeric metrics of the last `eval` row at step `steps` (the run's end), if any."""
    found = None
    for row in rows:
        if row.get("event") == "eval" and row.get("step") == steps:
            found = row
    if found is None:
        return None
    return {
        k: float(v)
        for k, v in found.items()
        if k not in ("event", "step") and isinstance(v, int | float) and not isinstance(v, bool)
    }


def run_info(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Size and token budget of a run (its `run_start` row), to make the budgets comparable."""
    for row in rows:
        if row.get("event") == "run_start":
            return {k: row.get(k) for k in ("num_params", "tokens_per_step")}
    return {}


def read_run(run_dir: Path, steps: int) -> tuple[dict[str, float] | None, list[dict[str, Any]]]:
    path = run_dir / "metrics.jsonl"
    rows = parse_metrics(path.read_text()) if path.is_file() else []
    return final_eval(rows, steps), rows


# ---------------------------------------------------------------- statistics


def bootstrap_ci(
    values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling the seeds (fixed rng: reproducible)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def describe(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (nan for one seed: no spread is known) and the bootstrap interval."""
    data = np.asarray(values, dtype=np.float64)
    std = float(data.std(ddof=1)) if data.size > 1 else math.nan
    return {
        "n": int(data.size),
        "mean": float(data.mean()) if data.size else math.nan,
        "std": std,
        "ci95": list(bootstrap_ci(values)),
    }


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: the statistics of every metric any of its runs reported, and of wall_s."""
    summary: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["variant"] for r in results):
        runs = [r for r in results if r["variant"] == name]
        keys = sorted({k for r in runs for k in r["metrics"]})
        summary[name] = {
            "seeds": [r["seed"] for r in runs],
            "metrics": {
                k: describe([r["metrics"][k] for r in runs if k in r["metrics"]]) for k in keys
            },
            "wall_s": describe([r["wall_s"] for r in runs]),
        }
    return summary


def paired_differences(
    results: Sequence[dict[str, Any]],
    pairs: Sequence[tuple[str, str]] = PAIRED,
    metrics: Sequence[str] = PAIRED_METRICS,
) -> list[dict[str, Any]]:
    """`a - b` per seed both ran (same seed: same init and data order), then its statistics."""
    by_key = {(r["variant"], r["seed"]): r["metrics"] for r in results}
    out = []
    for a, b in pairs:
        for metric in metrics:
            seeds = sorted(
                s
                for (v, s), m in by_key.items()
                if v == a and metric in m and metric in by_key.get((b, s), {})
            )
            if not seeds:
                continue
            diffs = [by_key[(a, s)][metric] - by_key[(b, s)][metric] for s in seeds]
            out.append({"a": a, "b": b, "metric": metric, "seeds": seeds, **describe(diffs)})
    return out


# ---------------------------------------------------------------- formatting


def fmt(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def cell(stats: dict[str, Any] | None, digits: int = 3) -> str:
    """'mean ± std' (just the mean for one seed); '-' when the variant lacks the metric."""
    if stats is None or stats["n"] == 0:
        return "-"
    if math.isnan(stats["std"]):
        return fmt(stats["mean"], digits)
    return f"{fmt(stats['mean'], digits)} ± {fmt(stats['std'], digits)}"


def table_columns(summary: dict[str, dict[str, Any]]) -> list[str]:
    present = {k for s in summary.values() for k in s["metrics"]}
    return [m for m in TABLE_METRICS if m not in OPTIONAL_COLUMNS or m in present]


def markdown_table(summary: dict[str, dict[str, Any]]) -> str:
    """The headline table: one row per variant, "mean ± std" over seeds."""
    cols = table_columns(summary)
    head = ["variant", "seeds", *cols, "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summary.items():
        cells = [name, str(len(s["seeds"]))]
        cells += [cell(s["metrics"].get(c)) for c in cols]
        cells.append(cell(s["wall_s"], 0))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_paired(paired: Sequence[dict[str, Any]]) -> str:
    lines = ["| difference | metric | seeds | mean | 95% CI |", "|---|---|---|---|---|"]
    for d in paired:
        lo, hi = d["ci95"]
        lines.append(
            f"| {d['a']} - {d['b']} | {d['metric']} | {len(d['seeds'])} | "
            f"{fmt(d['mean'], 3)} | [{fmt(lo, 3)}, {fmt(hi, 3)}] |"
        )
    return "\n".join(lines)


def markdown_intervals(summary: dict[str, dict[str, Any]]) -> str:
    """Every metric of every variant with its bootstrap interval (the long form)."""
    lines = ["| variant | metric | n | mean | std | 95% CI |", "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        for key, st in [*s["metrics"].items(), ("wall_s", s["wall_s"])]:
            lo, hi = st["ci95"]
            lines.append(
                f"| {name} | {key} | {st['n']} | {fmt(st['mean'], 4)} | {fmt(st['std'], 4)} | "
                f"[{fmt(lo, 4)}, {fmt(hi, 4)}] |"
            )
    return "\n".join(lines)


def report(summary: dict[str, dict[str, Any]], paired: Sequence[dict[str, Any]]) -> str:
    return (
        "## MVoT vs text chain of thought (mean ± sample std over seeds)\n\n"
        f"{markdown_table(summary)}\n\n"
        "## Paired differences (per seed, 95% bootstrap interval of the mean)\n\n"
        f"{markdown_paired(paired)}\n"
    )


# ---------------------------------------------------------------- running


class Runner:
    """Runs jobs as subprocesses; on the first failure it stops the ones still running."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()
        self.failed = threading.Event()

    def reusable(self, job: Job) -> dict[str, Any] | None:
        """The stored result of a finished run of the same command, else None."""
        metrics, rows = read_run(job.run_dir, self.steps)
        if metrics is None:
            return None
        record = json.loads(job.record_path.read_text()) if job.record_path.is_file() else {}
        if record.get("cmd", list(job.cmd))[1:] != list(job.cmd[1:]):
            return None  # finished, but under other settings (the interpreter may differ)
        end = [r for r in rows if r.get("event") == "run_end"]
        wall = record.get("wall_s", end[-1].get("elapsed_s", math.nan) if end else math.nan)
        return result_row(job, metrics, float(wall), run_info(rows))

    def run(self, job: Job) -> dict[str, Any]:
        reused = self.reusable(job)
        if reused is not None:
            print(f"[{job.label}] reused {job.run_dir}\n", end="", flush=True)
            return reused
        if self.failed.is_set():
            raise RuntimeError("cancelled")
        wall = self.train(job)
        metrics, rows = read_run(job.run_dir, self.steps)
        if metrics is None:
            raise RuntimeError(f"{job.label}: no eval row at step {self.steps} in metrics.jsonl")
        job.record_path.write_text(json.dumps({"cmd": list(job.cmd), "wall_s": wall}) + "\n")
        accs = ", ".join(f"{k} {metrics[k]:.3f}" for k in TABLE_METRICS if k in metrics)
        print(f"[{job.label}] {accs} ({wall:.0f}s)\n", end="", flush=True)
        return result_row(job, metrics, wall, run_info(rows))

    def train(self, job: Job) -> float:
        """One `neat train` from scratch (an unfinished run dir is removed); its seconds."""
        if job.run_dir.exists():
            shutil.rmtree(job.run_dir)
        job.record_path.unlink(missing_ok=True)
        log = job.run_dir.with_name(job.run_dir.name + ".log")
        start = time.perf_counter()
        with log.open("wb") as sink:
            proc = subprocess.Popen(job.cmd, env=job.env, stdout=sink, stderr=subprocess.STDOUT)
            with self.lock:
                self.procs.add(proc)
            code = proc.wait()
            with self.lock:
                self.procs.discard(proc)
        wall = time.perf_counter() - start
        if code != 0:
            tail = log.read_text(errors="replace")[-3000:].partition("\n")[2]
            raise RuntimeError(f"{job.label} failed (exit {code}), log {log}:\n{tail}")
        return wall

    def stop_all(self) -> None:
        """Terminate the runs this benchmark started and that still run."""
        self.failed.set()
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            proc.terminate()


def result_row(
    job: Job, metrics: dict[str, float], wall: float, info: dict[str, Any]
) -> dict[str, Any]:
    return {
        "variant": job.variant,
        "seed": job.seed,
        "metrics": metrics,
        "wall_s": round(wall, 2),
        **info,
        "run_dir": str(job.run_dir),
    }


def run_all(jobs: Sequence[Job], steps: int, workers: int) -> list[dict[str, Any]]:
    """All jobs, `workers` at once; the first failure aborts the benchmark with its log tail."""
    runner = Runner(steps)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures: list[Future[dict[str, Any]]] = [pool.submit(runner.run, j) for j in jobs]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [f.exception() for f in done if f.exception() is not None]
        if errors:
            for f in futures:
                f.cancel()
            runner.stop_all()
            wait(futures)
            raise SystemExit(f"\nbenchmark aborted: {errors[0]}")
    return [f.result() for f in futures]


def json_safe(value: Any) -> Any:
    """NaN (the std of one seed) as null: summary.json stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_outputs(out: Path, results: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    """results.jsonl, summary.json, summary.md; returns the markdown that was written."""
    summary = summarize(results)
    paired = paired_differences(results)
    with (out / "results.jsonl").open("w") as f:
        for row in results:
            f.write(json.dumps(json_safe(row)) + "\n")
    payload = {"settings": settings, "variants": summary, "paired": paired}
    (out / "summary.json").write_text(json.dumps(json_safe(payload), indent=2) + "\n")
    text = report(summary, paired)
    command = " ".join(settings["argv"])
    long_form = markdown_intervals(summary)
    (out / "summary.md").write_text(
        f"{text}\n## All metrics (95% bootstrap interval of the mean)\n\n{long_form}\n\n"
        f"Command: `{command}`\n"
    )
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", type=Path, default=Path("runs/mvot_grid"), help="output folder")
    p.add_argument("--seeds", default="0-2", help="0-2 or 0,3,5 (training.seed)")
    p.add_argument("--steps", type=int, default=800, help="training.max_steps of every run")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--problems", type=int, default=30, help="evaluation.num_problems per split")
    p.add_argument("--device", default="cpu", help="cpu (fp32) or cuda (bf16)")
    p.add_argument("--model", choices=sorted(MODEL_PRESETS), default="small")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at once")
    p.add_argument("--vq", type=Path, default=None, metavar="RUN_DIR", help="adds mvot_vq")
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="all runs"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out: Path = args.out.resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    jobs = make_jobs(args, variants(args.vq), out)
    print(f"{len(jobs)} runs, {args.jobs} at once -> {out}", flush=True)
    start = time.perf_counter()
    results = run_all(jobs, args.steps, args.jobs)
    settings = {"argv": [Path(sys.argv[0]).name, *(argv or sys.argv[1:])], **vars(args)}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}
    text = write_outputs(out, results, settings)
    print()
    print(text)
    print(f"total {time.perf_counter() - start:.0f}s; results in {out}")


if __name__ == "__main__":
    main()
