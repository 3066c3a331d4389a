"""`neat verify-format`: how well a checkpoint keeps a task's answer format, and what its
answers cost, on fresh problems of the task's source."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from neat.cli.common import user_errors
from neat.cli.infer import _check_device

# The table's rows: score key -> label (neat.evaluation.control_format.SCORE_KEYS).
ROWS = {
    "fmt_reasoning": "reasoning tags",
    "fmt_controls": "control tags",
    "fmt_proper": "proper format",
    "fmt_count": "exact count",
    "fmt_bounds": "within bounds",
    "fmt_all": "all five",
    "parsed": "parsed",
    "cost_ratio": "cost ratio",
    "cost_ratio_median": "median ratio",
}


@click.command(name="verify-format")
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="A run directory (its latest complete checkpoint) or a checkpoint directory.",
)
@click.option(
    "--task",
    default="double_integrator",
    show_default=True,
    type=click.Choice(["double_integrator"]),
    help="Whose answer format to check: the checkpoint's config must have its source.",
)
@click.option(
    "-n",
    "num_problems",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Problems to answer.",
)
@click.option(
    "--split",
    default="test",
    show_default=True,
    type=click.Choice(["test", "test_ood"]),
    help="test: the training ranges; test_ood: the source's test ranges.",
)
@click.option(
    "--max-new-tokens",
    default=None,
    type=click.IntRange(min=1),
    help="Tokens per answer at most (default: the longest reference answer's + 8).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
@click.option(
    "--show",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Also print the first K prompts and completions.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    callback=_check_device,
    help="auto | cpu | cuda | cuda:N | mps",
)
@user_errors
def verify_format(
    checkpoint: Path,
    task: str,
    num_problems: int,
    split: str,
    max_new_tokens: int | None,
    as_json: bool,
    show: int,
    device: str,
) -> None:
    """Greedy answers of CHECKPOINT to N problems of the task, scored by the five format
    checks (reasoning tags, control tags, proper format, exact count, within bounds), all
    five, the fraction whose controls parse, and the mean cost ratio of those to the optimal
    (minimum-energy) answer; the problems come from the checkpoint's own data config."""
    from neat.data.double_integrator import DoubleIntegratorSourceConfig, problems
    from neat.errors import ConfigError
    from neat.evaluation.control_format import (
        default_max_new_tokens,
        generate_completions,
        score_completions,
    )
    from neat.inference import refuse_non_finite
    from neat.models.load import load_trained_model
    from neat.persistence import resolve_checkpoint
    from neat.training.device import resolve_device

    path = resolve_checkpoint(checkpoint)
    torch_device = resolve_device(device)
    model, tokenizer, config = load_trained_model(path, torch_device)
    refuse_non_finite(model, path)
    sources = [s for s in config.data.sources if isinstance(s, DoubleIntegratorSourceConfig)]
    if not sources:
        kinds = ", ".join(sorted({str(getattr(s, "type", "?")) for s in config.data.sources}))
        raise ConfigError(
            f"checkpoint {path} was not trained on a {task} source (its data.sources: "
            f"{kinds}); pass a checkpoint of a run whose data has type: {task}"
        )
    source = sources[0]
    drawn = problems(source, split, num_problems)  # type: ignore[arg-type]
    completions = generate_completions(
        model,
        tokenizer,
        drawn,
        max_new_tokens=max_new_tokens or default_max_new_tokens(tokenizer, drawn),
        block_size=config.model.block_size,
        batch_size=64,
        device=torch_device,
    )
    scores = score_completions(drawn, completions, source)
    shown = [(p.prompt, c) for p, c in zip(drawn[:show], completions[:show], strict=True)]
    if as_json:
        report: dict[str, Any] = {
            key: (value if math.isfinite(value) else None) for key, value in scores.items()
        }
        report.update(n=num_problems, split=split)
        if show:
            report["completions"] = [{"prompt": p, "completion": c} for p, c in shown]
        click.echo(json.dumps(report))
        return
    click.echo(f"{task}: {num_problems} {split} problems, checkpoint {path}")
    for key, label in ROWS.items():
        value = scores[key]
        text = "n/a (no controls parsed)" if math.isnan(value) else f"{value:.3f}"
        notes = {"cost_ratio": "  (mean cost / optimal mean cost)",
                 "cost_ratio_median": "  (median of cost / optimal cost)"}  # fmt: skip
        note = notes.get(key, "") if math.isfinite(value) else ""
        click.echo(f"  {label:<15} {text}{note}")
    for i, (prompt, completion) in enumerate(shown):
        click.echo(f"\n[{i}] {prompt}{completion}", nl=not completion.endswith("\n"))
