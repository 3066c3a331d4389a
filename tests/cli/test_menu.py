"""Bare `neat`: the help without a terminal (never waiting), a working menu on one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from neat.cli.menu import config_candidates

PROMPT = "Choose > "


def test_without_a_terminal_it_prints_the_help_and_exits_0() -> None:
    bare = subprocess.run(
        [sys.executable, "-m", "neat"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert bare.returncode == 0, bare.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "neat", "--help"], capture_output=True, timeout=60, text=True
    )
    assert helped.returncode == 0
    assert bare.stdout == helped.stdout
    assert "Usage: neat" in bare.stdout and "quick-test" in bare.stdout


def _spawn(cwd: Path, tmp_path: Path) -> pexpect.spawn:
    env = dict(os.environ, NEAT_CACHE_DIR=str(tmp_path / "cache"), COLUMNS="120")
    return pexpect.spawn(
        sys.executable, ["-m", "neat"], cwd=cwd, env=env, encoding="utf-8", timeout=120
    )


def test_the_menu_runs_a_quick_test_shows_runs_and_quits(tiny_config: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_config.read_text().replace("seed: 7", "sead: 7"), encoding="utf-8")
    child = _spawn(tmp_path, tmp_path)
    try:
        child.expect("what would you like to do")
        child.expect(PROMPT)
        child.sendline("2")  # quick test; the folder's configs are offered by number
        child.expect(r"1  bad\.yaml")
        child.expect(r"2  tiny\.yaml")
        child.sendline("bad.yaml")  # a failing command: its message, then the menu again
        child.expect("training.sead")
        child.expect("exited with status 2")
        child.expect(PROMPT)
        child.sendline("2")
        child.expect("a number or a path")
        child.sendline("2")  # tiny.yaml
        child.expect(r"OK: quick test of tiny\.yaml")
        child.expect(r"loss\s+\d+\.\d+ \(step 1\) -> \d+\.\d+ \(step 5\)")
        child.expect(PROMPT)
        child.sendline("7")  # recent runs: none (the quick test leaves none)
        child.expect("No runs yet")
        child.expect(PROMPT)
        child.sendline("q")
        child.expect("bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("leave", ["eof", "ctrl-c"])
def test_ctrl_d_and_ctrl_c_leave_with_exit_0(tmp_path: Path, leave: str) -> None:
    child = _spawn(tmp_path, tmp_path)
    try:
        child.expect(PROMPT)
        child.sendline("1")  # also from inside a choice's own prompt
        child.expect("Config file")
        if leave == "eof":
            child.sendeof()
        else:
            child.sendintr()
        child.expect("bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_configs_offered_are_the_folders_and_examples_yaml(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    for name in ("b.yaml", "a.yml", "notes.txt", "examples/x.yaml"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    assert config_candidates(tmp_path) == [
        Path("a.yml"),
        Path("b.yaml"),
        Path("examples/x.yaml"),
    ]
