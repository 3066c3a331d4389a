"""`neat ablate`: train every variant of a unified model (and its matched baseline) per seed.

A variant turns a subset of the listed components on (the others stay as the config has
them). Variants with `svf` are two runs: the same variant without svf (the base, shared with
that variant when it is in the table) and then SVF on it for `svf_steps`. Every run is a plain
`neat train` subprocess with `--resume auto` in its own run directory, so a killed ablation
started again skips the finished runs and continues the interrupted one from its checkpoint.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from neat.config import ExperimentConfig, validate_config
from neat.errors import ConfigError, NeatError
from neat.files import write_text_atomic
from neat.models.baseline import count_params, matched_baseline, vocab_size_of
from neat.models.unified.config import COMPONENTS, NEATConfig

__all__ = [
    "BASELINE",
    "AblationRun",
    "Mode",
    "finished",
    "plan",
    "result_row",
    "run_all",
    "variants",
]

Mode = Literal["all", "leave-one-out", "one-at-a-time"]
BASELINE = "baseline"
USAGE_FILE = "ablation_usage.json"  # a run's wall time and peak memory, kept beside it


@dataclass(frozen=True)
class AblationRun:
    """One training run: `variant` is its row in the table (None: a base that only feeds an
    svf run), `after` the run whose checkpoint it starts from."""

    key: str
    variant: str | None
    seed: int
    config: dict[str, Any]
    params: int
    after: str | None = None


def variant_name(on: Collection[str]) -> str:
    return "+".join(name for name in COMPONENTS if name in on) or "none"


def variants(components: Sequence[str], mode: Mode) -> list[frozenset[str]]:
    """The subsets of `components` that are on, the full set first."""
    full = frozenset(components)
    if mode == "leave-one-out":
        return [full, *(full - {name} for name in components)]
    if mode == "one-at-a-time":
        return [frozenset(), *(frozenset({name}) for name in components)]
    subsets = itertools.chain.from_iterable(
        itertools.combinations(components, k) for k in range(len(components), -1, -1)
    )
    return [frozenset(s) for s in subsets]


def _raw(config: ExperimentConfig) -> dict[str, Any]:
    raw: dict[str, Any] = config.model_dump(mode="json")
    return raw


def _with_components(
    raw: dict[str, Any], given: dict[str, Any], listed: Sequence[str], on: frozenset[str]
) -> dict[str, Any]:
    """`raw` with the listed components on or off (on: the config's own settings of the
    component, else its defaults); finetune and mvot are left for the components to set."""
    out: dict[str, Any] = json.loads(json.dumps(raw))
    components = out["model"]["components"]
    for name in listed:
        components[name] = (given.get(name) or {}) if name in on else None
    out["model"]["components"] = {k: v for k, v in components.items() if v is not None}
    out["model"]["init_from"] = None
    finetune = out.get("finetune", {})
    for key in ("method", "targets"):
        finetune.pop(key, None)
    out["mvot"] = {}
    return out


def _seeded(raw: dict[str, Any], seed: int, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(raw))
    out["training"]["seed"] = seed
    out["name"] = name
    return out


def _validated(raw: dict[str, Any], what: str) -> ExperimentConfig:
    try:
        return validate_config(raw, source=what)
    except ConfigError as err:
        raise ConfigError(f"ablation variant {what}: {err}") from None


def plan(
    config: ExperimentConfig,
    components: Sequence[str],
    mode: Mode,
    seeds: Sequence[int],
    *,
    baseline: bool = True,
    svf_steps: int | None = None,
    svf_lr: float = 1e-2,
) -> list[AblationRun]:
    """Every run, each after the run it starts from."""
    if config.model.type != "neat":
        raise ConfigError(
            f"neat ablate turns the components of model.type: neat on and off, and the config's "
            f"model.type is {config.model.type}: write it as model.type: neat with components"
        )
    assert isinstance(config.model, NEATConfig)
    unknown = [name for name in components if name not in COMPONENTS]
    if unknown or not components:
        raise ConfigError(
            f"--components {','.join(components)}: name one or more of {', '.join(COMPONENTS)}"
        )
    given = {
        name: section.model_dump(mode="json")
        for name in COMPONENTS
        if (section := getattr(config.model.components, name)) is not None
    }
    raw = _raw(config)
    vocab = vocab_size_of(config)
    runs: dict[str, AblationRun] = {}

    def add(
        key: str, variant: str | None, seed: int, cfg: dict[str, Any], after: str | None
    ) -> None:
        if key in runs:
            if variant is not None:  # a shared base that is also a row of the table
                runs[key] = AblationRun(key, variant, seed, cfg, runs[key].params, after)
            return
        validated = _validated(cfg, key)
        runs[key] = AblationRun(
            key, variant, seed, cfg, count_params(validated.model, vocab), after
        )

    for seed in seeds:
        for on in variants(components, mode):
            name = variant_name(on)
            base_on = on - {"svf"}
            base_key = f"{variant_name(base_on)}-s{seed}"
            base = _seeded(_with_components(raw, given, components, base_on), seed, base_key)
            if "svf" not in on:
                add(base_key, name, seed, base, None)
                continue
            add(base_key, None, seed, base, None)
            key = f"{name}-s{seed}"
            adapted = _seeded(_with_components(raw, given, components, on), seed, key)
            adapted["training"]["max_steps"] = svf_steps or config.training.max_steps
            adapted["optimization"].update(lr=svf_lr, min_lr=svf_lr / 10)
            adapted["model"]["init_from"] = "<after>"  # filled with the base's run directory
            add(key, name, seed, adapted, base_key)
        if baseline:
            full = _validated(
                _seeded(
                    _with_components(raw, given, components, frozenset(components) - {"svf"}),
                    seed,
                    "full",
                ),
                "full",
            )
            gpt, _ = matched_baseline(full, vocab_size=vocab)
            key = f"{BASELINE}-s{seed}"
            add(key, BASELINE, seed, _seeded(_raw(gpt), seed, key), None)
    ordered = [run for run in runs.values() if run.after is None]
    return ordered + [run for run in runs.values() if run.after is not None]


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    return rows


def finished(run_dir: Path) -> bool:
    """Whether the run completed (its metrics end with a completed run_end)."""
    ends = [row for row in _rows(run_dir / "metrics.jsonl") if row.get("event") == "run_end"]
    return bool(ends) and ends[-1].get("status") == "completed"


def _config_for(run: AblationRun, out: Path) -> Path:
    cfg = json.loads(json.dumps(run.config))
    if run.after is not None:
        # absolute: a relative path in a config resolves against the config's folder
        cfg["model"]["init_from"] = str((out / "runs" / run.after).resolve())
    path = out / "configs" / f"{run.key}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, yaml.safe_dump(cfg, sort_keys=False))
    return path


def _train(run: AblationRun, out: Path, threads: int) -> None:
    run_dir = out / "runs" / run.key
    command = [sys.executable, "-m", "neat", "train", "-c", str(_config_for(run, out)),
               "--run-dir", str(run_dir), "--resume", "auto"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log = out / "logs" / f"{run.key}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("ab") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    child.returncode = code
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise NeatError(f"ablation run {run.key} failed (exit {code}); its log {log}:\n{tail}")
    peak_mib = usage.ru_maxrss / 1024  # kilobytes on Linux
    write_text_atomic(
        run_dir / USAGE_FILE,
        json.dumps({"wall_s": time.perf_counter() - started, "peak_rss_mib": peak_mib}),
    )


def run_all(
    runs: Sequence[AblationRun],
    out: Path,
    *,
    jobs: int = 1,
    say: Callable[[str], None] = print,
) -> None:
    """Train what is not finished, `jobs` at once, bases before the svf runs on them."""
    threads = max(1, (os.cpu_count() or 1) // jobs)

    def one(run: AblationRun) -> None:
        if finished(out / "runs" / run.key):
            say(f"{run.key}: finished before, reused")
            return
        say(f"{run.key}: training")
        _train(run, out, threads)
        say(f"{run.key}: done")

    for stage in ([r for r in runs if r.after is None], [r for r in runs if r.after is not None]):
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, stage))  # re-raises the first failure


def result_row(run: AblationRun, out: Path) -> dict[str, Any]:
    """The table's numbers of one finished run: its final evaluation, throughput, memory."""
    run_dir = out / "runs" / run.key
    rows = _rows(run_dir / "metrics.jsonl")
    evals = [row for row in rows if row.get("event") == "eval"]
    speeds = [row["tokens_per_s"] for row in rows if row.get("event") == "train"]
    metrics = {
        key: float(value)
        for key, value in (evals[-1] if evals else {}).items()
        if key not in ("event", "step") and isinstance(value, int | float)
    }
    metrics["params"] = float(run.params)
    if speeds:
        metrics["tokens_per_s"] = statistics.median(speeds[1:] or speeds)  # the first warms up
    usage_file = run_dir / USAGE_FILE
    if usage_file.exists():
        metrics["peak_rss_mib"] = float(json.loads(usage_file.read_text())["peak_rss_mib"])
    return {"variant": run.variant, "seed": run.seed, "run": run.key, "metrics": metrics}
