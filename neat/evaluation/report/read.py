"""Reading what `neat train` and `neat ablate` leave behind, into plain data the plots and the
page need: the kind of a directory is told by its files, never by its name."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neat.errors import ConfigError
from neat.monitoring.metrics_file import read_metrics

__all__ = [
    "AblationData",
    "RunData",
    "SweepData",
    "config_diff",
    "eval_elapsed",
    "eval_keys",
    "final_values",
    "flatten",
    "memory_keys",
    "read_path",
    "series",
]

# keys of a train row that are bookkeeping, not a metric to plot or tabulate
_TRAIN_FIXED = ("event", "step", "elapsed_s")
_MEMORY = re.compile(r"mem|rss|vram", re.IGNORECASE)
_SAMPLE_FIELDS = ("text", "sample", "completion")


@dataclass
class RunData:
    """One training run: its rows split by event, its config and checkpoints."""

    path: Path
    name: str
    config: dict[str, Any]
    config_text: str
    start: dict[str, Any] | None
    end: dict[str, Any] | None
    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    sample: str | None = None

    @property
    def last_step(self) -> int:
        """The furthest step any row reached (0 before the first)."""
        steps = [r["step"] for r in self.train + self.evals if isinstance(r.get("step"), int)]
        if self.end is not None and isinstance(self.end.get("step"), int):
            steps.append(self.end["step"])
        return max(steps, default=0)

    @property
    def status(self) -> str:
        """The run_end status, or where an unfinished run got to."""
        if self.end is not None:
            return str(self.end.get("status", "finished"))
        total = self.start.get("max_steps") if self.start else None
        return f"in progress at step {self.last_step} of {total if total is not None else '?'}"


@dataclass
class AblationData:
    """One `neat ablate` directory: its summary table and its result rows."""

    path: Path
    name: str
    summary: dict[str, Any]
    rows: list[dict[str, Any]]


@dataclass
class SweepData:
    """One `neat sweep` directory: what was asked (sweep.json), its trials so far
    (trials.jsonl) and the runs of the trials that have started."""

    path: Path
    name: str
    asked: dict[str, Any]
    trials: list[dict[str, Any]]
    runs: list[RunData]

    @property
    def keys(self) -> list[str]:
        space = self.asked.get("space")
        return list(space) if isinstance(space, dict) else []

    @property
    def best(self) -> dict[str, Any] | None:
        done = [t for t in self.trials if t.get("state") == "complete" and _number(t.get("value"))]
        if not done:
            return None
        pick = max if self.asked.get("direction") == "maximize" else min
        return pick(done, key=lambda t: float(t["value"]))


def read_path(path: Path) -> RunData | AblationData | SweepData:
    """A run (has metrics.jsonl), an ablation (summary.json + ablation.jsonl) or a sweep
    (sweep.json)."""
    if (path / "metrics.jsonl").is_file():
        return _read_run(path)
    if (path / "summary.json").is_file() and (path / "ablation.jsonl").is_file():
        return _read_ablation(path)
    if (path / "sweep.json").is_file():
        return _read_sweep(path)
    raise ConfigError(
        f"{path}: not a run directory (metrics.jsonl), an ablation directory "
        "(summary.json and ablation.jsonl) nor a sweep directory (sweep.json)"
    )


def _read_run(path: Path) -> RunData:
    rows = read_metrics(path / "metrics.jsonl")
    config_file = path / "config.yaml"
    text = config_file.read_text(encoding="utf-8") if config_file.is_file() else ""
    loaded = yaml.safe_load(text) if text else None
    by_event: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_event.setdefault(str(row.get("event")), []).append(row)
    samples = [_sample_text(r) for r in by_event.get("sample", [])]
    sample = next((s for s in reversed(samples) if s), None) or _log_sample(path / "log.jsonl")
    return RunData(
        path=path,
        name=path.resolve().name,
        config=loaded if isinstance(loaded, dict) else {},
        config_text=text,
        start=_last(by_event.get("run_start")),
        end=_last(by_event.get("run_end")),
        train=by_event.get("train", []),
        evals=by_event.get("eval", []),
        checkpoints=_checkpoints(path / "checkpoints"),
        sample=sample,
    )


def _last(rows: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return rows[-1] if rows else None


def _checkpoints(folder: Path) -> list[str]:
    """step_N folders in step order; only complete ones (state.json is written last)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and (p / "state.json").is_file()]
    return [p.name for p in sorted(found, key=lambda p: _trailing_int(p.name))]


def _trailing_int(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else -1


def _sample_text(row: dict[str, Any]) -> str | None:
    for key in _SAMPLE_FIELDS:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _log_sample(path: Path) -> str | None:
    """The last sample a structured log line holds, if the trainer logged one."""
    if not path.is_file():
        return None
    found: str | None = None
    with path.open(encoding="utf-8", errors="replace") as file:
        for line in file:
            if "sample" not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "sample" in str(record.get("event", "")):
                found = _sample_text(record) or found
    return found


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The object rows of a JSON-lines file; a line cut short by a crash is skipped."""
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_sweep(path: Path) -> SweepData:
    try:
        asked = json.loads((path / "sweep.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path / 'sweep.json'}: not valid JSON ({exc})") from exc
    if not isinstance(asked, dict):
        raise ConfigError(f"{path / 'sweep.json'}: expected an object")
    trials = _jsonl(path / "trials.jsonl")
    runs = []
    for trial in trials:
        run_dir = path / "trials" / Path(str(trial.get("run_dir", ""))).name
        if trial.get("run_dir") and (run_dir / "metrics.jsonl").is_file():
            run = _read_run(run_dir)
            run.name = f"trial {trial.get('number')}"
            runs.append(run)
    return SweepData(path=path, name=path.resolve().name, asked=asked, trials=trials, runs=runs)


def _read_ablation(path: Path) -> AblationData:
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path / 'summary.json'}: not valid JSON ({exc})") from exc
    if not isinstance(summary, dict) or not isinstance(summary.get("variants"), dict):
        raise ConfigError(f"{path / 'summary.json'}: expected an object with 'variants'")
    rows = _jsonl(path / "ablation.jsonl")
    return AblationData(path=path, name=path.resolve().name, summary=summary, rows=rows)


def _number(value: Any) -> float | None:
    """A finite float from a metric cell; None for missing, null, text or NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def series(
    rows: list[dict[str, Any]], key: str, x: str = "step"
) -> tuple[list[float], list[float]]:
    """(xs, ys) of the rows holding both keys as finite numbers."""
    xs: list[float] = []
    ys: list[float] = []
    for row in rows:
        a, b = _number(row.get(x)), _number(row.get(key))
        if a is not None and b is not None:
            xs.append(a)
            ys.append(b)
    return xs, ys


def eval_elapsed(run: RunData) -> list[dict[str, Any]]:
    """Eval rows with elapsed_s, interpolated by step between the nearest train rows (eval
    rows do not carry it); rows outside the train rows' span are left out."""
    steps, times = series(run.train, "elapsed_s")
    out: list[dict[str, Any]] = []
    for row in run.evals:
        step = _number(row.get("step"))
        if step is None or not steps or not steps[0] <= step <= steps[-1]:
            continue
        i = next(i for i, s in enumerate(steps) if s >= step)
        if steps[i] == step or i == 0:
            elapsed = times[i]
        else:
            w = (step - steps[i - 1]) / (steps[i] - steps[i - 1])
            elapsed = times[i - 1] + w * (times[i] - times[i - 1])
        out.append({**row, "elapsed_s": elapsed})
    return out


def memory_keys(run: RunData) -> list[str]:
    """Train-row keys that hold a memory reading (peak_rss_mib, cuda_mem_gb, ...)."""
    keys = {k for r in run.train for k, v in r.items() if _MEMORY.search(k) and _number(v)}
    return sorted(keys)


def eval_keys(run: RunData) -> list[str]:
    """Every numeric metric eval rows hold."""
    return sorted({k for r in run.evals for k, v in r.items() if k != "step" and _number(v)})


def final_values(run: RunData) -> dict[str, float | str]:
    """The numbers a table of runs compares: last train and eval values, params, time."""
    out: dict[str, float | str] = {"status": run.status}
    if run.start is not None:
        for key in ("num_params", "device"):
            if run.start.get(key) is not None:
                out[key] = run.start[key]
    out["last_step"] = run.last_step
    for key in ("loss", "lr", "tokens_per_s", "grad_norm", "mfu", *memory_keys(run)):
        _, ys = series(run.train, key)
        if ys:
            out[f"train/{key}"] = ys[-1]
    for key in eval_keys(run):
        _, ys = series(run.evals, key)
        if ys:
            out[f"eval/{key}"] = ys[-1]
    if run.end is not None:
        for key in ("best_val_loss", "elapsed_s"):
            value = _number(run.end.get(key))
            if value is not None:
                out[key] = value
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaves (list items by index), so two configs compare key by key."""
    if isinstance(tree, dict):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in tree.items()]
    elif isinstance(tree, list) and tree:
        items = [(str(i), v) for i, v in enumerate(tree)]
    else:
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return out


_ABSENT = "(absent)"


def config_diff(runs: list[RunData]) -> list[tuple[str, list[Any]]]:
    """The dotted config keys whose values differ between runs, each with every run's value."""
    flat = [flatten(run.config) for run in runs]
    keys = sorted({k for f in flat for k in f})
    rows = [(k, [f.get(k, _ABSENT) for f in flat]) for k in keys]
    return [(k, values) for k, values in rows if any(v != values[0] for v in values[1:])]
