"""LR schedules, parameter groups and precision choice."""

from __future__ import annotations

import itertools

import pytest
import torch

from neat.models import GPT
from neat.models.gpt import GPTConfig
from neat.optimization import AdamWFactory, lr_at, param_groups, resolve_precision
from neat.optimization.adamw import AdamWConfig


def schedule(step: int, kind: str = "cosine") -> float:
    return lr_at(step, lr=1e-3, min_lr=1e-4, warmup_steps=100, decay_steps=2000, schedule=kind)


def test_warmup_is_linear_to_the_peak() -> None:
    assert schedule(0) == pytest.approx(1e-5)
    assert schedule(49) == pytest.approx(5e-4)
    assert schedule(99) == pytest.approx(1e-3)


def test_cosine_decays_to_min_lr_and_stays() -> None:
    assert schedule(100) == pytest.approx(1e-3)
    assert schedule(1050) == pytest.approx(0.5 * (1e-3 + 1e-4))
    assert schedule(2000) == pytest.approx(1e-4)
    assert schedule(5000) == pytest.approx(1e-4)
    values = [schedule(s) for s in range(100, 2001)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_linear_and_constant() -> None:
    assert schedule(1050, "linear") == pytest.approx(0.5 * (1e-3 + 1e-4))
    assert schedule(1500, "constant") == pytest.approx(1e-3)


def test_matrices_decay_biases_and_norms_do_not() -> None:
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8), vocab_size=10)
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() >= 2 for p in decay["params"])  # type: ignore[attr-defined]
    assert all(p.dim() < 2 for p in no_decay["params"])  # type: ignore[attr-defined]
    total = len(decay["params"]) + len(no_decay["params"])  # type: ignore[arg-type]
    assert total == len(list(model.parameters()))  # the tied embedding appears once
    assert no_decay["weight_decay"] == 0.0


def test_factory_builds_adamw_with_the_config() -> None:
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8), vocab_size=10)
    factory = AdamWFactory(AdamWConfig(lr=2e-3, beta2=0.99, warmup_steps=0), max_steps=10)
    opt = factory.create(model, torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-3)
    assert factory.lr_at(10) == pytest.approx(6e-5)


def test_precision_auto_is_fp32_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
