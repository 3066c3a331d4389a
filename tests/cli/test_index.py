"""`neat index build|search|stats|check|watch` through the real command line."""

from __future__ import annotations

import json
import os
import pty
import re
import resource
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from neat.cli import cli

RUST_BOOK = Path(__file__).resolve().parents[1] / "data" / "rust-book"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    shutil.copytree(RUST_BOOK, folder, ignore=shutil.ignore_patterns("LICENSE*"))
    return folder


def test_build_search_stats_and_rebuild(docs: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "index.db")
    files = sorted(p.name for p in docs.glob("*.md"))
    code, out, _ = run("index", "build", str(docs), "--db", db)
    assert code == 0, out
    assert f"{len(files)} files: {len(files)} added" in out

    code, out, _ = run("index", "build", str(docs), "--db", db, "--json")
    report = json.loads(out)
    assert (report["added"], report["updated"], report["unchanged"]) == (0, 0, len(files))
    assert report["chunks_added"] == 0

    code, out, _ = run("index", "search", "ownership rules", "--db", db, "-k", "3", "--json")
    hits = json.loads(out)
    assert code == 0 and 1 <= len(hits) <= 3
    assert {"path", "heading_path", "start_line", "end_line", "score", "snippet"} <= set(hits[0])
    assert hits[0]["score"] >= hits[-1]["score"]
    assert Path(hits[0]["path"]).name in files
    lines = Path(hits[0]["path"]).read_text(encoding="utf-8").splitlines()
    assert hits[0]["start_line"] <= hits[0]["end_line"] <= len(lines)

    code, out, _ = run("index", "search", "ownership rules", "--db", db, "-k", "2")
    assert code == 0 and out.startswith(" 1. ") and " 2. " in out
    assert str(docs) in out  # outside the working directory: the full path

    code, out, _ = run("index", "stats", "--db", db, "--json")
    stats = json.loads(out)
    assert code == 0 and stats["files"] == len(files) and stats["chunks"] > len(files)


def test_check_finds_an_edited_file_and_repair_fixes_it(docs: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "index.db")
    assert run("index", "build", str(docs), "--db", db)[0] == 0
    code, out, _ = run("index", "check", "--db", db)
    assert code == 0 and "index is consistent" in out

    target = sorted(docs.glob("*.md"))[0]
    target.write_text("# Rewritten\n\nA new first chapter about lifetimes.\n", encoding="utf-8")
    code, out, _ = run("index", "check", "--db", db)  # out of date is not damage
    assert code == 0 and f"stale: file_changed {target}" in out
    assert "index is consistent, 1 item(s) out of date" in out
    assert run("index", "check", "--db", db, "--strict")[0] == 1

    code, out, _ = run("index", "check", "--db", db, "--repair")
    assert code == 0, out
    code, out, _ = run("index", "search", "Rewritten lifetimes", "--db", db, "--json")
    assert Path(json.loads(out)[0]["path"]).name == target.name


def test_user_errors_exit_2_with_one_message(docs: Path, tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    code, _, err = run("index", "search", "anything", "--db", str(db))
    assert code == 2 and f"no index at {db}" in err and "neat index build" in err
    assert not db.exists()

    code, _, err = run("index", "build", str(tmp_path / "nope"), "--db", str(db))
    assert code == 2 and "not found" in err and "nope" in err

    code, _, err = run("index", "build", "--db", str(db))
    assert code == 2 and "indexing.paths" in err

    assert run("index", "build", str(docs), "--db", str(db))[0] == 0
    code, _, err = run("index", "search", "ownership", "--db", str(db), "--mode", "dense")
    assert code == 2 and "indexing.embedder" in err


def test_config_section_and_include_exclude(docs: Path, tmp_path: Path) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(
        "data: {type: text, path: corpus.txt}\n"
        "indexing: {db: idx/index.db, paths: [docs], exclude: ['SUMMARY.md']}\n",
        encoding="utf-8",
    )
    code, out, _ = run("index", "build", "-c", str(config), "--json")
    assert code == 0, out
    assert (tmp_path / "idx" / "index.db").exists()
    names = {p.name for p in docs.glob("*.md")}
    assert json.loads(out)["added"] == len(names - {"SUMMARY.md"})


def test_watch_picks_up_a_new_file_and_stops_on_ctrl_c(docs: Path, tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "neat", "index", "watch", str(docs), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the initial build
        assert "added" in first, first
        time.sleep(0.5)
        (docs / "fresh.md").write_text("# Fresh\n\nWatched words: quokka.\n", encoding="utf-8")
        update = proc.stdout.readline()
        assert "1 added" in update, update
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None and "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    code, out, _ = run("index", "search", "quokka", "--db", str(db), "--json")
    assert code == 0
    assert Path(json.loads(out)[0]["path"]).name == "fresh.md"


def billion_laughs() -> str:
    """387 bytes of YAML whose aliases, expanded, are 9**9 strings (gigabytes once stored)."""
    lines = [
        "---",
        "title: Laughs",
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "\n".join([*lines, "---", "# Laughs", "", "Words after the bomb: wombat.", ""])


def _one_gib_of_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


def test_an_alias_bomb_is_indexed_without_its_front_matter_in_bounded_memory(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bomb.md").write_text(billion_laughs(), encoding="utf-8")
    (docs / "plain.md").write_text("---\ntitle: Plain\n---\n# Plain\n\nKoala.\n")
    db = tmp_path / "index.db"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "neat", "index", "build", str(docs), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_one_gib_of_address_space,  # the unbounded expansion needs gigabytes
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.perf_counter() - started < 20
    assert "2 files: 2 added" in proc.stdout
    assert f"warning: {docs / 'bomb.md'}: front matter ignored: its aliases expand" in proc.stderr
    assert "plain.md" not in proc.stderr
    code, out, _ = run("index", "search", "wombat", "--db", str(db), "--json")
    assert code == 0 and Path(json.loads(out)[0]["path"]).name == "bomb.md"


def test_every_command_refuses_another_applications_database_untouched(
    docs: Path, tmp_path: Path
) -> None:
    db = tmp_path / "app.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    for args in (
        ["build", str(docs)],
        ["search", "ownership"],
        ["stats"],
        ["check"],
        ["check", "--repair"],
    ):
        code, out, err = run("index", *args, "--db", str(db))
        assert code == 2, (args, out, err)
        assert f"Error: {db} is not a neat index (it holds other tables: notes)" in err, args
        assert "--db" in err and "delete" not in err and "Traceback" not in err
        assert db.read_bytes() == before, args
        assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite", "docs"], args


def test_check_tells_staleness_from_damage_and_caps_the_list(docs: Path, tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    assert run("index", "build", str(docs), "--db", str(db))[0] == 0
    for i in range(25):  # as after an interrupted build: files the manifest does not list yet
        (docs / f"new{i:02d}.md").write_text(f"# New {i}\n\nText {i}.\n", encoding="utf-8")
    code, out, _ = run("index", "check", "--db", str(db))
    assert code == 0, out
    assert out.count("stale: file_new ") == 20 and "stale: ... and 5 more file_new" in out
    assert "damaged" not in out
    code, out, _ = run("index", "check", "--db", str(db), "--json")
    report = json.loads(out)
    assert code == 0 and len(report["stale"]) == 25 and report["damaged"] == []
    assert report["consistent"] and not report["ok"]
    assert run("index", "check", "--db", str(db), "--strict")[0] == 1

    conn = sqlite3.connect(db)  # real damage: search rows gone behind the index's back
    conn.execute("DELETE FROM chunks_fts WHERE rowid IN (SELECT MIN(id) FROM chunks)")
    conn.commit()
    conn.close()
    code, out, _ = run("index", "check", "--db", str(db))
    assert code == 1 and "damaged: fts_mismatch " in out and "index is damaged: 1 problem" in out
    code, out, _ = run("index", "check", "--db", str(db), "--repair")
    assert code == 0 and "index is consistent and up to date" in out, out


def test_build_shows_a_progress_bar_on_a_terminal_and_nothing_without_one(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(400):
        (docs / f"n{i:03d}.md").write_text(f"# Note {i}\n\nWords {i}.\n", encoding="utf-8")
    code, out, err = run("index", "build", str(docs), "--db", str(tmp_path / "a.db"))
    assert code == 0 and "400 files: 400 added" in out
    assert err == ""  # no terminal: no bar, nothing else

    main, child = pty.openpty()  # a real terminal for stderr
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "neat", "index", "build", str(docs), "--db", str(tmp_path / "b.db")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=child,
        env=env,
    )
    os.close(child)
    drawn = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child side closed
                break
            if not chunk:
                break
            drawn += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    assert proc.wait(timeout=30) == 0
    assert proc.stdout is not None and "400 files: 400 added" in proc.stdout.read().decode()
    screen = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", drawn).decode("utf-8", "replace")
    assert "indexing" in screen and "/400 files" in screen, screen[-500:]
