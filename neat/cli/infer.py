"""`neat eval` and `neat generate`: use a trained checkpoint."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from neat.cli.common import config_options, user_errors
from neat.evaluation.generation import MAX_NEW_TOKENS, MAX_SEED

# neat.dispatch.STRATEGIES (not imported here: the CLI loads torch only when a command runs)
ADAPT_CHOICES = ("none", "oracle", "prompt", "classifier", "cem")
DEFAULT_ADAPT = "prompt"  # with --experts alone: the paper's deployable default, no labels read


def _experts_option(command: str) -> Any:
    return click.option(
        "--experts",
        "experts",
        default=None,
        type=click.Path(path_type=Path),
        help="An experts folder from `neat adapt experts` for this base: two-pass inference "
        f"with --adapt ({command}).",
    )


def _adapt_choice(experts: Path | None, adapt: str | None) -> str | None:
    """--adapt without --experts is a usage error; --experts alone means --adapt prompt."""
    if adapt is not None and experts is None:
        raise click.UsageError(
            f"--adapt {adapt} chooses among SVF experts; pass --experts DIR (a folder written "
            "by `neat adapt experts`), or leave --adapt out"
        )
    if experts is None:
        return None
    return adapt or DEFAULT_ADAPT


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
@_experts_option("none | oracle | prompt | classifier | cem")
@click.option(
    "--adapt",
    type=click.Choice(ADAPT_CHOICES),
    default=None,
    help=f"Pass 1 with --experts (default {DEFAULT_ADAPT}): base weights, the true task's "
    "expert, the model's own answer to a dispatch prompt, the classification expert, or a CEM "
    "mixture fitted on --shots training examples.",
)
@click.option(
    "--shots",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Few-shot training examples CEM scores mixtures on (--adapt cem).",
)
@click.option("--cem-iterations", default=10, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--cem-population",
    default=16,
    show_default=True,
    type=click.IntRange(min=2),
    help="Mixtures scored per CEM iteration (the best quarter refits the next).",
)
@click.pass_context
@user_errors
def evaluate(
    ctx: click.Context,
    config_path: Path,
    overrides: tuple[str, ...],
    checkpoint: Path,
    as_json: bool,
    experts: Path | None,
    adapt: str | None,
    shots: int,
    cem_iterations: int,
    cem_population: int,
) -> None:
    """Validation loss, perplexity and bits per byte of a checkpoint.

    A model with memory (titans) reads longer windows piece by piece with
    --set evaluation.stream=true (window: evaluation.stream_length, default 4 x block_size).

    With --experts DIR (and an exact_match evaluation of synthetic math), two-pass inference:
    pass 1 picks each problem's expert (--adapt), pass 2 answers with it; the metrics add
    task_acc_<op>, dispatch_acc (and dispatch_acc_<op>), or cem_weights and cem_score.
    """
    from neat.config import load_config

    strategy = _adapt_choice(experts, adapt)
    config = load_config(config_path, overrides)
    if experts is not None and strategy is not None:
        from neat.dispatch import evaluate_with_experts

        metrics = evaluate_with_experts(
            config,
            checkpoint,
            experts,
            strategy,  # type: ignore[arg-type]
            shots=shots,
            cem_iterations=cem_iterations,
            cem_population=cem_population,
        )
    else:
        from neat.inference import evaluate_checkpoint

        metrics = evaluate_checkpoint(config, checkpoint, console=ctx.obj["console"])
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            click.echo(f"{key:>10}: {_shown(value)}")


def _solve(checkpoint: Path, problem: str | None, out: Path | None, device: str) -> None:
    if problem is None or out is None:
        raise click.UsageError(
            "--problem and --out go together: pass both, e.g. --problem ood:3 --out runs/solved"
        )
    from neat.data.image_text import split_images
    from neat.visual_thoughts import solve_problem

    solved = solve_problem(checkpoint, problem, out, device=device)
    click.echo(solved.problem.question, nl=False)
    shown = 0
    for part in split_images(solved.response):
        if isinstance(part, str):
            click.echo(part, nl=False)
        else:
            shown += 1
            click.echo(f"[image {shown}]", nl=False)
    verdict = "right" if solved.right else f"wrong, true: {solved.problem.answer}"
    click.echo(
        f"\nanswer {solved.answer} ({verdict}); images right {solved.images_right}/"
        f"{len(solved.problem.states)}; files in {solved.out}"
    )


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown(v)}" for k, v in value.items())
    return str(value)


class _FiniteFloat(click.ParamType[float]):
    """A float in [low, high]; click's FloatRange lets NaN and inf through."""

    name = "float"

    def __init__(self, low: float, high: float | None = None, hint: str = "") -> None:
        self.low, self.high, self.hint = low, high, hint

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = float(click.FLOAT.convert(value, param, ctx))
        if (
            math.isfinite(number)
            and number >= self.low
            and (self.high is None or number <= self.high)
        ):
            return number
        wanted = (
            f"between {self.low:g} and {self.high:g}"
            if self.high is not None
            else (f"a finite number >= {self.low:g}")
        )
        self.fail(f"{value!r} is not {wanted}{self.hint}", param, ctx)


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse a device that is not there before the checkpoint is loaded."""
    import torch

    usage = "use auto, cpu, cuda, cuda:N or mps"
    if value == "auto":
        return value
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise click.BadParameter(f"{value!r} is not a device; {usage}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise click.BadParameter(f"{value!r}: CUDA is not available here; use auto or cpu")
        if device.index is not None and device.index >= count:
            raise click.BadParameter(
                f"{value!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise click.BadParameter(f"{value!r}: MPS is not available here; use auto or cpu")
    elif device.type != "cpu":
        raise click.BadParameter(f"{value!r} is not supported for generation; {usage}")
    return value


@click.command()
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="A run directory (its latest complete checkpoint) or a checkpoint directory.",
)
@click.option("--prompt", default="\n", show_default=True, help="Text to continue.")
@click.option(
    "--max-new-tokens",
    default=200,
    show_default=True,
    type=click.IntRange(0, MAX_NEW_TOKENS),
    help=f"Tokens to sample after the prompt, at most {MAX_NEW_TOKENS:,}.",
)
@click.option(
    "--temperature",
    default=0.8,
    show_default=True,
    type=_FiniteFloat(0.0, hint=" (0 means greedy)"),
    help="0 means greedy decoding.",
)
@click.option(
    "--top-k",
    default=None,
    type=click.IntRange(min=1),
    help="Keep the k likeliest tokens (1: greedy).",
)
@click.option(
    "--top-p",
    default=None,
    type=_FiniteFloat(0.0, 1.0, hint=" (0 keeps only the likeliest token, 1 keeps all)"),
    help="Nucleus sampling: keep the fewest tokens whose probability reaches P (0: greedy).",
)
@click.option(
    "--seed",
    default=1337,
    show_default=True,
    type=click.IntRange(0, MAX_SEED),
    help="Same seed, same text (0 to 2**63 - 1).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    callback=_check_device,
    help="auto | cpu | cuda | cuda:N | mps",
)
@click.option(
    "--stream",
    is_flag=True,
    help="Process the whole history segment by segment, the model's memory carrying it: "
    "unbounded context at the cost of one segment per token (titans only).",
)
@_experts_option("none | prompt | classifier | cem")
@click.option(
    "--adapt",
    type=click.Choice([c for c in ADAPT_CHOICES if c != "oracle"]),
    default=None,
    help=f"Pass 1 with --experts (default {DEFAULT_ADAPT}): base weights, the model's own "
    "answer to a dispatch prompt, the classification expert, or a CEM mixture fitted on "
    "--examples.",
)
@click.option(
    "--examples",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help='Few-shot examples for --adapt cem: JSON lines {"question": ..., "answer": ...}.',
)
@click.option(
    "--problem",
    default=None,
    metavar="SPLIT:INDEX",
    help="A grid_world run answers this problem of its data (train, id, heldout or ood; "
    "e.g. ood:3) greedily; --out receives reasoning.md, index.html and a PNG per image.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path, file_okay=False),
    help="The new folder for --problem's files.",
)
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
    stream: bool,
    experts: Path | None,
    adapt: str | None,
    examples: Path | None,
    problem: str | None,
    out: Path | None,
) -> None:
    """Sample a continuation of PROMPT from a trained model, printed as it is produced.

    With --experts DIR, pass 1 picks the expert for PROMPT (--adapt; printed to stderr as
    "expert: NAME") and pass 2 samples with its z. With --problem SPLIT:INDEX --out DIR, a
    grid_world model reasons over that problem, its drawn images (MVoT) saved as PNGs.
    """
    if problem is not None or out is not None:
        _solve(checkpoint, problem, out, device)
        return
    strategy = _adapt_choice(experts, adapt)
    if strategy == "cem" and examples is None:
        raise click.UsageError(
            "--adapt cem fits mixing weights on labelled examples; pass --examples FILE.jsonl "
            '(lines {"question": "3+4=", "answer": "7"}), or use --adapt prompt or classifier'
        )
    if examples is not None and strategy != "cem":
        raise click.UsageError("--examples is for --adapt cem; pass --adapt cem or drop it")
    sampling: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "seed": seed,
        "device": device,
        "stream": stream,
    }
    if experts is not None and strategy is not None:
        from neat.dispatch import stream_with_experts

        pieces = stream_with_experts(
            checkpoint,
            experts,
            strategy,  # type: ignore[arg-type]
            prompt,
            examples=examples,
            on_choice=lambda name: click.echo(f"expert: {name}", err=True),
            **sampling,
        )
    else:
        from neat.inference import stream_text

        pieces = stream_text(checkpoint, prompt, **sampling)
    try:
        for piece in pieces:
            click.echo(piece, nl=False)  # click.echo flushes
        click.echo()
    except KeyboardInterrupt:
        click.echo()
        sys.exit(130)
    except BrokenPipeError:  # `neat generate ... | head`: the reader has seen enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        sys.exit(141)
