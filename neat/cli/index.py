"""`neat index ...`: build, search, inspect, check and watch the markdown document index."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from neat.cli.common import db_option, optional_config_options, user_errors
from neat.errors import ConfigError

if TYPE_CHECKING:
    from neat.config.indexing import IndexingConfig
    from neat.indexing.indexer import MarkdownIndexer

__all__ = ["index"]


def _indexing_config(
    config_path: Path | None,
    overrides: Sequence[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> IndexingConfig:
    """The `indexing` section of CONFIG (defaults without one), with the flags applied."""
    from neat.config import load_config
    from neat.config.indexing import IndexingConfig

    if config_path is not None:
        section = load_config(config_path, list(overrides)).indexing
    elif overrides:
        raise ConfigError("--set needs a config file: add -c CONFIG")
    else:
        section = IndexingConfig()
    changes: dict[str, Any] = {}
    if include:
        changes["include"] = list(include)
    if exclude:
        changes["exclude"] = list(exclude)
    return section.model_copy(update=changes)


def _open(config: IndexingConfig, db: Path | None, *, embed: bool = True) -> MarkdownIndexer:
    from neat.indexing.embedders import build_embedder
    from neat.indexing.indexer import MarkdownIndexer

    embedder = build_embedder(config.embedder) if embed else None
    return MarkdownIndexer(Path(db or config.db), config, embedder=embedder)


def _common(func: Any) -> Any:
    """--db, -c/--config and --set, shared by every index command."""
    return db_option(optional_config_options(func))


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _shown_path(path: str) -> str:
    """Relative to the working directory when under it, else as stored."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _build_summary(report: dict[str, Any]) -> str:
    skipped = report.get("skipped", {})
    skipped_count = sum(len(v) for v in skipped.values()) if isinstance(skipped, dict) else 0
    return (
        f"{report.get('files_seen', 0)} files: {report.get('added', 0)} added, "
        f"{report.get('updated', 0)} updated, {report.get('unchanged', 0)} unchanged, "
        f"{report.get('removed', 0)} removed, {skipped_count} skipped; "
        f"{report.get('chunks_added', 0)} chunks added, {report.get('chunks_removed', 0)} "
        f"removed, {report.get('embedded', 0)} embedded in {report.get('seconds', 0.0):.2f} s"
        + _token_limit_note(report)
    )


def _token_limit_note(report: dict[str, Any]) -> str:
    """Chunks embedded in pieces to fit the embedder's token limit, and pieces embedded
    truncated (said only when there are any: a bm25 index never has either)."""
    split, truncated = report.get("chunks_split", 0), report.get("chunks_truncated", 0)
    if not split and not truncated:
        return ""
    return (
        f"; {split} chunks over the embedder's token limit embedded in pieces, "
        f"{truncated} pieces embedded truncated"
    )


def _echo_notes(report: dict[str, Any]) -> None:
    for reason, paths in sorted(report.get("skipped", {}).items()):
        for path in paths:
            click.echo(f"skipped ({reason}): {_shown_path(str(path))}", err=True)
    for warning in report.get("warnings", []):
        click.echo(f"warning: {_shown_path(warning['path'])}: {warning['detail']}", err=True)


@click.group()
def index() -> None:
    """Index markdown documents into SQLite and search them (BM25, dense or hybrid)."""


@index.command("build")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--include", multiple=True, metavar="GLOB", help="File names to index (*.md).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Relative paths to skip.")
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON.")
@_common
@user_errors
def index_build(
    paths: tuple[Path, ...],
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    as_json: bool,
    db: Path | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Index PATH... (folders or files), or update the index: only changed files are read
    again, deleted ones are removed."""
    config = _indexing_config(config_path, overrides, include, exclude)
    roots = _roots(paths, config)
    with _open(config, db) as indexer, _build_progress() as progress:
        report = dict(indexer.build(roots, progress=progress))
    if as_json:
        _print_json(report)
        return
    _echo_notes(report)
    click.echo(_build_summary(report))


@contextmanager
def _build_progress() -> Iterator[Callable[[int, int], None] | None]:
    """A bar of files checked, with an ETA, on stderr when it is a terminal; without one
    (pipes, CI, tests) nothing at all, so no output waits on a terminal that is not there."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("indexing", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _roots(paths: Sequence[Path], config: IndexingConfig) -> list[Path]:
    roots = list(paths) or [Path(p) for p in config.paths]
    if not roots:
        raise ConfigError("nothing to index: name one or more PATHs, or set indexing.paths")
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise ConfigError(f"path(s) not found: {', '.join(missing)}")
    return roots


@index.command("search")
@click.argument("query")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--mode",
    type=click.Choice(["auto", "bm25", "dense", "hybrid"]),
    default=None,
    help="Default: indexing.mode (auto: hybrid with an embedder, else bm25).",
)
@click.option(
    "--no-rerank",
    "no_rerank",
    is_flag=True,
    help="Skip the cross-encoder of indexing.rerank: the mode's own ranking and scores.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@_common
@user_errors
def index_search(
    query: str,
    k: int,
    mode: str | None,
    no_rerank: bool,
    as_json: bool,
    db: Path | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Ranked hits for QUERY: path, heading path, lines, score and a snippet. Words in
    double quotes ('"borrow checker" rules') must appear together and in that order."""
    config = _indexing_config(config_path, overrides)
    _require_db(Path(db or config.db))
    with _open(config, db, embed=(mode or config.mode) != "bm25") as indexer:
        hits = indexer.search(query, k=k, mode=mode, rerank=not no_rerank)
    if as_json:
        _print_json(
            [
                {
                    "path": h.path,
                    "heading_path": list(h.heading_path),
                    "start_line": h.start_line,
                    "end_line": h.end_line,
                    "score": h.score,
                    "snippet": h.snippet,
                }
                for h in hits
            ]
        )
        return
    if not hits:
        click.echo("no hits")
    for rank, hit in enumerate(hits, start=1):
        where = f"{_shown_path(hit.path)}:{hit.start_line}-{hit.end_line}"
        heading = " > ".join(hit.heading_path)
        click.echo(f"{rank:>2}. {hit.score:8.3f}  {where}  {heading}")
        snippet = " ".join(hit.snippet.split())
        click.echo(f"    {snippet}")


def _require_db(db: Path) -> None:
    if not db.exists():
        raise ConfigError(f"no index at {db}; build one with: neat index build PATH --db {db}")


@index.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@_common
@user_errors
def index_stats(
    as_json: bool, db: Path | None, config_path: Path | None, overrides: tuple[str, ...]
) -> None:
    """Roots, files, chunks, bytes, vectors and the last build of the index."""
    config = _indexing_config(config_path, overrides)
    _require_db(Path(db or config.db))
    with _open(config, db, embed=False) as indexer:
        stats = dict(indexer.stats())
    if as_json:
        _print_json(stats)
        return
    for key, value in stats.items():
        click.echo(f"{key:>12}: {value}")


@index.command("check")
@click.option("--repair", is_flag=True, help="Rebuild what is inconsistent from the files.")
@click.option("--strict", is_flag=True, help="Exit 1 also when the index is only out of date.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@_common
@user_errors
def index_check(
    repair: bool,
    strict: bool,
    as_json: bool,
    db: Path | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Damage (SQLite and FTS5 integrity, chunks vs search rows and the manifest) and
    staleness (files new, changed or removed since the last build, missing vectors) of the
    index, reported apart; the first 20 of each kind are listed (--json: all).

    Exit status: 1 when damage remains (after --repair, when it could not be fixed); 0 when
    the index is only out of date (an interrupted build, edits since), which `neat index
    build` or --repair bring up to date; with --strict, 1 for that too.
    """
    from neat.indexing.integrity import is_damage

    config = _indexing_config(config_path, overrides)
    _require_db(Path(db or config.db))
    # The embedder even without --repair: its token limit is part of the chunker key, so
    # checking without it would take every file chunked to that limit for stale.
    with _open(config, db) as indexer:
        report = dict(indexer.check(repair=repair))
    remaining = list(report.get("remaining", []))
    damaged = [p for p in remaining if is_damage(p)]
    stale = [p for p in remaining if not is_damage(p)]
    if as_json:
        _print_json(report)
    else:
        _echo_capped("damaged", report.get("damaged", []))
        _echo_capped("stale", report.get("stale", []))
        _echo_capped("repaired", report.get("repaired", []))
        click.echo(_check_summary(damaged, stale))
    if damaged or (strict and stale):
        raise SystemExit(1)


_LISTED_PER_KIND = 20


def _echo_capped(label: str, items: Sequence[dict[str, str]]) -> None:
    """Each kind's first `_LISTED_PER_KIND` items, then how many more there are."""
    by_kind: dict[str, list[dict[str, str]]] = {}
    for item in items:
        by_kind.setdefault(item.get("kind", ""), []).append(item)
    for kind, group in by_kind.items():
        for item in group[:_LISTED_PER_KIND]:
            click.echo(f"{label}: {_describe(item)}")
        if len(group) > _LISTED_PER_KIND:
            click.echo(f"{label}: ... and {len(group) - _LISTED_PER_KIND} more {kind}")


def _check_summary(damaged: Sequence[dict[str, str]], stale: Sequence[dict[str, str]]) -> str:
    if damaged:
        return (
            f"index is damaged: {len(damaged)} problem(s)"
            + (f", and {len(stale)} out of date" if stale else "")
            + "; `neat index check --repair` rebuilds them from the files"
        )
    if stale:
        return (
            f"index is consistent, {len(stale)} item(s) out of date; `neat index build` "
            "(or `neat index check --repair`) updates it"
        )
    return "index is consistent and up to date"


def _describe(item: Any) -> str:
    if isinstance(item, dict):
        kind, path, detail = item.get("kind", ""), item.get("path", ""), item.get("detail", "")
        return " ".join(str(x) for x in (kind, path and _shown_path(str(path)), detail) if x)
    return str(item)


@index.command("watch")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--debounce-ms",
    default=500,
    show_default=True,
    type=click.IntRange(min=0),
    help="Wait this long after the last change before updating (editors save in bursts).",
)
@_common
@user_errors
def index_watch(
    paths: tuple[Path, ...],
    debounce_ms: int,
    db: Path | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Keep the index of PATH... current as files change; Ctrl-C stops."""
    from neat.indexing.watch import watch_and_index

    config = _indexing_config(config_path, overrides)
    roots = _roots(paths, config)
    with _open(config, db) as indexer:
        click.echo(_build_summary(dict(indexer.build(roots))))
        click.echo(f"watching {', '.join(str(r) for r in roots)} (Ctrl-C stops)", err=True)
        try:
            for report in watch_and_index(indexer, roots, debounce_ms=debounce_ms):
                if "error" in report:
                    click.echo(f"update failed: {report['error']}", err=True)
                    continue
                _echo_notes(report)
                click.echo(_build_summary(report))
        except KeyboardInterrupt:  # each file is one transaction: stopping mid-update is safe
            pass
    click.echo("stopped", err=True)
