"""The run registry: one SQLite row per run directory, in `<runs folder>/registry.sqlite`.

Several `neat train` processes may write the same file at once, so every operation opens
its own connection, writes one short autocommit statement and closes it again: nothing is
shared across processes or threads, WAL lets readers go on while one writes, and a busy
timeout makes a writer wait for another instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neat.errors import NeatError

__all__ = [
    "REGISTRY_FILE",
    "SCHEMA_VERSION",
    "RegistryError",
    "RunRecord",
    "list_runs",
    "record_end",
    "record_progress",
    "record_start",
    "registry_path",
    "utc_now",
]

REGISTRY_FILE = "registry.sqlite"
SCHEMA_VERSION = 1  # PRAGMA user_version of a registry this code writes
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_dir TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    config_hash TEXT NOT NULL,
    git_commit TEXT,
    status TEXT NOT NULL,
    step INTEGER NOT NULL,
    max_steps INTEGER NOT NULL,
    num_params INTEGER NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}'
)
"""

_COLUMNS = (
    "run_dir",
    "name",
    "started_at",
    "config_hash",
    "status",
    "step",
    "max_steps",
    "num_params",
    "ended_at",
    "git_commit",
    "metrics",
)

# A resumed run keeps its first start time and its metrics until it evaluates again.
_UPSERT = """
INSERT INTO runs (run_dir, name, started_at, ended_at, config_hash, git_commit, status,
                  step, max_steps, num_params, metrics)
VALUES (:run_dir, :name, :started_at, NULL, :config_hash, :git_commit, 'running',
        :step, :max_steps, :num_params, :metrics)
ON CONFLICT (run_dir) DO UPDATE SET
    name = excluded.name, ended_at = NULL, config_hash = excluded.config_hash,
    git_commit = excluded.git_commit, status = 'running', step = excluded.step,
    max_steps = excluded.max_steps, num_params = excluded.num_params
"""


class RegistryError(NeatError):
    """The registry file belongs to a newer neat (a schema this version cannot read)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as the registry knows it; `metrics` holds the last eval's and train's values."""

    run_dir: str
    name: str
    started_at: str
    config_hash: str
    status: str
    step: int
    max_steps: int
    num_params: int
    ended_at: str | None = None
    git_commit: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def utc_now() -> str:
    """An ISO 8601 UTC time; such strings sort as the times they name."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def registry_path(run_dir: Path) -> Path:
    """The registry of a run: `registry.sqlite` in the folder holding the run directory."""
    return run_dir.resolve().parent / REGISTRY_FILE


def record_start(db: Path, row: RunRecord) -> None:
    """Insert the run as running, or mark an existing row (a resume) running again."""
    values = {
        "run_dir": row.run_dir,
        "name": row.name,
        "started_at": row.started_at,
        "config_hash": row.config_hash,
        "git_commit": row.git_commit,
        "step": row.step,
        "max_steps": row.max_steps,
        "num_params": row.num_params,
        "metrics": json.dumps(row.metrics),
    }
    with _connect(db) as conn:
        conn.execute(_UPSERT, values)


def record_progress(db: Path, run_dir: str, step: int, metrics: Mapping[str, Any]) -> None:
    """The step reached and the metrics of the latest evaluation."""
    with _connect(db) as conn:
        conn.execute(
            "UPDATE runs SET step = ?, metrics = ? WHERE run_dir = ?",
            (step, json.dumps(dict(metrics)), run_dir),
        )


def record_end(
    db: Path,
    run_dir: str,
    status: str,
    metrics: Mapping[str, Any],
    *,
    step: int | None = None,
    ended_at: str | None = None,
) -> None:
    """How the run ended (completed, interrupted or failed), when, and its final metrics."""
    ended_at = ended_at or utc_now()
    with _connect(db) as conn:
        conn.execute(
            "UPDATE runs SET status = ?, ended_at = ?, metrics = ?, step = COALESCE(?, step) "
            "WHERE run_dir = ?",
            (status, ended_at, json.dumps(dict(metrics)), step, run_dir),
        )


def list_runs(db: Path) -> list[RunRecord]:
    """Every recorded run, newest start first; an absent registry has none."""
    if not db.is_file():
        return []
    with _connect(db) as conn:
        rows = conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM runs ORDER BY started_at DESC, rowid DESC"
        ).fetchall()
    return [_record(row) for row in rows]


def _record(row: tuple[Any, ...]) -> RunRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    try:
        metrics = json.loads(values.pop("metrics"))
    except (TypeError, json.JSONDecodeError):
        metrics = {}
    return RunRecord(**values, metrics=metrics if isinstance(metrics, dict) else {})


@contextlib.contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection of its own for one operation, in autocommit mode, closed afterwards."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        _ensure_schema(conn, db)
        yield conn
    finally:
        conn.close()


def _ensure_schema(conn: sqlite3.Connection, db: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RegistryError(
            f"run registry {db} has schema version {version}; this neat reads up to "
            f"{SCHEMA_VERSION}: upgrade neat"
        )
    if version < SCHEMA_VERSION:
        conn.execute(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
