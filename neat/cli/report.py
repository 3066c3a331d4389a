"""`neat report`: an HTML page of runs, ablations and sweeps, their plots as PNGs beside it."""

from __future__ import annotations

from pathlib import Path

import click

from neat.cli.common import user_errors

__all__ = ["report"]


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=True))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file; its plots go to <stem>_plots/ beside it.",
)
@user_errors
def report(paths: tuple[Path, ...], out: Path) -> None:
    """Report RUN_OR_ABLATION_OR_SWEEP [MORE ...] as one self-contained HTML page.

    A run directory (metrics.jsonl) shows its loss, lr, throughput and eval curves, final
    values, checkpoints and resolved config; several runs are also overlaid with their config
    differences; an ablation directory (summary.json, ablation.jsonl) shows a bar chart per
    main metric with 95% intervals and its summary table; a sweep directory (sweep.json)
    shows the score of every trial, the score against each searched key, the trials' loss
    curves and a table of the trials. Needs matplotlib (neat[plots]).
    """
    from neat.evaluation.report import build_report

    written = build_report(list(paths), out)
    click.echo(f"report: {written.html}")
    click.echo(
        f"plots: {len(written.plots)} PNG files in {written.html.parent / (out.stem + '_plots')}"
    )
