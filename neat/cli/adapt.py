"""`neat adapt`: Transformer² experts built from a trained base."""

from __future__ import annotations

from pathlib import Path

import click

from neat.cli.common import user_errors


@click.group()
def adapt() -> None:
    """Build and use SVF experts (Transformer²)."""


@adapt.command("experts")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    required=True,
    help="The base run or checkpoint (trained on data.type: synthetic_math).",
)
@click.option(
    "--tasks",
    required=True,
    help="Comma-separated synthetic math operations, one expert each (e.g. add,sub,mul,linear).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="The new experts folder."
)
@click.option("--steps", default=300, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=1e-2, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--target", "targets", multiple=True, help="Module-name pattern to adapt (repeatable)."
)
@click.option(
    "--classifier/--no-classifier",
    default=True,
    show_default=True,
    help="Also train the classification expert (for --adapt classifier in eval/generate).",
)
@click.option(
    "--classifier-steps",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Adam steps on the classifier's z (batches of the base's training.batch_size).",
)
@click.option(
    "--classifier-lr",
    default=1e-1,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="The classifier's Adam learning rate: one label token per question is a weak "
    "signal, and at --lr's 1e-2 a tiny base learned nothing in 200 steps.",
)
@click.option(
    "--objective",
    type=click.Choice(["sft", "reinforce"]),
    default="sft",
    show_default=True,
    help="How each z is trained: next-token loss on the task's answers, or reinforce (exact-"
    "match reward on sampled answers, KL to the base), as Transformer² does.",
)
@click.pass_context
@user_errors
def adapt_experts(
    ctx: click.Context,
    checkpoint: Path,
    tasks: str,
    out: Path,
    steps: int,
    lr: float,
    targets: tuple[str, ...],
    classifier: bool,
    classifier_steps: int,
    classifier_lr: float,
    objective: str,
) -> None:
    """Train one SVF expert per task from the base at --checkpoint and write OUT/<task>.safetensors
    (its z-vectors, tied to the base's fingerprint) and OUT/manifest.json.

    With --classifier (the default) it then trains OUT/classifier.safetensors: a z that makes
    the base complete "<question>\\ntask: " with the task's name, on questions of each task's
    training distribution, for `neat eval/generate --experts OUT --adapt classifier`."""
    from neat.experts import build_experts

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise click.BadParameter("name at least one task", param_hint="--tasks")
    manifest = build_experts(
        checkpoint,
        names,
        out,
        steps=steps,
        lr=lr,
        targets=list(targets) or None,
        console=ctx.obj["console"],
        classifier_steps=classifier_steps if classifier else 0,
        classifier_lr=classifier_lr,
        objective=objective,
    )
    extra = " and a classifier" if classifier else ""
    click.echo(f"wrote {len(names)} expert(s){extra} and {manifest}")
