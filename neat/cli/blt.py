"""`neat blt ...`: the Byte Latent Transformer's entropy patching, seen on a piece of text."""

from __future__ import annotations

import importlib
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from neat.cli.common import user_errors
from neat.errors import ConfigError

if TYPE_CHECKING:
    from neat.models.blt.patching import Mode, Patching

__all__ = ["blt"]

DEFAULT_TARGET_PATCH_SIZE = 4.0


@click.group()
def blt() -> None:
    """Byte Latent Transformer tools: entropy patching with a byte-level entropy model."""


@blt.command("patch")
@click.option(
    "--entropy-model",
    "entropy_model",
    required=True,
    type=click.Path(path_type=Path),
    help="Run or checkpoint of a byte-level GPT (e.g. neat train -c examples/blt_entropy.yaml).",
)
@click.option("--text", default=None, help="The text to patch.")
@click.option(
    "--file",
    "file",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="A file whose bytes to patch.",
)
@click.option("--threshold", type=float, default=None, help="θ in nats (fixed, incremental).")
@click.option(
    "--target-patch-size",
    type=click.FloatRange(min=1.0),
    default=None,
    help=f"Calibrate θ on this text to this mean patch size in bytes "
    f"(the default, {DEFAULT_TARGET_PATCH_SIZE:g}, when --threshold is not given).",
)
@click.option(
    "--mode",
    type=click.Choice(["global", "monotonic"]),
    default="global",
    show_default=True,
    help="global: start where H > θ; monotonic: where H rises by more than θ.",
)
@click.option(
    "--window",
    type=click.IntRange(min=2),
    default=None,
    help="Bytes of context per prediction (default: the model's block_size).",
)
@click.option(
    "--max-patch-length",
    type=click.IntRange(min=1),
    default=None,
    help="Split longer patches into pieces of this many bytes.",
)
@click.option(
    "--plot",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a PNG of the entropies, the threshold and the patch starts (needs matplotlib).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the patching as JSON.")
@user_errors
def blt_patch(
    entropy_model: Path,
    text: str | None,
    file: Path | None,
    threshold: float | None,
    target_patch_size: float | None,
    mode: Mode,
    window: int | None,
    max_patch_length: int | None,
    plot: Path | None,
    as_json: bool,
) -> None:
    """Cut text into entropy patches: coloured patches on a terminal, `|` between them
    otherwise; then the number of patches, their mean size, θ and the share at word starts."""
    from neat.models.blt.entropy import load_entropy_model
    from neat.models.blt.patching import patch

    data = _input_bytes(text, file)
    if threshold is not None and target_patch_size is not None:
        raise ConfigError("give --threshold or --target-patch-size, not both")
    if threshold is None and target_patch_size is None:
        target_patch_size = DEFAULT_TARGET_PATCH_SIZE
    model, _ = load_entropy_model(entropy_model)
    try:
        result = patch(
            data,
            model,
            threshold,
            target_patch_size,
            mode,
            window=window,
            max_patch_length=max_patch_length,
        )
    except ValueError as exc:  # a window the model cannot read, and the like
        raise ConfigError(str(exc)) from exc
    if plot is not None:
        _plot(result, plot)
    if as_json:
        click.echo(json.dumps(_summary(result, with_patches=True), indent=2))
        return
    _show_patches(result)
    summary = _summary(result, with_patches=False)
    click.echo(
        f"{summary['num_patches']} patches, mean patch size {summary['mean_patch_size']:.2f} "
        f"bytes, threshold {summary['threshold']:.4f} nats ({mode}), "
        f"{summary['word_start_fraction']:.1%} of patch starts at word starts"
    )
    if plot is not None:
        click.echo(f"plot: {plot}")


def _input_bytes(text: str | None, file: Path | None) -> bytes:
    if (text is None) == (file is None):
        raise ConfigError("give the text to patch with exactly one of --text and --file")
    if file is not None:
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"--file {file} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read --file {file}: {exc.strerror or exc}") from None
    else:
        data = str(text).encode("utf-8")
    if not data:
        raise ConfigError("the text to patch is empty")
    return data


def _summary(result: Patching, *, with_patches: bool) -> dict[str, Any]:
    from neat.models.blt.patching import word_start_fraction

    summary: dict[str, Any] = {
        "mode": result.mode,
        "threshold": result.threshold,
        "num_bytes": len(result.data),
        "num_patches": result.num_patches,
        "mean_patch_size": result.mean_patch_size,
        "word_start_fraction": word_start_fraction(result.data, result.starts),
    }
    if with_patches:
        summary["lengths"] = result.lengths
        summary["patches"] = [_decode(p) for p in result.patches]
        summary["entropies"] = [round(float(h), 6) for h in result.entropies]
    return summary


def _decode(patch_bytes: bytes) -> str:
    """A patch may cut a multi-byte character: show the cut bytes as escapes, never lose them."""
    return patch_bytes.decode("utf-8", errors="backslashreplace")


def _show_patches(result: Patching) -> None:
    """Alternating backgrounds where rich finds a terminal, `|` between patches elsewhere."""
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    if not console.is_terminal:
        click.echo("|".join(_decode(p) for p in result.patches))
        return
    shown = Text()
    for i, piece in enumerate(result.patches):
        shown.append(_decode(piece), style="black on cyan" if i % 2 == 0 else "black on yellow")
    console.print(shown)


def _plot(result: Patching, path: Path) -> None:
    """Entropy per byte, the score the rule compares, θ and the patch starts; matplotlib is
    optional, so it is imported only here."""
    try:
        figure_module = importlib.import_module("matplotlib.figure")
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'neat[plots]'") from exc
    entropies = result.entropies.tolist()
    fig = figure_module.Figure(figsize=(max(6.0, min(40.0, len(entropies) / 12)), 3.5))
    ax = fig.add_subplot()
    ax.plot(range(len(entropies)), entropies, lw=1, label="H(x_t) (nats)")
    if result.mode == "monotonic":
        diffs = [0.0] + [b - a for a, b in itertools.pairwise(entropies)]
        ax.plot(range(len(diffs)), diffs, lw=1, label="H(x_t) − H(x_t−1)")
    ax.axhline(result.threshold, color="red", ls="--", lw=1, label=f"θ = {result.threshold:.3f}")
    starts = result.starts.nonzero().flatten().tolist()
    ax.scatter(starts, [entropies[i] for i in starts], s=8, color="black", label="patch start")
    ax.set_xlabel("byte")
    ax.set_ylabel("nats")
    ax.set_title(f"{result.num_patches} patches, mean {result.mean_patch_size:.2f} bytes")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
