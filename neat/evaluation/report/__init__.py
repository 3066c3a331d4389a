"""`neat report`: one self-contained HTML page (and its plots as PNG files beside it) for
runs, ablations and sweeps, so results can be read and shared without a notebook or a network."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from neat.evaluation.report.html import (
    ablation_section,
    comparison_section,
    page,
    run_section,
    sweep_section,
)
from neat.evaluation.report.plots import (
    Plot,
    ablation_plots,
    comparison_plots,
    run_plots,
    sweep_plots,
)
from neat.evaluation.report.read import AblationData, RunData, SweepData, config_diff, read_path
from neat.files import write_bytes_atomic, write_text_atomic

__all__ = ["Report", "build_report", "plot_dir"]


@dataclass(frozen=True)
class Report:
    """What was written: the page and the PNG files of its plots."""

    html: Path
    plots: list[Path]


def plot_dir(out: Path) -> Path:
    """`report.html` keeps its PNGs in `report_plots/`."""
    return out.with_name(f"{out.stem}_plots")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "item"


def _unique_names(items: Sequence[RunData | AblationData | SweepData]) -> None:
    """Two runs both called `run` (different parents) get `run`, `run-2` in legends."""
    seen: dict[str, int] = {}
    for item in items:
        count = seen.get(item.name, 0) + 1
        seen[item.name] = count
        if count > 1:
            item.name = f"{item.name}-{count}"


def build_report(paths: Sequence[Path], out: Path) -> Report:
    """Read every path (run, ablation or sweep), draw, and write the page and the PNGs; each
    file is replaced whole, so a page open in a browser never reloads half written."""
    items = [read_path(path) for path in paths]
    _unique_names(items)
    sections: list[str] = []
    all_plots: list[Plot] = []
    runs = [item for item in items if isinstance(item, RunData)]
    if len(runs) > 1:
        plots = comparison_plots(runs)
        sections.append(comparison_section(runs, plots, config_diff(runs)))
        all_plots += plots
    for i, item in enumerate(items, start=1):
        prefix = f"{i:02d}-{_safe(item.name)}-"
        if isinstance(item, RunData):
            plots = run_plots(item, prefix)
            sections.append(run_section(item, plots))
        elif isinstance(item, SweepData):
            plots = sweep_plots(item, prefix)
            sections.append(sweep_section(item, plots))
        else:
            plots = ablation_plots(item, prefix)
            sections.append(ablation_section(item, plots))
        all_plots += plots
    title = "neat report: " + ", ".join(item.name for item in items)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = plot_dir(out)
    folder.mkdir(exist_ok=True)
    files = []
    for plot in all_plots:
        file = folder / f"{plot.name}.png"
        write_bytes_atomic(file, plot.png)
        files.append(file)
    for stale in set(folder.glob("*.png")) - set(files):  # from an earlier, longer report
        stale.unlink(missing_ok=True)
    write_text_atomic(out, page(title, sections))
    return Report(html=out, plots=files)
