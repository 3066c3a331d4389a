"""What every `neat` command shares: user errors become one message and exit code 2, and
the options that name a config file."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from neat.errors import NeatError, TrainingDiverged, TrainingInterrupted

__all__ = [
    "EXIT_USAGE",
    "config_options",
    "db_option",
    "load_container",
    "optional_config_options",
    "user_errors",
]

if TYPE_CHECKING:
    from rich.console import Console

    from neat.di import ServiceContainer

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2


def user_errors(func: F) -> F:
    """One clear message and a non-zero exit for every error the user can cause."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NeatError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except TrainingInterrupted as exc:
            click.echo(f"Interrupted: {exc}", err=True)
            sys.exit(128 + exc.signum)
        except TrainingDiverged as exc:
            click.echo(f"Error: training diverged: {exc}", err=True)
            sys.exit(1)
        except NotImplementedError as exc:
            if "MPS" not in str(exc):
                raise
            click.echo(
                f"Error: an operation is missing on Apple MPS ({exc}); start neat with "
                "PYTORCH_ENABLE_MPS_FALLBACK=1 to run it on the CPU, or set "
                "training.device: cpu",
                err=True,
            )
            sys.exit(EXIT_USAGE)

    return wrapper  # type: ignore[return-value]


_SET_HELP = (
    "Override a config value by dotted key, e.g. --set training.max_steps=100; a number picks "
    "a list item (--set data.sources.0.path=corpus/). Values are YAML: numbers, booleans, "
    "lists, or a {...} subtree. Relative paths typed here resolve against the current folder "
    "(those in the config file against its folder). Repeatable."
)


def _config_options(required: bool, config_help: str) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        func = click.option(
            "--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP
        )(func)
        return click.option(
            "-c",
            "--config",
            "config_path",
            required=required,
            type=click.Path(path_type=Path, dir_okay=False),
            help=config_help,
        )(func)

    return decorate


# -c/--config (required) and --set: the options of every command that runs a config.
config_options = _config_options(True, "Experiment config file (.yaml, .json or .toml).")
# The same for commands that also work without a config (`neat index`).
optional_config_options = _config_options(
    False, "An experiment config whose settings to use (default: neat's defaults)."
)


def db_option(func: F) -> F:
    """--db: the index file, for every `neat index` command."""
    return click.option(
        "--db",
        type=click.Path(path_type=Path, dir_okay=False),
        help="The index file (default: indexing.db of CONFIG, else .neat/index.db).",
    )(func)


def load_container(
    config_path: Path,
    overrides: Sequence[str],
    *,
    run_dir: Path | None = None,
    resume_from: Path | None = None,
    console: Console | None = None,
) -> ServiceContainer:
    """The container of CONFIG with its --set overrides: where a command gets its parts."""
    from neat.config import load_config
    from neat.di import build_container

    config = load_config(config_path, list(overrides))
    return build_container(config, run_dir=run_dir, resume_from=resume_from, console=console)
