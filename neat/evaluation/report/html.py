"""The report page: one self-contained HTML file (plots inlined as base64 PNG, CSS inline), so
it opens anywhere without a network; every text from a run is escaped."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from neat.evaluation.ablation_table import TABLE_METRICS
from neat.evaluation.report.plots import Plot
from neat.evaluation.report.read import AblationData, RunData, SweepData, final_values

__all__ = ["ablation_section", "comparison_section", "page", "run_section", "sweep_section"]

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1250px; margin: 1.5em auto;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
.plots img { margin: .3em; border: 1px solid #eee; }
.meta span { margin-right: 1.5em; } .status { font-weight: bold; }
"""


def page(title: str, sections: Sequence[str]) -> str:
    """The whole document around the sections."""
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _img(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' alt='{escape(plot.title, quote=True)}'>"


def _plots(plots: Sequence[Plot]) -> str:
    return "<div class='plots'>\n" + "\n".join(_img(p) for p in plots) + "\n</div>" if plots else ""


def _format(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return escape(str(value))
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f"<td class='num'>{_format(value)}</td>" if numeric else f"<td>{_format(value)}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "\n".join(
        f"<tr><th>{escape(str(row[0]))}</th>{''.join(_cell(v) for v in row[1:])}</tr>"
        for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def run_section(run: RunData, plots: Sequence[Plot]) -> str:
    """A run's header, final values, plots, checkpoints, sample and resolved config."""
    start = run.start or {}
    meta = [
        ("status", run.status),
        ("params", _format(start.get("num_params", "?"))),
        ("device", start.get("device", "?")),
        ("path", str(run.path)),
    ]
    spans = "".join(
        f"<span class='{escape(k)}'>{escape(k)}: {escape(str(v))}</span>" for k, v in meta
    )
    finals = final_values(run)
    parts = [
        f"<section>\n<h2>Run {escape(run.name)}</h2>\n<p class='meta'>{spans}</p>",
        "<h3>Final values</h3>",
        _table(["metric", "value"], [(k, v) for k, v in finals.items()]),
        _plots(plots),
        "<h3>Checkpoints</h3>",
        (
            "<ul>" + "".join(f"<li>{escape(c)}</li>" for c in run.checkpoints) + "</ul>"
            if run.checkpoints
            else "<p>none</p>"
        ),
    ]
    if run.sample:
        parts += ["<h3>Final sample</h3>", f"<pre>{escape(run.sample)}</pre>"]
    parts.append(
        "<details><summary>Resolved config</summary>"
        f"<pre>{escape(run.config_text or '(no config.yaml)')}</pre></details>\n</section>"
    )
    return "\n".join(parts)


def comparison_section(
    runs: Sequence[RunData], plots: Sequence[Plot], diff: Sequence[tuple[str, Sequence[Any]]]
) -> str:
    """Overlaid curves, final values side by side and the config keys that differ."""
    names = [run.name for run in runs]
    finals = [final_values(run) for run in runs]
    keys = list(dict.fromkeys(k for f in finals for k in f))
    table = _table(["metric", *names], [(k, *(f.get(k, "-") for f in finals)) for k in keys])
    diff_table = (
        _table(["config key", *names], [(k, *(_short(v) for v in values)) for k, values in diff])
        if diff
        else "<p>The resolved configs are identical.</p>"
    )
    return "\n".join(
        [
            "<section>\n<h2>Comparison</h2>",
            _plots(plots),
            "<h3>Final values</h3>",
            table,
            "<h3>Config differences</h3>",
            diff_table + "\n</section>",
        ]
    )


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _stat_cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    text = _format(stats.get("mean", math.nan))
    if stats.get("n", 0) > 1:
        text += f" ± {_format(stats.get('std', math.nan))}"
        low, high = stats.get("ci_low", math.nan), stats.get("ci_high", math.nan)
        text += f" [{_format(low)}, {_format(high)}]"
    return text


def _diff_cell(test: dict[str, Any] | None) -> str:
    if not test:
        return "-"
    text = f"{_format(test.get('mean_diff', math.nan))} [{_format(test.get('ci_low', math.nan))}, "
    return (
        text + f"{_format(test.get('ci_high', math.nan))}] p={_format(test.get('p_t', math.nan))}"
    )


def ablation_section(ablation: AblationData, plots: Sequence[Plot]) -> str:
    """The ablation's bars and its summary: mean ± std [95% CI] per variant, then the paired
    difference to the baseline."""
    variants: dict[str, dict[str, Any]] = ablation.summary["variants"]
    present = {m for stats in variants.values() for m in stats}
    metrics = [m for m in TABLE_METRICS if m in present] or sorted(present)
    rows = [(v, *(_stat_cell(s.get(m)) for m in metrics)) for v, s in variants.items()]
    parts = [
        f"<section>\n<h2>Ablation {escape(ablation.name)}</h2>",
        f"<p class='meta'><span>path: {escape(str(ablation.path))}</span>"
        f"<span>result rows: {len(ablation.rows)}</span></p>",
        _plots(plots),
        "<h3>Summary (mean ± std [95% CI])</h3>",
        _table(["variant", *metrics], rows),
    ]
    versus: dict[str, dict[str, Any]] = ablation.summary.get("vs_baseline") or {}
    if versus:
        diff_rows = [(v, *(_diff_cell(t.get(m)) for m in metrics)) for v, t in versus.items()]
        parts += ["<h3>Versus baseline (mean paired difference [95% CI], t-test p)</h3>"]
        parts.append(_table(["variant", *metrics], diff_rows))
    return "\n".join(parts) + "\n</section>"


def sweep_section(sweep: SweepData, plots: Sequence[Plot]) -> str:
    """What was searched, the best trial, the plots and every trial's values and score."""
    asked = sweep.asked
    metric = str(asked.get("metric", "value"))
    counted = [t for t in sweep.trials if t.get("state") in ("complete", "pruned")]
    meta = [
        ("strategy", asked.get("strategy", "?")),
        ("metric", f"{metric} ({asked.get('direction', 'minimize')})"),
        ("trials", f"{len(counted)} of {asked.get('trials', '?')} done"),
        ("path", str(sweep.path)),
    ]
    spans = "".join(f"<span>{escape(k)}: {escape(str(v))}</span>" for k, v in meta)
    best = sweep.best
    best_text = (
        f"trial {best.get('number')}: {metric} {_format(best.get('value'))} with "
        + ", ".join(f"{k} = {_format(v)}" for k, v in (best.get("params") or {}).items())
        if best
        else "no trial has finished yet"
    )
    rows = [
        (
            t.get("number", "?"),
            *((t.get("params") or {}).get(k, "-") for k in sweep.keys),
            "-" if t.get("value") is None else t.get("value"),
            t.get("state", "?"),
            Path(str(t.get("run_dir", ""))).name,
        )
        for t in sweep.trials
    ]
    space = asked.get("space") or {}
    return "\n".join(
        [
            f"<section>\n<h2>Sweep {escape(sweep.name)}</h2>\n<p class='meta'>{spans}</p>",
            f"<p><b>Best</b>: {escape(best_text)}</p>",
            _plots(plots),
            "<h3>Trials</h3>",
            _table(["trial", *sweep.keys, metric, "state", "run"], rows),
            "<details><summary>Search space</summary>"
            f"<pre>{escape(json.dumps(space, indent=2))}</pre></details>\n</section>",
        ]
    )
