"""`neat eval` and `neat generate`: use a trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import click

from neat.cli.common import config_options, user_errors


@click.command(name="eval")
@config_options
@click.option(
    "--checkpoint",
    "checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="A run directory (its latest complete checkpoint) or a checkpoint directory.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.pass_context
@user_errors
def evaluate(
    ctx: click.Context,
    config_path: Path,
    overrides: tuple[str, ...],
    checkpoint: Path,
    as_json: bool,
) -> None:
    """Validation loss, perplexity and bits per byte of a checkpoint."""
    from neat.config import load_config
    from neat.inference import evaluate_checkpoint

    config = load_config(config_path, overrides)
    metrics = evaluate_checkpoint(config, checkpoint, console=ctx.obj["console"])
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            shown = f"{value:.4f}" if isinstance(value, float) else value
            click.echo(f"{key:>10}: {shown}")


@click.command()
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="A run directory (its latest complete checkpoint) or a checkpoint directory.",
)
@click.option("--prompt", default="\n", show_default=True, help="Text to continue.")
@click.option("--max-new-tokens", default=200, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--temperature",
    default=0.8,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="0 means greedy decoding.",
)
@click.option("--top-k", default=None, type=click.IntRange(min=1), help="Keep the k likeliest.")
@click.option(
    "--top-p", default=None, type=click.FloatRange(0.0, 1.0), help="Nucleus sampling mass."
)
@click.option("--seed", default=1337, show_default=True, type=int, help="Same seed, same text.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | mps")
@user_errors
def generate(
    checkpoint: Path,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int,
    device: str,
) -> None:
    """Sample a continuation of PROMPT from a trained model."""
    from neat.inference import generate_text

    text = generate_text(
        checkpoint,
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        device=device,
    )
    click.echo(text)
