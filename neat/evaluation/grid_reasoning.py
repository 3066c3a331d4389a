"""Task and visualization accuracy on grid-world problems (`evaluation.type: grid_reasoning`).

MVoT (Li et al. 2025, arXiv 2501.07542) scores the final answer and, for interleaved
reasoning, whether the generated images show the true states. Here the model writes its whole
response greedily after the question; the answer is the text after its last ``answer: `` line,
and each generated image is read back through the source's image codes (codec.py) and
compared with the state the moves reached at that step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import structlog
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt

from neat.config import register_component
from neat.data.grid_world import GridProblem, tile_codes
from neat.data.grid_world.codec import StateCodec, TileCodec, decode_state
from neat.data.grid_world.generate import problems
from neat.data.grid_world.interleave import response_images
from neat.data.grid_world.source import GridWorldSource
from neat.data.synthetic_math.prompts import IGNORE, prompt_separator
from neat.errors import ConfigError
from neat.evaluation.exact_match import teacher_forced_batch
from neat.evaluation.generation import iter_tokens
from neat.evaluation.grid_problems import GridProblemsConfig
from neat.interfaces import IModel, ITokenizer
from neat.interfaces.contexts import EvaluatorContext
from neat.optimization.precision import autocast

__all__ = ["GridReasoningEvaluator", "GridReasoningEvaluatorConfig", "parse_answer"]

ANSWER = "answer: "

log = structlog.get_logger(__name__)


class GridReasoningEvaluatorConfig(GridProblemsConfig):
    """Greedy responses to held-out grid-world problems (id, heldout, ood splits).

    Reports `acc` and `acc_<split>` (the answer), `acc_<split>_<kind>` per question kind,
    `vis_acc` and `vis_acc_<split>` (generated images equal to the true state, of all the
    images the moves call for) and `vis_redundancy` and `vis_redundancy_<split>` (generated
    images that change a cell the move does not touch) when the source's reasoning is
    interleaved, and `val_loss` (teacher-forced loss on the in-distribution references).
    """

    type: Literal["grid_reasoning"] = "grid_reasoning"
    max_new_tokens: PositiveInt | None = Field(
        default=None, description="default: the longest reference response + 16"
    )
    batch_size: PositiveInt = Field(default=64, description="problems generated at once")


def parse_answer(text: str) -> str | None:
    """The answer a response gives: what follows its last ``answer: `` up to the newline
    (None without one, or when the line never ended)."""
    at = text.rfind(ANSWER)
    if at < 0:
        return None
    answer, newline, _ = text[at + len(ANSWER) :].partition("\n")
    return answer if newline else None


def images_right(problem: GridProblem, text: str, codec: StateCodec | None = None) -> int:
    """How many of the response's images show the state of their step (in order)."""
    codec = codec or TileCodec()
    right = 0
    for codes, state in zip(response_images(text), problem.states, strict=False):
        try:
            grid, agent = decode_state(codec, codes, problem.side)
        except ValueError:  # a malformed image: wrong size, no agent, unknown codes
            continue
        right += grid == problem.grid and agent == state
    return right


def redundant_images(problem: GridProblem, text: str, codec: StateCodec) -> tuple[int, int]:
    """(images that change a cell the move does not touch, images of the right size).

    MVoT's visualization pattern redundancy: a step moves the agent from one cell to
    another, and any other cell that differs from the true state is a pattern drawn where
    nothing changed."""
    redundant = sized = 0
    moves = zip(response_images(text), problem.positions, problem.states, strict=False)
    for codes, before, after in moves:
        try:
            drawn = codec.tiles(codes, problem.side)
        except ValueError:
            continue
        sized += 1
        truth = tile_codes(problem.grid, after)
        touched = {before[0] * problem.side + before[1], after[0] * problem.side + after[1]}
        redundant += any(
            d != t for i, (d, t) in enumerate(zip(drawn, truth, strict=True)) if i not in touched
        )
    return redundant, sized


class GridReasoningEvaluator:
    """Implements IEvaluator (see the config's docstring for the metrics)."""

    def __init__(
        self,
        problems: Sequence[GridProblem],
        tokenizer: ITokenizer,
        device: torch.device,
        *,
        block_size: int,
        interleaved: bool,
        responses: Sequence[str],
        precision: str = "fp32",
        batch_size: int = 64,
        max_new_tokens: int | None = None,
        codec: StateCodec | None = None,
    ) -> None:
        self.problems = list(problems)
        self.codec = codec or TileCodec()
        self.tokenizer = tokenizer
        self.device = device
        self.block_size = block_size
        self.interleaved = interleaved
        self.precision = precision
        self.batch_size = batch_size
        separator = prompt_separator(tokenizer)
        self.prompts = [separator + tokenizer.encode(p.question) for p in self.problems]
        self.references = [tokenizer.encode(r) for r in responses]
        longest = max(len(r) for r in self.references)
        self.max_new_tokens = max_new_tokens or longest + 16
        needed = max(len(p) + len(r) for p, r in zip(self.prompts, self.references, strict=True))
        if needed > block_size:
            cut = sum(
                len(p) + len(r) > block_size
                for p, r in zip(self.prompts, self.references, strict=True)
            )
            log.warning(
                "grid_reasoning_context_too_short",
                problems=cut,
                of=len(self.problems),
                needed=needed,
                block_size=block_size,
                hint=f"their responses cannot fit after the question, so they count as wrong; "
                f"set model.block_size to at least {needed}",
            )

    def _generate(self, model: IModel, prompts: list[list[int]]) -> list[str]:
        """Greedy responses of equal-length prompts, stopped once every row has answered."""
        ids = torch.tensor(prompts, dtype=torch.long, device=self.device)
        new: list[torch.Tensor] = []
        texts = [""] * len(prompts)
        budget = min(self.max_new_tokens, self.block_size - ids.shape[1])
        with autocast(self.precision, self.device):
            for step, token in enumerate(
                iter_tokens(model, ids, budget, block_size=self.block_size, temperature=0.0)  # type: ignore[arg-type]
            ):
                new.append(token)
                if (step + 1) % 16 == 0:
                    texts = self._decode(new)
                    if all(parse_answer(t) is not None for t in texts):
                        break
        return self._decode(new) if new else texts

    def _decode(self, new: list[torch.Tensor]) -> list[str]:
        rows: list[list[int]] = torch.cat(new, dim=1).tolist()
        return [self.tokenizer.decode(row) for row in rows]

    def _val_loss(self, model: IModel) -> float | None:
        pairs = [
            (prompt, ref)
            for prompt, ref, problem in zip(
                self.prompts, self.references, self.problems, strict=True
            )
            if problem.split != "ood"
        ]
        total, count = 0.0, 0
        for start in range(0, len(pairs), self.batch_size):
            x, y = teacher_forced_batch(pairs[start : start + self.batch_size], self.block_size)
            x, y = x.to(self.device), y.to(self.device)
            with autocast(self.precision, self.device):
                logits = model(x)["logits"]
            total += float(
                F.cross_entropy(
                    logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum"
                )
            )
            count += int((y != IGNORE).sum())
        return total / count if count else None

    @torch.no_grad()
    def evaluate(self, model: IModel) -> dict[str, float]:
        was_training = model.training
        model.train(False)
        try:
            responses = self.responses(model)
            val_loss = self._val_loss(model)
        finally:
            model.train(was_training)
        tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for problem, text in zip(self.problems, responses, strict=True):
            ok = parse_answer(text) == problem.answer
            for name in ("acc", f"acc_{problem.split}", f"acc_{problem.split}_{problem.kind}"):
                tallies[name][0] += ok
                tallies[name][1] += 1
            if self.interleaved:
                for name in ("vis_acc", f"vis_acc_{problem.split}"):
                    tallies[name][0] += images_right(problem, text, self.codec)
                    tallies[name][1] += len(problem.states)
                redundant, sized = redundant_images(problem, text, self.codec)
                for name in ("vis_redundancy", f"vis_redundancy_{problem.split}"):
                    tallies[name][0] += redundant
                    tallies[name][1] += sized
        metrics = {name: hits / total for name, (hits, total) in sorted(tallies.items()) if total}
        if val_loss is not None:
            metrics["val_loss"] = val_loss
        return metrics

    def responses(self, model: IModel) -> list[str]:
        """The model's greedy response to every problem, in problem order."""
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, prompt in enumerate(self.prompts):
            by_length[len(prompt)].append(i)
        out = [""] * len(self.prompts)
        for rows in by_length.values():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                for i, text in zip(
                    chunk, self._generate(model, [self.prompts[i] for i in chunk]), strict=True
                ):
                    out[i] = text
        return out


def build_grid_reasoning_evaluator(
    cfg: GridReasoningEvaluatorConfig, ctx: EvaluatorContext
) -> GridReasoningEvaluator:
    if cfg.source is None:
        raise ConfigError(
            "evaluation.type grid_reasoning needs grid-world problems: add a source of type "
            "grid_world to data.sources, or set evaluation.source"
        )
    drawn = problems(cfg.source, "test", cfg.num_problems)
    source = GridWorldSource(cfg.source)
    return GridReasoningEvaluator(
        drawn,
        ctx.token_data.tokenizer,
        ctx.device,
        block_size=ctx.block_size,
        interleaved=cfg.source.reasoning == "interleaved",
        responses=[source.response_of(p) for p in drawn],
        precision=ctx.precision,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        codec=source.codec,
    )


register_component("evaluation", GridReasoningEvaluatorConfig, build_grid_reasoning_evaluator)
