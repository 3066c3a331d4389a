"""A source's training problems as prompts, for objectives that sample the answers
(reinforce, GRPO): each problem with its reference answer and the task's own record, which
the rewards score completions against.

The problems are the source's training documents (the same `num_train`, none held out), in a
shuffled order that is a pure function of (seed, epoch): the position is two integers, so a
resumed run draws exactly the prompts an unbroken one would have.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from neat.config import SourceConfig
from neat.data.synthetic_math.prompts import IGNORE, prompt_separator
from neat.errors import ConfigError, DataError
from neat.interfaces import Batch, ITokenizer

__all__ = ["ProblemBatches", "RLProblem", "rl_problem"]


@dataclass(frozen=True)
class RLProblem:
    """`prompt` is what the policy continues, `answer` the reference completion (ending in
    a newline), `task` the source's own record (a MathProblem, a ControlProblem)."""

    prompt: str
    answer: str
    task: Any
    source: SourceConfig


def rl_problem(cfg: SourceConfig, index: int) -> RLProblem:
    """The `index`-th training problem of a source that has problems."""
    if cfg.type == "synthetic_math":
        from neat.data.synthetic_math import train_problem as math_problem

        problem = math_problem(cfg, index)  # type: ignore[arg-type]
        return RLProblem(problem.question, f"{problem.answer}\n", problem, cfg)
    if cfg.type == "double_integrator":
        from neat.data.double_integrator import train_problem as control_problem

        control = control_problem(cfg, index)  # type: ignore[arg-type]
        return RLProblem(control.prompt, control.answer, control, cfg)
    raise ConfigError(
        f"data source {cfg.type} has no problems to sample answers to: use synthetic_math "
        "or double_integrator"
    )


class ProblemBatches:
    """Implements IBatchSource: `batch_size` training problems per batch, this rank's rows.

    Each batch is a prompt batch (see `Batch`): separator + prompt right-padded in
    `input_ids`, the reference answer in `targets`, `prompt_lengths`, and the problems.
    """

    def __init__(
        self,
        cfg: SourceConfig,
        tokenizer: ITokenizer,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.cfg = cfg
        self.num_problems = int(getattr(cfg, "num_train", 0))
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.separator = prompt_separator(tokenizer)
        self.epoch = 0
        self.cursor = 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(self.num_problems))
        random.Random(f"problem_batches/{self.seed}/{epoch}").shuffle(order)
        return order

    def _encode(self, problem: RLProblem) -> tuple[list[int], list[int]]:
        try:
            prompt = self.tokenizer.encode(problem.prompt)
            answer = self.tokenizer.encode(problem.answer)
        except (ValueError, KeyError) as err:
            raise DataError(
                f"{self.cfg.type} problem {problem.prompt!r} cannot be tokenized ({err}); "
                "use the tokenizer the base model was trained with (data.tokenizer)"
            ) from err
        return self.separator + prompt, answer

    def next_batch(self) -> Batch:
        indices: list[int] = []
        while len(indices) < self.batch_size:
            if self.cursor == len(self._order):
                self.epoch += 1
                self.cursor = 0
                self._order = self._shuffled(self.epoch)
            indices.append(self._order[self.cursor])
            self.cursor += 1
        share = self.batch_size // self.world_size
        mine = [
            rl_problem(self.cfg, i) for i in indices[self.rank * share : (self.rank + 1) * share]
        ]
        rows = [self._encode(problem) for problem in mine]
        width = max(len(p) for p, _ in rows)
        answer_width = max(len(a) for _, a in rows)
        prompts = torch.zeros(len(rows), width, dtype=torch.long)
        answers = torch.full((len(rows), answer_width), IGNORE, dtype=torch.long)
        for i, (prompt, answer) in enumerate(rows):
            prompts[i, : len(prompt)] = torch.tensor(prompt)
            answers[i, : len(answer)] = torch.tensor(answer)
        lengths = torch.tensor([len(p) for p, _ in rows], dtype=torch.long)
        return Batch(
            prompts.to(self.device),
            answers.to(self.device),
            lengths.to(self.device),
            problems=tuple(mine),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self._order = self._shuffled(self.epoch)
