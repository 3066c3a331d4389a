"""Synthetic math problems as prompt batches: resumable, split across ranks, and padded
so each row's prompt and answer are exactly its problem's."""

from __future__ import annotations

import torch

from neat.data.rl_problems import ProblemBatches
from neat.data.synthetic_math import SyntheticMathSourceConfig, train_problem
from neat.data.synthetic_math.prompts import IGNORE
from neat.data.tokenizers import ByteTokenizer
from neat.interfaces import Batch

CFG = SyntheticMathSourceConfig(type="synthetic_math", num_train=50, levels=[1, 2])


def batches(**kw: int) -> ProblemBatches:
    return ProblemBatches(
        CFG, ByteTokenizer(), batch_size=8, seed=3, device=torch.device("cpu"), **kw
    )


def rows(batch: Batch) -> list[tuple[int, str, str]]:
    """(separator id, question, answer + newline) of each row."""
    tok = ByteTokenizer()
    assert batch.prompt_lengths is not None
    out = []
    for ids, answer, n in zip(
        batch.input_ids.tolist(), batch.targets.tolist(), batch.prompt_lengths.tolist(), strict=True
    ):
        assert all(t == 0 for t in ids[n:])  # right padding
        question = tok.decode(ids[1:n])
        out.append((ids[0], question, tok.decode([t for t in answer if t != IGNORE])))
    return out


def test_each_row_is_a_training_problem_and_its_answer() -> None:
    problems = {train_problem(CFG, i) for i in range(CFG.num_train)}
    written = {(p.question, f"{p.answer}\n") for p in problems}
    source = batches()
    for _ in range(10):  # past the end of an epoch (50 problems, 8 a batch)
        for separator, question, answer in rows(source.next_batch()):
            assert separator == ByteTokenizer().eot_id
            assert (question, answer) in written


def test_a_restored_position_draws_the_same_batches() -> None:
    source = batches()
    for _ in range(5):
        source.next_batch()
    saved = source.state_dict()
    expected = [rows(source.next_batch()) for _ in range(4)]
    resumed = batches()
    resumed.load_state_dict(saved)
    assert [rows(resumed.next_batch()) for _ in range(4)] == expected


def test_two_ranks_share_one_global_batch() -> None:
    whole = rows(batches().next_batch())
    halves = [rows(batches(rank=r, world_size=2).next_batch()) for r in range(2)]
    assert halves[0] + halves[1] == whole
