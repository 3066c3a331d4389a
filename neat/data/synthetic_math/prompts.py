"""Training problems as prompts, for objectives that sample the answers (reinforce), and
the prompt and answer conventions that exact-match scoring shares with them.

The problems are the source's training documents (the same `num_train`, none held out), in a
shuffled order that is a pure function of (seed, epoch): the position is two integers, so a
resumed run draws exactly the prompts an unbroken one would have.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from neat.data.synthetic_math.generate import train_problem
from neat.data.synthetic_math.spec import SyntheticMathSourceConfig
from neat.errors import DataError, NeatError
from neat.interfaces import Batch, ITokenizer

__all__ = [
    "IGNORE",
    "ProblemBatches",
    "is_exact_answer",
    "newline_ids",
    "prompt_separator",
    "try_encode",
]

IGNORE = -100


def try_encode(tokenizer: ITokenizer, text: str) -> list[int] | None:
    """`text`'s ids, or None when the tokenizer cannot encode it."""
    try:
        return tokenizer.encode(text)
    except (NeatError, ValueError, KeyError):  # e.g. a character the char vocab never saw
        return None


def prompt_separator(tokenizer: ITokenizer) -> list[int]:
    """What starts every prompt: the end-of-text token, else a newline, as in the training
    stream (a question there follows the previous document's end)."""
    eot = tokenizer.eot_id
    return [eot] if eot is not None else (try_encode(tokenizer, "\n") or [])


def newline_ids(tokenizer: ITokenizer) -> set[int]:
    """Ids whose text holds a newline: generating one ends an answer."""
    found = set()
    for i in range(tokenizer.vocab_size):
        try:
            if "\n" in tokenizer.decode([i]):
                found.add(i)
        except (ValueError, KeyError, IndexError):
            continue
    return found


def is_exact_answer(tokenizer: ITokenizer, generated: list[int], answer: str) -> bool:
    """Right when the text before the first newline is the answer and a newline came."""
    try:
        text = tokenizer.decode(generated)
    except (ValueError, KeyError, IndexError):
        return False
    head, newline, _ = text.partition("\n")
    return bool(newline) and head == answer


class ProblemBatches:
    """Implements IBatchSource: `batch_size` training problems per batch, this rank's rows.

    Each batch is a prompt batch (see `Batch`): separator + question right-padded in
    `input_ids`, answer + newline in `targets`, and `prompt_lengths`.
    """

    def __init__(
        self,
        cfg: SyntheticMathSourceConfig,
        tokenizer: ITokenizer,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.cfg = cfg
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
        order = list(range(self.cfg.num_train))
        random.Random(f"problem_batches/{self.seed}/{epoch}").shuffle(order)
        return order

    def _encode(self, index: int) -> tuple[list[int], list[int]]:
        problem = train_problem(self.cfg, index)
        try:
            question = self.tokenizer.encode(problem.question)
            answer = self.tokenizer.encode(f"{problem.answer}\n")
        except (ValueError, KeyError) as err:
            raise DataError(
                f"synthetic_math problem {problem.question!r} cannot be tokenized ({err}); "
                "use the tokenizer the base model was trained with (data.tokenizer)"
            ) from err
        return self.separator + question, answer

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
        mine = indices[self.rank * share : (self.rank + 1) * share]
        rows = [self._encode(i) for i in mine]
        width = max(len(p) for p, _ in rows)
        answer_width = max(len(a) for _, a in rows)
        prompts = torch.zeros(len(rows), width, dtype=torch.long)
        answers = torch.full((len(rows), answer_width), IGNORE, dtype=torch.long)
        for i, (prompt, answer) in enumerate(rows):
            prompts[i, : len(prompt)] = torch.tensor(prompt)
            answers[i, : len(answer)] = torch.tensor(answer)
        lengths = torch.tensor([len(p) for p, _ in rows], dtype=torch.long)
        return Batch(prompts.to(self.device), answers.to(self.device), lengths.to(self.device))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self._order = self._shuffled(self.epoch)
