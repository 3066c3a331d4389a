"""`neat config show|validate` and `neat init`: look at and write config files."""

from __future__ import annotations

from pathlib import Path

import click

from neat.cli.common import config_options, user_errors


@click.group()
def config() -> None:
    """Inspect and check config files."""


@config.command("show")
@config_options
@user_errors
def config_show(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Print the fully resolved config (defaults + file + --set) as YAML."""
    from neat.config import dump_config, load_config

    click.echo(dump_config(load_config(config_path, overrides)), nl=False)


@config.command("validate")
@config_options
@user_errors
def config_validate(config_path: Path, overrides: tuple[str, ...]) -> None:
    """Check a config file; exit 0 when valid, 2 with the problems otherwise."""
    from neat.config import load_config

    loaded = load_config(config_path, overrides)
    sources = ", ".join(source.type for source in loaded.data.sources)
    click.echo(f"{config_path}: valid (model {loaded.model.type}, data {sources})")


@click.command()
@click.argument("directory", default=".", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing neat.yaml.")
@user_errors
def init(directory: Path, force: bool) -> None:
    """Write a commented example config, DIRECTORY/neat.yaml."""
    from neat.config.example import write_example_config

    path = write_example_config(directory, force=force)
    click.echo(f"wrote {path}; point data.path at your corpus, then: neat train -c {path}")
