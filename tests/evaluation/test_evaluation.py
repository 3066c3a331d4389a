"""Bits per byte arithmetic, the fixed-batch evaluator, and sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from neat.evaluation import LossEvaluator, bits_per_byte, filter_logits, generate
from neat.interfaces import Batch


class Uniform(nn.Module):
    """Predicts every token with equal probability: loss is exactly ln(V)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        logits = torch.zeros(*x.shape, self.vocab) + self.anchor
        loss = (
            None
            if y is None
            else nn.functional.cross_entropy(logits.view(-1, self.vocab), y.view(-1))
        )
        return {"logits": logits, "loss": loss}


def test_bits_per_byte_definition() -> None:
    assert bits_per_byte(math.log(2) * 10, 10) == pytest.approx(1.0)
    assert bits_per_byte(math.log(2) * 10, 5) == pytest.approx(2.0)


def test_evaluator_on_a_uniform_model() -> None:
    vocab = 8
    token_bytes = [1, 1, 1, 1, 2, 2, 2, 2]  # ids 4..7 are two-byte characters
    x = torch.randint(0, vocab, (2, 5))
    y = torch.tensor([[0, 1, 4, 5, 2], [3, 3, 7, 1, 0]])
    evaluator = LossEvaluator([Batch(x, y)], token_bytes, torch.device("cpu"))
    metrics = evaluator.evaluate(Uniform(vocab))
    assert metrics["val_loss"] == pytest.approx(math.log(vocab))
    assert metrics["val_ppl"] == pytest.approx(vocab)
    n_bytes = sum(token_bytes[t] for t in y.flatten().tolist())
    assert metrics["val_bpb"] == pytest.approx(10 * math.log(vocab) / (math.log(2) * n_bytes))


def test_evaluator_restores_training_mode_and_is_repeatable() -> None:
    model = Uniform(4)
    model.train()
    batch = Batch(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    evaluator = LossEvaluator([batch], [1, 1, 1, 1], torch.device("cpu"))
    assert evaluator.evaluate(model) == evaluator.evaluate(model)
    assert model.training


def test_top_k_and_top_p_filtering() -> None:
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2, top_p=None)[0, 2:]).all()
    probs = torch.softmax(logits, dim=-1)[0]
    kept = filter_logits(logits, top_k=None, top_p=float(probs[0]) + 1e-3)
    assert torch.isfinite(kept[0, :2]).all() and torch.isinf(kept[0, 2:]).all()
    assert torch.isfinite(filter_logits(logits, top_k=None, top_p=1e-6)[0, 0])


class Counter(nn.Module):
    """Deterministic toy LM: the next token is (last + 1) mod V with high confidence."""

    def __init__(self, vocab: int = 5) -> None:
        super().__init__()
        self.vocab = vocab
        self.w = nn.Parameter(torch.zeros(()))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        logits = nn.functional.one_hot((x + 1) % self.vocab, self.vocab).float() * 5.0 + self.w
        return {"logits": logits, "loss": None}


def test_greedy_generation_follows_the_argmax() -> None:
    out = generate(Counter(), torch.tensor([[0]]), 6, block_size=4, temperature=0.0)
    assert out.tolist() == [[0, 1, 2, 3, 4, 0, 1]]


def test_sampling_is_reproducible_under_a_seed() -> None:
    def sample(seed: int) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        out = generate(
            Counter(), torch.tensor([[0]]), 30, block_size=4, temperature=2.0, generator=g
        )
        return out[0].tolist()

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
