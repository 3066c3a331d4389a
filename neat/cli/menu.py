"""`neat` with no arguments: on a terminal, a menu of the everyday commands; without one
(a pipe, CI) the help of `neat --help`, so nothing ever waits for input that cannot come.

Each choice asks for what its command needs (a config, a run, a prompt), shows the command
line it stands for, and runs that command in this process; a failing command prints its
message and the menu comes back. `q`, Ctrl-D and Ctrl-C leave (exit 0)."""

from __future__ import annotations

import shlex
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import click

from neat.errors import NeatError

__all__ = ["config_candidates", "recent_runs", "run_menu"]

RUNS_DIR = Path("runs")
MAX_RUNS_SHOWN = 9
_CONFIG_SUFFIXES = (".yaml", ".yml")


def run_menu(ctx: click.Context) -> None:
    """The menu on a terminal (stdin and stdout both), else the group's help and exit 0."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit(0)
    try:
        while True:
            _show_menu()
            answer = click.prompt("Choose", prompt_suffix=" > ").strip().lower()
            if answer in ("q", "quit", "exit"):
                break
            action = _ACTIONS_BY_KEY.get(answer)
            if action is None:
                click.echo(f"'{answer}' is not on the menu: type 1-{len(_ACTIONS)} or q")
                continue
            try:
                args = action[1]()
            except NeatError as exc:  # e.g. an unreadable run registry
                click.echo(f"Error: {exc}", err=True)
                continue
            if args is not None:
                _run(ctx, args)
    except click.Abort:  # Ctrl-C or Ctrl-D at a prompt
        click.echo()
    click.echo("bye")


def _show_menu() -> None:
    click.echo()
    click.echo(click.style("neat: what would you like to do?", bold=True))
    for key, (label, _) in zip(_ACTIONS_BY_KEY, _ACTIONS, strict=True):
        click.echo(f"  {key}  {label}")
    click.echo("  q  quit")


def _run(ctx: click.Context, args: Sequence[str]) -> int:
    """Run `neat ARGS` in this process under the menu's context (its console and log level);
    whatever way it fails, say so and return, so the menu comes back. Returns the exit code."""
    click.echo(click.style(f"$ neat {shlex.join(args)}", dim=True))
    group = cast(click.Group, ctx.command)
    code: int = 0
    try:
        name, command, rest = group.resolve_command(ctx, list(args))
        if command is None or name is None:  # resolve_command raises first; for mypy
            raise click.UsageError(f"no such command: {args[0]}")
        with command.make_context(name, rest, parent=ctx) as sub:
            command.invoke(sub)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        code = 1
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except SystemExit as exc:  # user_errors already printed the message
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        code = 130
    except NeatError as exc:
        click.echo(f"Error: {exc}", err=True)
        code = 2
    except Exception:  # a bug: show it, but keep the menu
        traceback.print_exc()
        code = 1
    if code:
        click.echo(f"(the command exited with status {code})", err=True)
    return code


# --- what each choice asks for -----------------------------------------------------------


def config_candidates(cwd: Path | None = None) -> list[Path]:
    """The YAML files of the current folder, then those of examples/, sorted by name."""
    cwd = cwd or Path.cwd()
    found: list[Path] = []
    for folder in (cwd, cwd / "examples"):
        if folder.is_dir():
            files = [p for p in folder.iterdir() if p.suffix in _CONFIG_SUFFIXES and p.is_file()]
            found.extend(sorted(files))
    return [p.relative_to(cwd) for p in found]


def recent_runs(runs_dir: Path = RUNS_DIR, limit: int = MAX_RUNS_SHOWN) -> list[Path]:
    """The newest folders under runs/, newest first."""
    if not runs_dir.is_dir():
        return []
    folders = [p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return folders[:limit]


def _pick_path(
    label: str,
    candidates: Sequence[Path],
    *,
    want: Callable[[Path], bool],
    missing: str,
    default_first: bool = False,
) -> Path:
    """A numbered choice among CANDIDATES, or any path typed that passes WANT."""
    if candidates:
        for number, path in enumerate(candidates, 1):
            click.echo(f"  {number:>2}  {path}")
        label = f"{label} (a number or a path)"
    default = "1" if candidates and default_first else None
    while True:
        answer = click.prompt(label, default=default).strip()
        if answer.isdigit() and 1 <= int(answer) <= len(candidates):
            return candidates[int(answer) - 1]
        path = Path(answer).expanduser()
        if answer and want(path):
            return path
        hint = f" (choose 1-{len(candidates)} or type a path)" if candidates else ""
        click.echo(f"{answer!r}: {missing}{hint}")


def _config(label: str = "Config file", extra: Sequence[Path] = ()) -> Path:
    candidates = list(dict.fromkeys([*extra, *config_candidates()]))
    return _pick_path(
        label,
        candidates,
        want=Path.is_file,
        missing="no such file",
        default_first=bool(extra),
    )


def _checkpoint() -> Path:
    runs = recent_runs()
    if runs:
        click.echo(f"Newest runs under {RUNS_DIR}/:")
    return _pick_path(
        "Run or checkpoint directory",
        runs,
        want=Path.is_dir,
        missing="no such directory",
        default_first=True,
    )


def _run_config(checkpoint: Path) -> list[Path]:
    """The config.yaml saved with the run of CHECKPOINT (a run or checkpoint directory)."""
    from neat.persistence.manifest import CONFIG_FILE

    for folder in (checkpoint, *list(checkpoint.parents)[:2]):
        if (folder / CONFIG_FILE).is_file():
            return [folder / CONFIG_FILE]
    return []


def _train() -> list[str]:
    return ["train", "-c", str(_config())]


def _quick_test() -> list[str]:
    return ["quick-test", "-c", str(_config())]


def _evaluate() -> list[str]:
    checkpoint = _checkpoint()
    saved = _run_config(checkpoint)
    config = _config("Config file (the run's own is first)" if saved else "Config file", saved)
    return ["eval", "-c", str(config), "--checkpoint", str(checkpoint)]


def _generate() -> list[str]:
    checkpoint = _checkpoint()
    prompt = click.prompt(
        "Prompt text (empty: start from a newline)", default="", show_default=False
    )
    tokens = click.prompt("New tokens", default=200, type=click.IntRange(0, 100_000))
    args = ["generate", "--checkpoint", str(checkpoint), "--max-new-tokens", str(tokens)]
    return [*args, "--prompt", prompt] if prompt else args


def _prepare() -> list[str]:
    return ["data", "prepare", "-c", str(_config())]


def _index() -> list[str]:
    folder = _pick_path(
        "Folder of markdown documents (into the default index, .neat/index.db)",
        [],
        want=Path.is_dir,
        missing="no such folder",
    )
    return ["index", "build", str(folder)]


def _recent_runs() -> list[str] | None:
    from neat.persistence.registry import REGISTRY_FILE, list_runs

    db = RUNS_DIR / REGISTRY_FILE
    if not list_runs(db):
        click.echo(f"No runs yet: nothing is recorded in {db} (train a config first).")
        return None
    return ["runs", "list", "--runs-dir", str(RUNS_DIR)]


_ACTIONS: list[tuple[str, Callable[[], list[str] | None]]] = [
    ("train a config", _train),
    ("quick test of a config (5 steps)", _quick_test),
    ("evaluate a checkpoint", _evaluate),
    ("generate text from a checkpoint", _generate),
    ("prepare a config's data", _prepare),
    ("index documents (a folder into the default index)", _index),
    ("recent runs", _recent_runs),
]
_ACTIONS_BY_KEY = {str(number): action for number, action in enumerate(_ACTIONS, 1)}
