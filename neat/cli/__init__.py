"""The `neat` command line: one module per command group; each parses, loads the config,
asks the container (or a library function) for its parts, and turns user errors into exit 2."""

from __future__ import annotations

import click
from rich.console import Console

from neat import __version__
from neat.cli.ablate import ablate
from neat.cli.adapt import adapt
from neat.cli.baseline import baseline
from neat.cli.blt import blt
from neat.cli.checkpoints import checkpoints
from neat.cli.clean import clean
from neat.cli.config import config, init
from neat.cli.data import data
from neat.cli.export import export
from neat.cli.index import index
from neat.cli.index_embedder import train_embedder
from neat.cli.infer import evaluate, generate
from neat.cli.lr_find import lr_find
from neat.cli.quick_test import quick_test
from neat.cli.report import report
from neat.cli.runs import runs
from neat.cli.sweep import sweep
from neat.cli.train import bench, train
from neat.cli.verify import verify_format
from neat.cli.vq import vq

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, prog_name="neat")
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Minimum level of library log lines on the console. Progress, evaluations and "
    "checkpoints always show; INFO adds detailed events (cache hits, checkpoint retention, "
    "...), which a run's log.jsonl holds whatever this level.",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """neat trains language models from one config file.

    \b
    Start here:
      neat init my-exp                 write a commented example config
      neat train -c my-exp/neat.yaml   train; outputs go to runs/<name>-<time>/
      neat eval -c CONFIG --checkpoint runs/<run>
      neat generate --checkpoint runs/<run> --prompt "ROMEO:"
    """
    from neat.monitoring.logs import configure_logging

    # emoji=False: neat prints no emoji codes, and rich would otherwise rewrite ":name:" in
    # paths and sample text and load its 0.6 MB emoji table on the first print (issue 19).
    console = Console(stderr=True, emoji=False)
    ctx.obj = {"console": console}
    shown = log_level.upper()
    configure_logging(
        console=console, level="DEBUG" if shown == "DEBUG" else "INFO", console_level=shown
    )
    if ctx.invoked_subcommand is None:  # bare `neat`: a menu on a terminal, else the help
        from neat.cli.menu import run_menu

        run_menu(ctx)


for _command in (
    train,
    evaluate,
    generate,
    export,
    bench,
    config,
    init,
    data,
    clean,
    index,
    blt,
    checkpoints,
    adapt,
    ablate,
    vq,
    baseline,
    report,
    sweep,
    runs,
    verify_format,
    lr_find,
    quick_test,
):
    cli.add_command(_command)
index.add_command(train_embedder)


def main() -> None:
    cli(prog_name="neat")
