"""Shared fixtures: a tiny language model with a tied embedding and a few AdamW steps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

VOCAB = 32


class TinyLM(nn.Module):
    """Embedding -> residual linear blocks -> LayerNorm -> head tied to the embedding."""

    def __init__(self, d_model: int = 8, n_layers: int = 1) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB, d_model)
        self.blocks = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids)
        for block in self.blocks:
            x = x + torch.tanh(block(x))
        return self.lm_head(self.ln_f(x))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    """One deterministic AdamW step on a batch drawn from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (4, 6), generator=gen).to(next(model.parameters()).device)
    logits = model(ids[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


ModelFactory = Callable[..., tuple[TinyLM, torch.optim.Optimizer]]


@pytest.fixture
def make_trained() -> ModelFactory:
    """Build (model, AdamW) from `seed` and train it for `steps` steps."""

    def build(
        seed: int = 0, steps: int = 2, d_model: int = 8, n_layers: int = 1, device: str = "cpu"
    ) -> tuple[TinyLM, torch.optim.Optimizer]:
        torch.manual_seed(seed)
        model = TinyLM(d_model=d_model, n_layers=n_layers).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        for step in range(steps):
            train_step(model, optimizer, seed=1000 + step)
        return model, optimizer

    return build


@pytest.fixture
def ckpt_dir(tmp_path: Path) -> Path:
    """A run's checkpoints/ folder (not created yet: the checkpointer creates it)."""
    return tmp_path / "run" / "checkpoints"


@pytest.fixture
def train() -> Callable[[nn.Module, torch.optim.Optimizer, int], None]:
    """The deterministic training step, for tests that continue training after a load."""
    return train_step
