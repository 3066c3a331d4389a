"""Config of the grid-world source (`data.sources[].type: grid_world`).

Spatial reasoning problems after MVoT's MAZE and FROZENLAKE tasks (Li et al. 2025, "Imagine
while Reasoning in Space: Multimodal Visualization-of-Thought", arXiv 2501.07542): a square grid
with an agent, a goal and walls (``maze``) or holes (``frozenlake``), a sequence of moves, and a
question about where the moves lead.

Question kinds (`questions`; problem i asks kind ``questions[i % len(questions)]``):

- ``final_position``: the agent's cell ``(row,col)`` after the moves;
- ``falls``: ``yes``/``no``; frozenlake: does the agent fall into a hole (which ends the
  episode); maze: does a move hit a wall or the edge (the agent then stays);
- ``next_action``: from where the moves end, the move that starts a shortest path to the goal
  (ties broken in the order up, down, left, right).

The shift: training grids have a side in `size`; the ``ood`` test split draws sides in
`test.size`, which must not meet `size`, so no out-of-distribution grid is one training sees.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from neat.config import SourceConfig, StrictModel
from neat.config.base import PathStr
from neat.data.synthetic_math.spec import _distinct

__all__ = [
    "CONTEXT_KEY",
    "QUESTION_KINDS",
    "TASKS",
    "GridWorldSourceConfig",
    "GridWorldTestConfig",
]

# where each validated source notes itself, so evaluation.source can default to it
CONTEXT_KEY = "neat.grid_world.sources"

Task = Literal["maze", "frozenlake"]
QuestionKind = Literal["final_position", "falls", "next_action"]
Range = tuple[int, int]

TASKS: tuple[str, ...] = get_args(Task)
QUESTION_KINDS: tuple[str, ...] = get_args(QuestionKind)
MIN_SIDE = 2  # start and goal need two cells


def _all_questions() -> list[QuestionKind]:
    return ["final_position", "falls", "next_action"]


def _range(value: Range, name: str, low: int) -> Range:
    """ValueError naming `name` unless `low <= min <= max`."""
    if value[0] > value[1]:
        raise ValueError(f"{name} must be [min, max] with min <= max, got {list(value)}")
    if value[0] < low:
        raise ValueError(f"{name} must be at least {low}, got {list(value)}")
    return value


class GridWorldTestConfig(StrictModel):
    """The out-of-distribution problems: grids of another side (larger by default)."""

    size: Range = Field(default=(7, 8), description="[min, max] grid side of the ood split")

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: Range) -> Range:
        return _range(value, "test.size", MIN_SIDE)


class GridWorldSourceConfig(SourceConfig):
    """Grid-world problems generated from a seed (see the module docstring).

    Problem i of each stream is a pure function of (seed, stream, i): every run with the same
    config sees the same documents.
    """

    type: Literal["grid_world"] = "grid_world"
    task: Task = "frozenlake"
    seed: int = 0
    num_train: PositiveInt = Field(default=20_000, description="training problems (documents)")
    size: Range = Field(default=(4, 6), description="[min, max] grid side for training")
    num_actions: Range = Field(default=(1, 6), description="[min, max] moves per problem")
    questions: list[QuestionKind] = Field(
        default_factory=_all_questions,
        description="final_position | falls | next_action (asked in turn)",
    )
    obstacle_fraction: float = Field(
        default=0.25, ge=0.0, le=0.5, description="share of cells that are walls or holes"
    )
    holdout_fraction: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="share of problems kept out of training for the heldout test split",
    )
    test: GridWorldTestConfig = Field(
        default_factory=GridWorldTestConfig, description="what the ood problems change"
    )
    reasoning: Literal["text", "interleaved"] = Field(
        default="text",
        description="text: a chain of thought in words; interleaved (MVoT): each step followed "
        "by the image of its state as tile codes (needs data.tokenizer.type: image_text)",
    )
    image_tokenizer: PathStr | None = Field(
        default=None,
        description="interleaved images as the codes of this trained VQ run (neat train -c "
        "examples/vq_grid.yaml; data.tokenizer.codes = its codebook_size); default: the "
        "exact tile codes (7)",
    )

    @field_validator("size", "num_actions")
    @classmethod
    def _check_ranges(cls, value: Range, info: ValidationInfo) -> Range:
        low = MIN_SIDE if info.field_name == "size" else 1
        return _range(value, str(info.field_name), low)

    @field_validator("questions")
    @classmethod
    def _check_questions(cls, value: list[QuestionKind]) -> list[QuestionKind]:
        return _distinct(value, "questions") or value

    @model_validator(mode="after")
    def _check_shift(self) -> GridWorldSourceConfig:
        (lo, hi), (test_lo, test_hi) = self.size, self.test.size
        if test_lo <= hi and lo <= test_hi:
            raise ValueError(
                f"test.size {list(self.test.size)} overlaps size {list(self.size)}; the ood "
                "split must draw grid sides that training never does"
            )
        return self

    @model_validator(mode="after")
    def _images_need_interleaving(self) -> GridWorldSourceConfig:
        if self.image_tokenizer is not None and self.reasoning != "interleaved":
            raise ValueError(
                "image_tokenizer writes the images of interleaved reasoning, and reasoning is "
                f"{self.reasoning}: set reasoning: interleaved, or remove image_tokenizer"
            )
        return self

    @model_validator(mode="after")
    def _note_for_evaluation(self, info: ValidationInfo) -> GridWorldSourceConfig:
        if isinstance(info.context, dict):  # see GridReasoningEvaluatorConfig.source
            info.context.setdefault(CONTEXT_KEY, []).append(self)
        return self
