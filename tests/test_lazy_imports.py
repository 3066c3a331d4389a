"""Heavy optional modules stay unloaded on the CLI's train path (issue 19: the CPU example's
peak memory counts every native library imported)."""

from __future__ import annotations

import subprocess
import sys

from rich.console import Console


def test_cli_and_container_do_not_import_bpe_or_toml_libraries() -> None:
    """`tokenizers` (3 MB native) loads only for a BPE; `tomllib` only for a .toml config."""
    probe = (
        "import sys, neat.cli, neat.di, neat.data, neat.config\n"
        "print(' '.join(m for m in ('tokenizers', 'tomllib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


def test_console_leaves_emoji_codes_alone() -> None:
    """neat's consoles print ":name:" as typed (paths, samples) and skip rich's emoji table."""
    from neat.di.container import ServiceContainer

    console = ServiceContainer.console()
    ServiceContainer.console.reset()  # the class-level singleton: leave no instance behind
    assert isinstance(console, Console)
    with console.capture() as captured:
        console.print("KING: a :smile: here")
    assert captured.get().strip() == "KING: a :smile: here"
