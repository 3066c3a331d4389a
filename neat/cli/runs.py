"""`neat runs list|compare`: what was trained in a runs folder, and how two runs differ."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from neat.cli.common import user_errors
from neat.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from neat.persistence.registry import RunRecord

__all__ = ["config_diff", "final_metrics", "runs"]

_MISSING = "<missing>"


@click.group()
def runs() -> None:
    """List the runs of a runs folder; compare two runs."""


@runs.command("list")
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("runs"),
    show_default=True,
    help="The folder whose registry.sqlite to read.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@user_errors
def runs_list(runs_dir: Path, as_json: bool) -> None:
    """Every run recorded in RUNS_DIR/registry.sqlite, newest first."""
    from neat.persistence.registry import REGISTRY_FILE, list_runs

    db = runs_dir / REGISTRY_FILE
    if not db.is_file():
        click.echo(f"no run registry at {db}: no runs recorded there yet", err=True)
    records = [_with_live_status(r) for r in list_runs(db)]
    if as_json:
        click.echo(json.dumps([asdict(r) for r in records], indent=2))
    elif records:
        _console().print(_runs_table(records))


def _with_live_status(record: RunRecord) -> RunRecord:
    """A run the registry still calls running, whose directory lock nobody holds, died
    without a word (SIGKILL, power loss): `unfinished`, and `--resume auto` continues it."""
    from dataclasses import replace

    from neat.files import lock_holder
    from neat.persistence.manifest import LOCK_FILE

    if record.status == "running" and lock_holder(Path(record.run_dir) / LOCK_FILE) is None:
        return replace(record, status="unfinished")
    return record


@runs.command("compare")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@user_errors
def runs_compare(run_a: Path, run_b: Path, as_json: bool) -> None:
    """Final metrics of RUN_A and RUN_B side by side, and the config keys that differ.
    Both are run directories; they need not be in a registry."""
    a, b = _config(run_a), _config(run_b)
    metrics = _metric_rows(final_metrics(run_a), final_metrics(run_b))
    diff = config_diff(a, b)
    if as_json:
        out = {"runs": [str(run_a), str(run_b)], "metrics": metrics, "config_diff": diff}
        click.echo(json.dumps(out, indent=2))
        return
    console = _console()
    console.print(_metrics_table(metrics, run_a, run_b))
    console.print(_diff_table(diff, run_a, run_b))


def _console() -> Console:
    """Rich on a terminal; wide when piped so no path or value is cut."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def _config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config.yaml, or one clear error for a folder that is no run."""
    import yaml

    from neat.persistence.manifest import CONFIG_FILE

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (it has no {CONFIG_FILE})")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc})") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} is not a config (not a mapping)")
    return loaded


def final_metrics(run_dir: Path) -> dict[str, Any]:
    """The last eval's metrics, the last train loss and best_val_loss from metrics.jsonl."""
    from neat.monitoring import read_metrics

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    out: dict[str, Any] = {}
    for record in read_metrics(path):
        event = record.get("event")
        if event == "eval":
            out.update({k: v for k, v in record.items() if k not in ("event", "step")})
            out["step"] = record.get("step")
        elif event == "train":
            out["loss"] = record.get("loss")
            out["step"] = record.get("step")
        elif event == "run_end" and record.get("best_val_loss") is not None:
            out["best_val_loss"] = record["best_val_loss"]
    return out


def _metric_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(a.keys() | b.keys()):
        va, vb = a.get(key), b.get(key)
        rows.append({"metric": key, "a": va, "b": vb, "diff": _difference(va, vb)})
    return rows


def _difference(a: Any, b: Any) -> float | None:
    """b - a when both are numbers (not booleans), else None."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return b - a
    return None


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """The dotted keys whose values differ (or exist in one config only), with both values."""
    from neat.evaluation.report.read import flatten

    flat_a, flat_b = flatten(a), flatten(b)
    keys = sorted(flat_a.keys() | flat_b.keys())
    return [
        {"key": k, "a": flat_a.get(k, _MISSING), "b": flat_b.get(k, _MISSING)}
        for k in keys
        if flat_a.get(k, _MISSING) != flat_b.get(k, _MISSING)
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}"
    return str(value)


def _runs_table(records: list[RunRecord]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table("name", "status", "step", "val_loss", "acc", "started", "commit", "run dir")
    for r in records:
        acc = next((r.metrics[k] for k in ("val_acc", "acc", "accuracy") if k in r.metrics), None)
        cells = [
            r.name,
            r.status,
            f"{r.step}/{r.max_steps}",
            _fmt(r.metrics.get("val_loss")),
            _fmt(acc),
            r.started_at.replace("T", " ")[:19],
            (r.git_commit or "-")[:8],
            r.run_dir,
        ]
        table.add_row(*map(Text, cells))
    return table


def _metrics_table(rows: list[dict[str, Any]], run_a: Path, run_b: Path) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table("metric", str(run_a), str(run_b), "diff (b - a)", title="final metrics")
    for row in rows:
        diff = row["diff"]
        shown = "-" if diff is None else ("+" if diff > 0 else "") + _fmt(diff)
        table.add_row(*map(Text, [row["metric"], _fmt(row["a"]), _fmt(row["b"]), shown]))
    return table


def _diff_table(rows: list[dict[str, Any]], run_a: Path, run_b: Path) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table("config key", str(run_a), str(run_b), title="config diff")
    for row in rows:
        table.add_row(*map(Text, [row["key"], json.dumps(row["a"]), json.dumps(row["b"])]))
    if not rows:
        table.add_row(Text("(identical configs)"), Text(""), Text(""))
    return table
