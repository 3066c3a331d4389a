"""The run directory: where a run's config, tokenizer, metrics, logs and checkpoints live."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from neat.config.loader import dump_config
from neat.config.schema import ExperimentConfig
from neat.interfaces import ITokenizer

CHECKPOINTS = "checkpoints"


def new_run_dir(name: str, root: Path | None = None) -> Path:
    """`runs/<name>-<timestamp>` under the current folder (never an existing one)."""
    root = root or Path.cwd() / "runs"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{_slug(name)}-{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{_slug(name)}-{stamp}-{suffix}"
    return candidate


def latest_run_dir(name: str, root: Path | None = None) -> Path | None:
    """The newest `runs/<name>-*` that holds a complete checkpoint (for `--resume auto`)."""
    root = root or Path.cwd() / "runs"
    if not root.is_dir():
        return None
    runs = [p for p in root.glob(f"{_slug(name)}-*") if has_checkpoint(p)]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def has_checkpoint(run_dir: Path) -> bool:
    """A cheap look (a `step_<N>/state.json` exists); loading verifies every file's hash."""
    folder = run_dir / CHECKPOINTS
    return folder.is_dir() and any(folder.glob("step_*/state.json"))


def write_run_files(
    run_dir: Path, config: ExperimentConfig, tokenizer: ITokenizer
) -> dict[str, Path]:
    """Write config.yaml and tokenizer.json; both are also copied into every checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.yaml"
    _atomic_write_text(config_path, dump_config(config))
    tokenizer_path = run_dir / "tokenizer.json"
    tokenizer.save(tokenizer_path)
    return {"config.yaml": config_path, "tokenizer.json": tokenizer_path}


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
