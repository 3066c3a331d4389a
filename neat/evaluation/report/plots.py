"""The report's figures as PNG bytes. matplotlib is optional (`neat[plots]`), so it is
imported only when a report is drawn, and always onto the Agg canvas (no display, no global
backend switch)."""

from __future__ import annotations

import importlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from neat.errors import ConfigError
from neat.evaluation.report.read import (
    AblationData,
    RunData,
    SweepData,
    eval_elapsed,
    eval_keys,
    memory_keys,
    series,
)

__all__ = [
    "ABLATION_METRICS",
    "Plot",
    "ablation_plots",
    "comparison_plots",
    "run_plots",
    "sweep_plots",
]

ABLATION_METRICS = ("acc", "acc_id", "acc_heldout", "acc_ood", "val_loss", "tokens_per_s")
_SIZE = (6.0, 3.5)
_DPI = 100


@dataclass(frozen=True)
class Plot:
    """One figure: a file-safe name, a caption and the PNG."""

    name: str
    title: str
    png: bytes


Line = tuple[str, Sequence[float], Sequence[float]]


def matplotlib_parts() -> tuple[Any, Any]:
    """(Figure, FigureCanvasAgg), or a ConfigError naming the extra to install."""
    try:
        figure = importlib.import_module("matplotlib.figure")
        agg = importlib.import_module("matplotlib.backends.backend_agg")
    except ImportError as exc:
        raise ConfigError("drawing plots needs matplotlib: pip install 'neat[plots]'") from exc
    return figure.Figure, agg.FigureCanvasAgg


def _png(fig: Any) -> bytes:
    _, canvas = matplotlib_parts()
    canvas(fig)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _lines(name: str, title: str, xlabel: str, ylabel: str, lines: Sequence[Line]) -> Plot | None:
    """A line plot of the non-empty lines, or None when none has a point."""
    drawn = [line for line in lines if len(line[1])]
    if not drawn:
        return None
    figure, _ = matplotlib_parts()
    fig = figure(figsize=_SIZE)
    ax = fig.add_subplot()
    for label, xs, ys in drawn:
        ax.plot(xs, ys, lw=1.2, marker="o" if len(xs) < 12 else None, ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return Plot(name, title, _png(fig))


def _train(run: RunData, key: str, x: str = "step") -> tuple[list[float], list[float]]:
    return series(run.train, key, x)


def run_plots(run: RunData, prefix: str) -> list[Plot]:
    """Loss by step and by wall time, lr, throughput, MFU, memory and eval metrics."""
    evals_timed = eval_elapsed(run)
    candidates: list[Plot | None] = [
        _lines(
            f"{prefix}loss_step",
            f"{run.name}: loss",
            "step",
            "loss",
            [("train", *_train(run, "loss")), ("val", *series(run.evals, "val_loss"))],
        ),
        _lines(
            f"{prefix}loss_time",
            f"{run.name}: loss over wall time",
            "elapsed (s)",
            "loss",
            [
                ("train", *_train(run, "loss", "elapsed_s")),
                ("val", *series(evals_timed, "val_loss", "elapsed_s")),
            ],
        ),
        _lines(
            f"{prefix}lr", f"{run.name}: learning rate", "step", "lr", [("lr", *_train(run, "lr"))]
        ),
        _lines(
            f"{prefix}tokens_per_s",
            f"{run.name}: throughput",
            "step",
            "tokens/s",
            [("tokens/s", *_train(run, "tokens_per_s"))],
        ),
        _lines(f"{prefix}mfu", f"{run.name}: MFU", "step", "MFU", [("mfu", *_train(run, "mfu"))]),
        _lines(
            f"{prefix}memory",
            f"{run.name}: memory",
            "step",
            "memory",
            [(key, *_train(run, key)) for key in memory_keys(run)],
        ),
    ]
    candidates += _eval_groups(run, prefix)
    return [plot for plot in candidates if plot is not None]


def _eval_groups(run: RunData, prefix: str) -> list[Plot | None]:
    """Loss-like eval metrics besides val_loss on one plot, accuracies on another; the page
    tabulates every final value anyway."""
    keys = [k for k in eval_keys(run) if k != "val_loss"]
    groups = {
        "eval_losses": [k for k in keys if "loss" in k or "bpb" in k],
        "eval_accuracy": [k for k in keys if k.startswith("acc") or "_acc" in k],
    }
    return [
        _lines(
            f"{prefix}{group}",
            f"{run.name}: {group.replace('_', ' ')}",
            "step",
            group.removeprefix("eval_"),
            [(k, *series(run.evals, k)) for k in names],
        )
        for group, names in groups.items()
        if names
    ]


def comparison_plots(runs: Sequence[RunData], prefix: str = "") -> list[Plot]:
    """Train and val loss of every run on shared axes, one colour per run."""
    candidates = [
        _lines(
            f"{prefix}compare_train_loss",
            "train loss",
            "step",
            "loss",
            [(run.name, *_train(run, "loss")) for run in runs],
        ),
        _lines(
            f"{prefix}compare_val_loss",
            "val loss",
            "step",
            "val loss",
            [(run.name, *series(run.evals, "val_loss")) for run in runs],
        ),
    ]
    return [plot for plot in candidates if plot is not None]


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan


def ablation_plots(ablation: AblationData, prefix: str) -> list[Plot]:
    """Per main metric, the mean of each variant with its 95% interval as the error bar."""
    variants: dict[str, dict[str, dict[str, Any]]] = ablation.summary["variants"]
    plots: list[Plot] = []
    for metric in ABLATION_METRICS:
        stats = {v: m[metric] for v, m in variants.items() if isinstance(m.get(metric), dict)}
        means = {v: _finite(s.get("mean")) for v, s in stats.items()}
        names = [v for v, mean in means.items() if not math.isnan(mean)]
        if not names:
            continue
        plots.append(_bars(f"{prefix}{metric}", f"{ablation.name}: {metric}", metric, names, stats))
    return plots


def _bars(name: str, title: str, metric: str, names: list[str], stats: dict[str, Any]) -> Plot:
    means = [_finite(stats[v]["mean"]) for v in names]
    low = [_gap(m, _finite(stats[v].get("ci_low"))) for v, m in zip(names, means, strict=True)]
    high = [_gap(_finite(stats[v].get("ci_high")), m) for v, m in zip(names, means, strict=True)]
    figure, _ = matplotlib_parts()
    fig = figure(figsize=_SIZE)
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(names))]
    ax.bar(range(len(names)), means, yerr=[low, high], capsize=4, color=colours)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize="small")
    ax.set_ylabel(metric)
    ax.set_title(title + " (mean, 95% CI)")
    ax.grid(axis="y", alpha=0.3)
    return Plot(name, title, _png(fig))


def _gap(a: float, b: float) -> float:
    """a - b for an error bar; 0 where either end is unknown (one seed)."""
    return max(0.0, a - b) if not (math.isnan(a) or math.isnan(b)) else 0.0


def sweep_plots(sweep: SweepData, prefix: str) -> list[Plot]:
    """The score of each trial with the best so far, the score against each searched key,
    and the trials' loss curves overlaid."""
    metric = str(sweep.asked.get("metric", "value"))
    scored = sorted(
        (t for t in sweep.trials if not math.isnan(_finite(t.get("value")))),
        key=lambda t: int(t.get("number", 0)),
    )
    plots: list[Plot] = []
    if scored:
        plots.append(_trial_scores(sweep, scored, metric, f"{prefix}trials"))
        space: dict[str, Any] = sweep.asked.get("space") or {}
        for key in sweep.keys:
            plots.append(_score_by_key(sweep, scored, metric, key, space.get(key) or {}, prefix))
    return plots + comparison_plots(sweep.runs, prefix)


def _trial_scores(sweep: SweepData, scored: list[dict[str, Any]], metric: str, name: str) -> Plot:
    numbers = [int(t["number"]) for t in scored]
    values = [float(t["value"]) for t in scored]
    pick = max if sweep.asked.get("direction") == "maximize" else min
    best = [pick(values[: i + 1]) for i in range(len(values))]
    figure, _ = matplotlib_parts()
    fig = figure(figsize=_SIZE)
    ax = fig.add_subplot()
    ax.scatter(numbers, values, s=18, label="trial")
    ax.step(numbers, best, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    title = f"{sweep.name}: {metric} per trial ({sweep.asked.get('strategy', '?')})"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return Plot(name, title, _png(fig))


def _score_by_key(
    sweep: SweepData,
    scored: list[dict[str, Any]],
    metric: str,
    key: str,
    parameter: dict[str, Any],
    prefix: str,
) -> Plot:
    """A scatter of score against the key's value; a choice's values sit at 0, 1, 2, ..."""
    raw = [t.get("params", {}).get(key) for t in scored]
    values = [float(t["value"]) for t in scored]
    figure, _ = matplotlib_parts()
    fig = figure(figsize=_SIZE)
    ax = fig.add_subplot()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
        ax.scatter([float(v) for v in raw], values, s=18)
        if parameter.get("type") == "loguniform":
            ax.set_xscale("log")
    else:
        labels = list(dict.fromkeys(str(v) for v in raw))
        ax.scatter([labels.index(str(v)) for v in raw], values, s=18)
        ax.set_xticks(range(len(labels)), labels, fontsize="small")
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    title = f"{sweep.name}: {metric} by {key}"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return Plot(f"{prefix}by_{key.replace('.', '_')}", title, _png(fig))
