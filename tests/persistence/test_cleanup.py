"""`neat clean`'s planner and remover on real trees: debris goes, work and symlinks stay."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import neat.persistence.cleanup as cleanup
from neat.errors import NeatError
from neat.files import FileLock
from neat.persistence import CleanPlan, Removal, apply_clean, format_bytes, plan_clean
from neat.persistence.cleanup import (
    REASON_CACHE_ENTRY,
    REASON_PARTIAL_CHECKPOINT,
    REASON_PYCACHE,
    REASON_TMP,
    REASON_TOKENIZER_CACHE,
)

NOW = 1_800_000_000.0  # every test plans at this time; files get mtimes relative to it
DAY = 86400.0
KEY = "ab" * 32
OTHER_KEY = "cd" * 32


def _dead_pid() -> int:
    pid = 999_999
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


DEAD = _dead_pid()
LIVE = os.getpid()


def _file(path: Path, size: int, mtime: float = NOW - 3600) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    return size


def _text(path: Path, text: str, mtime: float = NOW - 3600) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))
    return len(text.encode())


def _link(path: Path, to: Path) -> int:
    path.symlink_to(to, target_is_directory=to.is_dir())
    return len(os.fsencode(str(to)))


def _run(run: Path, mtime: float = NOW - 3600) -> int:
    """A run with a complete checkpoint, config, metrics and log; returns its bytes."""
    state = json.dumps({"format_version": 1, "step": 10, "files": {}})
    return (
        _text(run / "config.yaml", "model: {}\n", mtime)
        + _text(run / "metrics.jsonl", '{"event": "train"}\n', mtime)
        + _text(run / "log.jsonl", '{"event": "start"}\n', mtime)
        + _text(run / "checkpoints" / "step_10" / "state.json", state, mtime)
        + _file(run / "checkpoints" / "step_10" / "model.safetensors", 100, mtime)
    )


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` (symlinks not followed) -> (file type bits, size)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            st = os.lstat(path)
            found[str(path.relative_to(root))] = (st.st_mode & 0o170000, st.st_size)
    return found


@dataclass
class Tree:
    base: Path
    project: Path
    run: Path
    cache: Path
    outside: Path
    expected: dict[Path, tuple[str, int]]  # what cleaning the project plans
    cached: dict[Path, tuple[str, int]]  # what caches=True adds


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    base = tmp_path.resolve()
    project, outside, cache = base / "project", base / "outside", base / "cache"
    _text(outside / "precious.txt", "keep me")
    _file(outside / "__pycache__" / "y.pyc", 10)
    _file(outside / f".tmp-z-{DEAD}" / "f", 10)
    _file(outside / "checkpoints" / "step_1" / "model.safetensors", 10)

    run = project / "runs" / "demo-20260101-000000"
    ckpts = run / "checkpoints"
    _run(run)
    _text(run / "tokenizer.json", "{}")
    expected = {
        run / ".tmp-a1b2c3.yaml": (REASON_TMP, _text(run / ".tmp-a1b2c3.yaml", "half")),
        ckpts / "step_20": (
            REASON_PARTIAL_CHECKPOINT,
            _file(ckpts / "step_20" / "model.safetensors", 300),
        ),
        ckpts / "step_25": (
            REASON_PARTIAL_CHECKPOINT,
            _file(ckpts / "step_25" / "model.safetensors", 50)
            + _text(ckpts / "step_25" / "state.json", '{"step": 2'),
        ),
        ckpts / f".tmp-step_30-{DEAD}": (
            REASON_TMP,
            _file(ckpts / f".tmp-step_30-{DEAD}" / "model.safetensors", 200),
        ),
        run / f".tmp-link-{DEAD}": (REASON_TMP, _link(run / f".tmp-link-{DEAD}", outside)),
        run / f".tokenizer.json.{DEAD}.tmp": (
            REASON_TMP,
            _text(run / f".tokenizer.json.{DEAD}.tmp", "{"),
        ),
        project / "src" / "pkg" / "__pycache__": (
            REASON_PYCACHE,
            _file(project / "src" / "pkg" / "__pycache__" / "mod.cpython-311.pyc", 64)
            + _file(project / "src" / "pkg" / "__pycache__" / "util.cpython-311.pyc", 36),
        ),
    }
    _file(ckpts / f".tmp-step_40-{LIVE}" / "model.safetensors", 400)  # a save in progress
    _text(run / f".config.yaml.{LIVE}.tmp", "model")  # a tokenizer-style write in progress
    _link(run / "escape", outside)  # a symlinked dir full of "debris": never followed
    _text(project / "src" / "pkg" / "mod.py", "x = 1\n")
    _text(project / ".venv" / "pyvenv.cfg", "home = /usr\n")
    _file(project / ".venv" / "lib" / "__pycache__" / "site.pyc", 10)
    _file(project / ".git" / "hooks" / "__pycache__" / "hook.pyc", 10)

    cached = {
        cache / KEY: (
            REASON_CACHE_ENTRY,
            _file(cache / KEY / "tokens.bin", 1000) + _text(cache / KEY / "meta.json", "{}"),
        ),
        cache / OTHER_KEY: (REASON_CACHE_ENTRY, _text(cache / OTHER_KEY / "meta.json", "{")),
        cache / "vocab-char-0123456789abcdef.json": (
            REASON_TOKENIZER_CACHE,
            _text(cache / "vocab-char-0123456789abcdef.json", '{"kind": "char"}'),
        ),
        cache / "bpe-0123abcd.json": (
            REASON_TOKENIZER_CACHE,
            _text(cache / "bpe-0123abcd.json", '{"kind": "bpe"}'),
        ),
        cache / f".tmp-{KEY}-{DEAD}": (
            REASON_TMP,
            _file(cache / f".tmp-{KEY}-{DEAD}" / "tokens.bin", 70),
        ),
        cache / f".bpe-0123abcd.json.{DEAD}.tmp": (
            REASON_TMP,
            _text(cache / f".bpe-0123abcd.json.{DEAD}.tmp", "{"),
        ),
    }
    _file(cache / f".tmp-{OTHER_KEY}-{LIVE}" / "tokens.bin", 80)  # a build in progress
    _text(cache / f".vocab-char-x.json.{LIVE}.tmp", "{")  # a tokenizer being saved
    _text(cache / "notes.txt", "not a cache entry")
    _file(cache / "other" / "data.bin", 5)
    _link(cache / "linked", outside)
    return Tree(base, project, run, cache, outside, expected, cached)


def _listing(plan: CleanPlan) -> dict[Path, tuple[str, int]]:
    return {r.path: (r.reason, r.bytes) for r in plan.removals}


def test_plan_lists_exactly_the_leftovers(tree: Tree) -> None:
    plan = plan_clean(tree.project, now=NOW)

    assert _listing(plan) == tree.expected
    assert [r.path for r in plan.removals] == sorted(tree.expected)
    assert plan.total_bytes == sum(size for _, size in tree.expected.values())


def test_planning_deletes_nothing(tree: Tree) -> None:
    before = _snapshot(tree.base)

    plan = plan_clean(
        tree.project, caches=True, cache_dir=tree.cache, runs_older_than_days=0.0, now=NOW
    )

    assert plan.removals
    assert _snapshot(tree.base) == before


def test_apply_deletes_exactly_the_plan(tree: Tree) -> None:
    before = _snapshot(tree.base)
    plan = plan_clean(tree.project, now=NOW)

    freed = apply_clean(plan)

    assert freed == plan.total_bytes > 0
    gone = [str(p.relative_to(tree.base)) for p in tree.expected]
    survivors = {
        path: info
        for path, info in before.items()
        if not any(path == g or path.startswith(g + os.sep) for g in gone)
    }
    assert _snapshot(tree.base) == survivors
    ckpt = tree.run / "checkpoints" / "step_10"
    for kept in ("config.yaml", "metrics.jsonl", "log.jsonl", "tokenizer.json"):
        assert (tree.run / kept).is_file()
    assert (ckpt / "state.json").is_file() and (ckpt / "model.safetensors").is_file()
    assert (tree.run / "escape").is_symlink()
    assert (tree.outside / "precious.txt").read_text() == "keep me"
    assert plan_clean(tree.project, now=NOW).removals == []


def test_caches_removes_cache_entries_only_when_asked(tree: Tree) -> None:
    plan = plan_clean(tree.project, caches=True, cache_dir=tree.cache, now=NOW)
    assert _listing(plan) == tree.expected | tree.cached

    apply_clean(plan)

    assert sorted(p.name for p in tree.cache.iterdir()) == sorted(
        [
            f".tmp-{OTHER_KEY}-{LIVE}",
            f".vocab-char-x.json.{LIVE}.tmp",
            "linked",
            "notes.txt",
            "other",
        ]
    )
    assert (tree.outside / "precious.txt").is_file()


def test_caches_default_to_neat_cache_dir(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEAT_CACHE_DIR", str(tree.cache))

    plan = plan_clean(tree.project, caches=True, now=NOW)

    assert _listing(plan) == tree.expected | tree.cached


def test_missing_cache_dir_plans_nothing(tree: Tree) -> None:
    plan = plan_clean(tree.project, caches=True, cache_dir=tree.base / "nope", now=NOW)
    assert _listing(plan) == tree.expected


def test_runs_older_than_days_removes_old_runs_only(tmp_path: Path) -> None:
    runs = tmp_path.resolve() / "runs"
    old_bytes = _run(runs / "old-run", mtime=NOW - 40 * DAY)
    old_partial = runs / "old-run" / "checkpoints" / "step_20" / "model.safetensors"
    old_bytes += _file(old_partial, 7, NOW - 41 * DAY)
    _run(runs / "new-run", mtime=NOW - 2 * DAY)
    _file(runs / "new-run" / "checkpoints" / "step_20" / "model.safetensors", 9)
    _run(runs / "busy-run", mtime=NOW - 40 * DAY)  # old files, but a save is running
    _file(runs / "busy-run" / "checkpoints" / f".tmp-step_20-{LIVE}" / "x", 3, NOW - 40 * DAY)

    assert [r.path.name for r in plan_clean(runs, now=NOW).removals] == ["step_20", "step_20"]

    plan = plan_clean(runs, runs_older_than_days=30, now=NOW)

    assert _listing(plan) == {
        runs / "old-run": ("run unchanged for 40.0 days (older than 30 days)", old_bytes),
        runs / "new-run" / "checkpoints" / "step_20": (REASON_PARTIAL_CHECKPOINT, 9),
    }
    assert apply_clean(plan) == old_bytes + 9
    assert not (runs / "old-run").exists()
    assert (runs / "new-run" / "checkpoints" / "step_10" / "state.json").is_file()
    assert (runs / "busy-run" / "config.yaml").is_file()


def test_nested_removals_are_listed_and_counted_once(tmp_path: Path) -> None:
    run = tmp_path.resolve() / "runs" / "old-run"
    size = _run(run, mtime=NOW - 40 * DAY)
    size += _file(run / "cache" / KEY / "tokens.bin", 11, NOW - 40 * DAY)  # a cache in the run

    plan = plan_clean(
        run.parent, caches=True, cache_dir=run / "cache", runs_older_than_days=30, now=NOW
    )

    assert [(r.path, r.bytes) for r in plan.removals] == [(run, size)]


def test_a_single_old_run_as_target(tmp_path: Path) -> None:
    run = tmp_path.resolve() / "solo"
    size = _run(run, mtime=NOW - 3 * DAY)

    assert plan_clean(run, runs_older_than_days=1.5, now=NOW).removals == [
        Removal(run, size, "run unchanged for 3.0 days (older than 1.5 days)")
    ]
    assert plan_clean(run, runs_older_than_days=5, now=NOW).removals == []


def test_recent_pidless_temp_file_is_kept(tmp_path: Path) -> None:
    temp = tmp_path.resolve() / ".tmp-k3j2h1.yaml"  # an atomic write may be mid-way
    _text(temp, "partial", mtime=NOW - 5)

    assert plan_clean(tmp_path, now=NOW).removals == []
    assert plan_clean(tmp_path, now=NOW + 120).removals == [Removal(temp, 7, REASON_TMP)]


def test_aside_copy_of_a_replaced_checkpoint(tmp_path: Path) -> None:
    ckpts = tmp_path.resolve() / "checkpoints"
    aside = ckpts / f".tmp-replaced-step_10-{DEAD}"
    _text(aside / "state.json", "{}")
    _file(aside / "model.safetensors", 8)

    # The only copy of step_10 (a crash between the two renames): the checkpointer restores it.
    assert plan_clean(ckpts, now=NOW).removals == []

    _text(ckpts / "step_10" / "state.json", "{}")
    assert plan_clean(ckpts, now=NOW).removals == [Removal(aside, 10, REASON_TMP)]


def test_target_given_through_a_symlink_is_resolved(tree: Tree) -> None:
    alias = tree.base / "alias"
    alias.symlink_to(tree.project, target_is_directory=True)

    assert _listing(plan_clean(alias, now=NOW)) == tree.expected


def test_apply_skips_what_is_gone_or_fails(
    tree: Tree, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plan = plan_clean(tree.project, now=NOW)
    pycache = tree.project / "src" / "pkg" / "__pycache__"
    partial = tree.run / "checkpoints" / "step_20"
    shutil.rmtree(pycache)
    real_rmtree = shutil.rmtree

    def failing_rmtree(path: Path) -> None:
        if Path(path) == partial:
            raise PermissionError(13, "Permission denied", str(path))
        real_rmtree(path)

    monkeypatch.setattr(cleanup.shutil, "rmtree", failing_rmtree)

    freed = apply_clean(plan)

    skipped = tree.expected[pycache][1] + tree.expected[partial][1]
    assert freed == plan.total_bytes - skipped
    assert partial.is_dir()
    assert [r.path for r in plan_clean(tree.project, now=NOW).removals] == [partial]


def test_apply_never_follows_a_symlink_swapped_in_after_planning(tree: Tree) -> None:
    plan = plan_clean(tree.project, now=NOW)
    decoy = tree.base / "decoy"
    _file(decoy / "pkg" / "__pycache__" / "precious.pyc", 4)
    (tree.project / "src").rename(tree.base / "src-moved")
    (tree.project / "src").symlink_to(decoy, target_is_directory=True)

    apply_clean(plan)

    assert (decoy / "pkg" / "__pycache__" / "precious.pyc").is_file()


def test_bad_targets_raise_neat_error(tmp_path: Path) -> None:
    with pytest.raises(NeatError, match=r"nothing to clean: .* does not exist"):
        plan_clean(tmp_path / "missing")
    _text(tmp_path / "file.txt", "x")
    with pytest.raises(NeatError, match="is not a directory"):
        plan_clean(tmp_path / "file.txt")
    with pytest.raises(NeatError, match="0 days or more"):
        plan_clean(tmp_path, runs_older_than_days=-1)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (int(1.5 * 1024**2), "1.5 MiB"),
        (1024**2 - 1, "1.0 MiB"),
        (3 * 1024**3 + 1024**3 // 4 + 1, "3.3 GiB"),
        (5 * 1024**4, "5.0 TiB"),
        (2 * 1024**5, "2.0 PiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_a_run_whose_lock_is_held_is_never_removed(tmp_path: Path) -> None:
    """A training run holds `<run>/.lock` while it trains; its files may all be old (a long
    step), yet --runs-older-than must not delete the run under it, nor its lock file."""
    runs = tmp_path.resolve() / "runs"
    _run(runs / "training", mtime=NOW - 40 * DAY)
    _run(runs / "finished", mtime=NOW - 40 * DAY)
    lock = FileLock(runs / "training" / ".lock")
    lock.acquire()
    try:
        os.utime(runs / "training" / ".lock", (NOW - 40 * DAY, NOW - 40 * DAY))
        plan = plan_clean(runs, runs_older_than_days=30, now=NOW)
        assert [r.path for r in plan.removals] == [runs / "finished"]
        apply_clean(plan)
        assert (runs / "training" / ".lock").is_file()
        assert (runs / "training" / "config.yaml").is_file()
    finally:
        lock.release()
    # once the run ended, the same run is just old
    assert [r.path for r in plan_clean(runs, runs_older_than_days=30, now=NOW).removals] == [
        runs / "training"
    ]
