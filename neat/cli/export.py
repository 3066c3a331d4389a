"""`neat export`: a trained model as an ONNX or TorchScript file for inference elsewhere."""

from __future__ import annotations

from pathlib import Path

import click

from neat.cli.common import user_errors

__all__ = ["export"]

# neat.export.FORMATS, DEFAULT_OPSET, DEFAULT_TOLERANCE (not imported: the CLI loads torch
# only when a command runs)
FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-4


@click.command()
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="A run directory (its latest complete checkpoint) or a checkpoint directory.",
)
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS))
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The file to write (default: <run>/export/model.onnx or model.pt).",
)
@click.option(
    "--seq-len",
    default=None,
    type=click.IntRange(min=1),
    help="Sequence length of the example input (default: the model's block_size).",
)
@click.option("--batch", default=2, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--opset",
    default=DEFAULT_OPSET,
    show_default=True,
    # torch.export's ONNX translation writes opset 18; converting down (torch 2.13) leaves
    # opset-18 attributes behind (Split's num_outputs), which ONNX Runtime rejects
    type=click.IntRange(min=DEFAULT_OPSET),
    help="ONNX opset (18 or newer).",
)
@click.option(
    "--tolerance",
    default=DEFAULT_TOLERANCE,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Largest max abs logit difference from the PyTorch model that passes the check.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    type=click.Choice(["cpu"]),
    help="Exports are traced and checked on the CPU (ONNX Runtime's CPU provider).",
)
@user_errors
def export(
    checkpoint: Path,
    fmt: str,
    out: Path | None,
    seq_len: int | None,
    batch: int,
    opset: int,
    tolerance: float,
    device: str,
) -> None:
    """Export a trained model: token ids (batch, seq) int64 -> logits (batch, seq, vocab)
    float32, batch and seq dynamic (seq up to block_size).

    The file is kept only after it reproduces the PyTorch model's logits (eval, fp32) on
    random ids at two shapes within --tolerance; otherwise exit 2 and nothing is written.
    """
    from neat.export import default_output, export_checkpoint, require_onnx
    from neat.inference import load_for_inference
    from neat.persistence import resolve_checkpoint

    if fmt == "onnx":  # before the checkpoint is loaded
        require_onnx()
    path = resolve_checkpoint(checkpoint)
    model, _, block_size = load_for_inference(path, device)
    target = out if out is not None else default_output(path, fmt)  # type: ignore[arg-type]
    result = export_checkpoint(
        model,
        fmt,  # type: ignore[arg-type]
        target,
        block_size=block_size,
        seq_len=seq_len,
        batch=batch,
        opset=opset,
        tolerance=tolerance,
    )
    shapes = ", ".join(f"({b}, {s})" for b, s in result.shapes)
    click.echo(f"exported {result.path} ({result.size_bytes / 1024:,.1f} KiB, {fmt})")
    click.echo(f"parity: max abs diff {result.max_abs_diff:.3g} at shapes {shapes}")
