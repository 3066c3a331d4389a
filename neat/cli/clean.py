"""`neat clean`: remove leftovers, partial checkpoints, caches and old runs."""

from __future__ import annotations

from pathlib import Path

import click

from neat.cli.common import user_errors


@click.command()
@click.argument("path", default=".", type=click.Path(path_type=Path, file_okay=False, exists=False))
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--caches", is_flag=True, help="Also remove token caches and cached tokenizers.")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The token cache to clean with --caches (default: $NEAT_CACHE_DIR or ~/.cache/neat).",
)
@click.option(
    "--runs-older-than",
    "older_than",
    type=click.FloatRange(min=0.0),
    metavar="DAYS",
    help="Also remove whole run directories (checkpoints, configs, metrics) untouched for DAYS.",
)
@user_errors
def clean(
    path: Path, dry_run: bool, caches: bool, cache_dir: Path | None, older_than: float | None
) -> None:
    """Remove leftovers under PATH: temporary files, partial checkpoints, __pycache__.

    Complete checkpoints, configs and metrics are kept unless --runs-older-than asks for
    whole runs. Symlinks are never followed out of PATH.
    """
    from neat.persistence.cleanup import apply_clean, format_bytes, plan_clean

    plan = plan_clean(path, caches=caches, cache_dir=cache_dir, runs_older_than_days=older_than)
    verb = "would remove" if dry_run else "removed"
    for removal in plan.removals:
        click.echo(f"{verb} {removal.path} ({format_bytes(removal.bytes)}, {removal.reason})")
    freed = plan.total_bytes if dry_run else apply_clean(plan)
    summary = "would free" if dry_run else "freed"
    click.echo(f"{len(plan.removals)} item(s); {summary} {format_bytes(freed)}")
