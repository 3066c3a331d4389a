"""The grid-world data source (`type: grid_world`): one document per training problem, its
reasoning in words or (`reasoning: interleaved`) in words and images."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from neat.config import register_component
from neat.data.grid_world.codec import StateCodec, codec_for
from neat.data.grid_world.generate import (
    GENERATOR_VERSION,
    GridProblem,
    Split,
    problems,
    train_problem,
)
from neat.data.grid_world.interleave import interleaved_response
from neat.data.grid_world.spec import GridWorldSourceConfig
from neat.interfaces import Document
from neat.interfaces.contexts import SourceContext

__all__ = ["GridWorldSource"]


class GridWorldSource:
    """Implements IDataSource: `num_train` text chain-of-thought problems, one document each.

    A document is ``question + chain of thought + answer``; `metadata["segments"]` marks the
    chain of thought and answer as the part to train on, as synthetic_math does, so that with
    `data.format: prompt_response` the loss falls on the reasoning, not on the given grid.
    """

    kind = "grid_world"

    def __init__(self, cfg: GridWorldSourceConfig, format: str = "prompt_response") -> None:
        self.cfg = cfg
        self.format = format  # the data format the token cache prepares (masks or not)
        self._codec: StateCodec | None = None

    @property
    def codec(self) -> StateCodec:
        """How the images of interleaved reasoning are coded (loaded on first use)."""
        if self._codec is None:
            self._codec = codec_for(self.cfg.image_tokenizer)
        return self._codec

    def documents(self) -> Iterator[Document]:
        for index in range(self.cfg.num_train):
            problem = train_problem(self.cfg, index)
            question, response = problem.question, self.response_of(problem)
            yield Document(
                text=question + response,
                source=f"grid_world:train:{index}",
                metadata={
                    "segments": [(question, False), (response, True)],
                    "task": problem.task,
                    "kind": problem.kind,
                    "side": problem.side,
                    "split": "train",
                },
            )

    @property
    def image_codes(self) -> int | None:
        """The codebook size images are written in (None: no images)."""
        return self.codec.num_codes if self.cfg.reasoning == "interleaved" else None

    def response_of(self, problem: GridProblem) -> str:
        """What a document trains on after the question (words, or words and images)."""
        if self.cfg.reasoning == "text":
            return problem.response
        return interleaved_response(problem, self.codec)

    def problems(self, split: Split, n: int) -> list[GridProblem]:
        return problems(self.cfg, split, n)

    def fingerprint(self) -> str:
        """Everything the training documents depend on (not `weight`, not `test`)."""
        spec = self.cfg.model_dump_json(exclude={"weight", "test", "image_tokenizer"})
        codes = self.codec.fingerprint() if self.cfg.reasoning == "interleaved" else "-"
        text = f"{self.kind}:{GENERATOR_VERSION}:{self.format}:{spec}:{codes}"
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> str:
        cfg = self.cfg
        return (
            f"grid world ({cfg.task}): {cfg.num_train:,} problems, sides {list(cfg.size)}, "
            f"{list(cfg.num_actions)} moves, questions {'/'.join(cfg.questions)}, seed "
            f"{cfg.seed}, {cfg.holdout_fraction:.0%} held out; test (OOD): sides "
            f"{list(cfg.test.size)}{self._images()}"
        )

    def _images(self) -> str:
        if self.cfg.reasoning != "interleaved":
            return ""
        return f"; images in the {self.cfg.image_tokenizer or 'tile'} codes"


def build_grid_world_source(cfg: GridWorldSourceConfig, ctx: SourceContext) -> GridWorldSource:
    return GridWorldSource(cfg, format=ctx.format)


register_component("source", GridWorldSourceConfig, build_grid_world_source)
