"""`neat sweep`: hyperparameter search where every trial is a normal `neat train` run.

Optuna (Akiba et al. 2019) proposes the values: every grid point enqueued once for grid,
`RandomSampler` for random and TPE (Bergstra et al. 2011) for bayes. Its study is kept in
SQLite beside the trials, so a killed sweep started again goes on: finished trials stay, and
the trial that was running is proposed again with the same values, its run resumed from its
last checkpoint. A trial's score is the best value of `metric` over its evaluations; `prune`
stops a trial at an evaluation where it falls behind the median of earlier trials (Optuna's
MedianPruner).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from neat.config.sweep import Choice, FloatRange, IntRange, Parameter, grid_values
from neat.errors import ConfigError, NeatError
from neat.files import write_text_atomic

__all__ = ["SWEEP_FILE", "TRIALS_FILE", "Strategy", "SweepResult", "run_sweep", "trial_key"]

Strategy = Literal["grid", "random", "bayes"]
STUDY = "study.sqlite"
SWEEP_FILE = "sweep.json"  # what was asked: `neat report` tells a sweep folder by it
TRIALS_FILE = "trials.jsonl"  # every trial so far, rewritten after each one


@dataclass(frozen=True)
class SweepResult:
    trials: list[dict[str, Any]]  # {number, params, value, state, run_dir}
    best: dict[str, Any] | None


def trial_key(params: dict[str, Any]) -> str:
    """The run directory name of a set of values: the same values find the same run."""
    text = json.dumps(params, sort_keys=True)
    return "t" + hashlib.sha256(text.encode()).hexdigest()[:10]


def _sampler(strategy: Strategy, space: dict[str, Parameter], seed: int) -> Any:
    import optuna

    if strategy in ("grid", "random"):  # grid points are enqueued (`_enqueue_grid`)
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, len(space) * 2 + 1))


def _suggest(trial: Any, key: str, parameter: Parameter, strategy: Strategy) -> Any:
    if strategy == "grid" or isinstance(parameter, Choice):
        values = grid_values(key, parameter)
        return trial.suggest_categorical(key, values)
    if isinstance(parameter, IntRange):
        return trial.suggest_int(key, parameter.low, parameter.high, step=parameter.step)
    assert isinstance(parameter, FloatRange)
    return trial.suggest_float(
        key, parameter.low, parameter.high, log=parameter.type == "loguniform"
    )


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _evals(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    return [
        (int(row["step"]), float(row[metric]))
        for row in _rows(run_dir / "metrics.jsonl")
        if row.get("event") == "eval" and isinstance(row.get(metric), int | float)
    ]


def _train(
    command: list[str],
    run_dir: Path,
    trial: Any,
    metric: str,
    prune: bool,
    log: Path,
) -> bool:
    """Run one trial's training; report its evaluations; True when pruned."""
    reported: set[int] = set()
    with log.open("ab") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            while child.poll() is None:
                time.sleep(0.5)
                for step, value in _evals(run_dir, metric):
                    if step in reported:
                        continue
                    reported.add(step)
                    trial.report(value, step)
                    if prune and trial.should_prune():
                        child.send_signal(signal.SIGTERM)  # saves a checkpoint, exits 143
                        child.wait()
                        return True
        except BaseException:
            child.kill()
            raise
    if child.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:]
        raise NeatError(
            f"trial {run_dir.name} failed (exit {child.returncode}); its log {log}:\n{tail}"
        )
    for step, value in _evals(run_dir, metric):
        if step not in reported:
            trial.report(value, step)
    return False


def run_sweep(
    config_path: Path,
    overrides: Sequence[str],
    space: dict[str, Parameter],
    out: Path,
    *,
    strategy: Strategy,
    trials: int,
    metric: str = "val_loss",
    direction: Literal["minimize", "maximize"] = "minimize",
    prune: bool = False,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> SweepResult:
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "neat sweep uses Optuna, which is not installed: pip install 'neat[sweeps]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out / STUDY}"
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=3) if prune else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name="neat-sweep",
        storage=storage,
        load_if_exists=True,
        direction=direction,
        sampler=_sampler(strategy, space, seed),
        pruner=pruner,
    )
    # a sampler seeded as before would propose the finished trials' values again
    study.sampler = _sampler(strategy, space, seed + len(study.trials))
    _requeue_interrupted(study)
    if strategy == "grid":
        _enqueue_grid(study, space)
    config = config_path.resolve()
    asked = {
        "config": str(config),
        "overrides": list(overrides),
        "strategy": strategy,
        "trials": trials,
        "metric": metric,
        "direction": direction,
        "prune": prune,
        "seed": seed,
        "space": {key: parameter.model_dump(mode="json") for key, parameter in space.items()},
    }
    write_text_atomic(out / SWEEP_FILE, json.dumps(asked, indent=2) + "\n")
    while True:
        counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        done = study.get_trials(deepcopy=False, states=counted)
        if len(done) >= trials:
            break
        trial = study.ask()
        params = {
            key: _suggest(trial, key, parameter, strategy) for key, parameter in space.items()
        }
        key = trial_key(params)
        run_dir = out / "trials" / key
        sets = [item for k, v in params.items() for item in ("--set", f"{k}={json.dumps(v)}")]
        command = [sys.executable, "-m", "neat", "train", "-c", str(config), "--run-dir",
                   str(run_dir), "--resume", "auto"]  # fmt: skip
        for item in overrides:
            command += ["--set", item]
        command += sets
        (out / "logs").mkdir(exist_ok=True)
        say(f"trial {trial.number} {key}: {params}")
        _write_trials(_result(study, out), out)  # the running trial shows in a report
        pruned = _train(command, run_dir, trial, metric, prune, out / "logs" / f"{key}.log")
        values = [value for _, value in _evals(run_dir, metric)]
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            _write_trials(_result(study, out), out)
            say(f"trial {trial.number}: pruned")
            continue
        if not values:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            _write_trials(_result(study, out), out)
            raise ConfigError(
                f"trial {trial.number} reported no {metric}: name a metric its evaluator "
                f"reports (--metric), and make evaluation.interval divide training.max_steps"
            )
        best = min(values) if direction == "minimize" else max(values)
        study.tell(trial, best)
        _write_trials(_result(study, out), out)
        say(f"trial {trial.number}: {metric} {best:.4f}")
    result = _result(study, out)
    _write_trials(result, out)
    return result


def _write_trials(result: SweepResult, out: Path) -> None:
    text = "".join(json.dumps(row) + "\n" for row in result.trials)
    write_text_atomic(out / TRIALS_FILE, text)


def _enqueue_grid(study: Any, space: dict[str, Parameter]) -> None:
    """Every point of the grid once (Optuna's GridSampler stops a study only inside
    `optimize`, which an ask-and-tell loop does not run)."""
    keys = list(space)
    for values in itertools.product(*(grid_values(key, space[key]) for key in keys)):
        study.enqueue_trial(dict(zip(keys, values, strict=True)), skip_if_exists=True)


def _requeue_interrupted(study: Any) -> None:
    """A trial left running by a killed sweep is failed and proposed again, same values."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)


def _result(study: Any, out: Path) -> SweepResult:
    rows = []
    for trial in study.trials:
        if trial.state.name == "FAIL" and not trial.params:
            continue
        rows.append(
            {
                "number": trial.number,
                "params": trial.params,
                "value": trial.value,
                "state": trial.state.name.lower(),
                "run_dir": str(out / "trials" / trial_key(trial.params)),
            }
        )
    complete = [r for r in rows if r["state"] == "complete"]
    best = None
    if complete:
        trial = study.best_trial
        best = next(r for r in complete if r["number"] == trial.number)
    return SweepResult(rows, best)
