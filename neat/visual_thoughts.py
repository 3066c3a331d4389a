"""`neat generate --problem`: a trained grid-world model's reasoning, written out to look at.

The model answers one problem of its own data (a training or test problem named by split and
index) greedily; the response is saved as `reasoning.md` and `index.html`, and every image it
drew (MVoT's visual thoughts, Li et al. 2025) as a PNG beside the true state of that step.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neat.data.grid_world import GridProblem, GridWorldSource, render_state
from neat.data.grid_world.codec import StateCodec, decode_state
from neat.data.grid_world.generate import TEST_SPLITS, eval_problem, train_problem
from neat.data.grid_world.render import CELL, save_png
from neat.data.grid_world.spec import GridWorldSourceConfig
from neat.data.image_text import split_images
from neat.errors import ConfigError
from neat.evaluation.grid_reasoning import GridReasoningEvaluator, parse_answer
from neat.inference import refuse_non_finite
from neat.models.load import load_trained_model
from neat.persistence import resolve_checkpoint
from neat.persistence.files import check_out_free
from neat.training.device import resolve_device

__all__ = ["Solved", "problem_of", "solve_problem"]

SPLITS = ("train", *TEST_SPLITS)


@dataclass(frozen=True)
class Solved:
    """What the model answered, against the truth, and where the files went."""

    problem: GridProblem
    response: str
    answer: str | None
    images: int  # drawn
    images_right: int  # equal to the true state of their step
    out: Path

    @property
    def right(self) -> bool:
        return self.answer == self.problem.answer


def problem_of(cfg: GridWorldSourceConfig, ref: str) -> GridProblem:
    """`SPLIT:INDEX` (train, id, heldout or ood) -> that problem of the source."""
    split, _, index = ref.partition(":")
    if split not in SPLITS or not index.isdigit():
        raise ConfigError(
            f"--problem {ref!r}: name it SPLIT:INDEX with SPLIT one of {', '.join(SPLITS)} "
            "and INDEX a number, e.g. ood:3"
        )
    if split == "train":
        return train_problem(cfg, int(index))
    return eval_problem(cfg, int(index), split)  # type: ignore[arg-type]


def _png_uri(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _drawn_image(codec: StateCodec, codes: list[int], side: int, cell: int) -> np.ndarray | None:
    """What the codes look like, through the source's image tokenizer, at `cell` px a cell
    (None when they do not fill the grid)."""
    try:
        image = codec.image(codes, side)
    except ValueError:
        return None
    scale = max(1, cell // CELL)
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def solve_problem(
    checkpoint: Path, ref: str, out: Path, *, device: str = "auto", cell: int = 16
) -> Solved:
    """Answer problem `ref` of the checkpoint's grid_world source and write `out`."""
    path = resolve_checkpoint(checkpoint)
    model, tokenizer, config = load_trained_model(path, resolve_device(device))
    refuse_non_finite(model, path)
    sources = [s for s in config.data.sources if isinstance(s, GridWorldSourceConfig)]
    if not sources:
        kinds = ", ".join(s.type for s in config.data.sources)
        raise ConfigError(
            f"--problem reads grid-world problems, and {path} was trained on {kinds}; "
            "use a checkpoint of a data.type: grid_world run"
        )
    cfg = sources[0]
    problem = problem_of(cfg, ref)
    check_out_free(out)
    source = GridWorldSource(cfg)
    solver = GridReasoningEvaluator(
        [problem],
        tokenizer,
        next(model.parameters()).device,
        block_size=config.model.block_size,
        interleaved=cfg.reasoning == "interleaved",
        responses=[source.response_of(problem)],
        codec=source.codec,
    )
    model.eval()
    response = solver.responses(model)[0]
    out.mkdir(parents=True)
    start = render_state(problem.grid, problem.start, cell)
    save_png(start, out / "start.png")
    markdown = [f"# {ref}\n\n![start](start.png)\n\n```\n{problem.question}```\n"]
    page = [f"<h1>{html.escape(ref)}</h1><pre>{html.escape(problem.question)}</pre>"]
    page.append(f'<img src="{_png_uri(start)}" alt="start">')
    drawn = right = 0
    for part in split_images(response):
        if isinstance(part, str):
            markdown.append(f"```\n{part}\n```\n")
            page.append(f"<pre>{html.escape(part)}</pre>")
            continue
        drawn += 1
        image = _drawn_image(source.codec, part, problem.side, cell)
        if image is None:
            note = f"image {drawn}: {len(part)} codes, not a {problem.side}x{problem.side} grid"
            markdown.append(f"_{note}_\n")
            page.append(f"<p><em>{html.escape(note)}</em></p>")
            continue
        name = f"step_{drawn}.png"
        save_png(image, out / name)
        truth = problem.states[drawn - 1] if drawn <= len(problem.states) else None
        try:
            grid, agent = decode_state(source.codec, part, problem.side)
            ok = truth is not None and grid == problem.grid and agent == truth
        except ValueError:
            ok = False
        right += ok
        verdict = "right" if ok else "wrong"
        markdown.append(f"![step {drawn} ({verdict})]({name})\n")
        true_image = (
            f' <img src="{_png_uri(render_state(problem.grid, truth, cell))}" alt="truth">'
            if truth is not None
            else ""
        )
        page.append(
            f'<p><img src="{_png_uri(image)}" alt="step {drawn}">{true_image} {verdict}</p>'
        )
    answer = parse_answer(response)
    summary = f"answer: {answer} (true: {problem.answer}); images right: {right}/{drawn}"
    markdown.append(f"\n{summary}\n")
    page.append(f"<p>{html.escape(summary)}</p>")
    (out / "reasoning.md").write_text("".join(markdown), encoding="utf-8")
    (out / "index.html").write_text(
        "<!doctype html><meta charset=utf-8><title>neat: visual thoughts</title>" + "\n".join(page),
        encoding="utf-8",
    )
    return Solved(problem, response, answer, drawn, right, out)
