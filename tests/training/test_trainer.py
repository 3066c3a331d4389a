"""The loop's arithmetic and failure handling, on real models and tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from dependency_injector import providers
from torch import nn

from neat.config import load_config
from neat.di import build_container
from neat.errors import TrainingDiverged
from neat.interfaces import Batch
from neat.monitoring import read_metrics


class FixedBatches:
    """Hands out prepared batches in order (a real sampler's interface, known contents)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches
        self.position = 0

    def next_batch(self) -> Batch:
        batch = self.batches[self.position % len(self.batches)]
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = state["position"]


def train_one_step(config_path: Path, run_dir: Path, batches: list[Batch], accum: int) -> nn.Module:
    overrides = [f"training.grad_accum_steps={accum}", "training.max_steps=1", "model.dropout=0.0"]
    container = build_container(load_config(config_path, overrides), run_dir=run_dir)
    container.train_batches.override(providers.Object(FixedBatches(batches)))
    container.trainer().fit()
    model: nn.Module = container.model()
    return model


def test_gradient_accumulation_equals_one_big_batch(tiny_config: Path, tmp_path: Path) -> None:
    x = torch.randint(0, 40, (8, 32))
    y = torch.randint(0, 40, (8, 32))
    whole = train_one_step(tiny_config, tmp_path / "a", [Batch(x, y)], accum=1)
    halves = [Batch(x[:4], y[:4]), Batch(x[4:], y[4:])]
    accumulated = train_one_step(tiny_config, tmp_path / "b", halves, accum=2)
    pairs = zip(whole.named_parameters(), accumulated.parameters(), strict=True)
    for (name, a), b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


class NaNAfter(nn.Module):
    """Trains normally, then its loss turns NaN at a given call (a real divergence, no mock)."""

    def __init__(self, vocab_size: int, bad_call: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)
        self.calls = 0
        self.bad_call = bad_call

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, Any]:
        self.calls += 1
        logits = self.table(input_ids)
        loss = None
        if targets is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
            if self.training and self.calls >= self.bad_call:
                loss = loss * float("nan")
        return {"logits": logits, "loss": loss}


def test_non_finite_loss_stops_before_a_checkpoint_is_saved(
    tiny_config: Path, tmp_path: Path
) -> None:
    config = load_config(tiny_config, ["monitoring.log_interval=5", "checkpoint.interval=10"])
    container = build_container(config, run_dir=tmp_path / "run")
    vocab = container.tokenizer().vocab_size
    diverging = providers.Object(NaNAfter(vocab, bad_call=13))
    with container.model.override(diverging), pytest.raises(TrainingDiverged, match="at step 15"):
        container.trainer().fit()
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == ["step_10"]
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["status"] == "failed"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(tiny_config: Path, tmp_path: Path, precision: str) -> None:
    config = load_config(tiny_config, [f"training.precision={precision}", "training.max_steps=10"])
    state = build_container(config, run_dir=tmp_path / precision).trainer().fit()
    assert state.step == 10
    train = [
        r for r in read_metrics(tmp_path / precision / "metrics.jsonl") if r["event"] == "train"
    ]
    assert all(r["loss"] == r["loss"] for r in train)  # finite, no NaN
    assert train[-1]["loss"] < train[0]["loss"]


def test_a_failing_monitor_never_stops_training(tiny_config: Path, tmp_path: Path) -> None:
    class Broken:
        def on_event(self, event: object) -> None:
            raise RuntimeError("monitor bug")

        def close(self) -> None:
            pass

    config = load_config(tiny_config, ["training.max_steps=5"])
    container = build_container(config, run_dir=tmp_path / "run")
    container.monitors.override(providers.Object([Broken()]))
    assert container.trainer().fit().step == 5


def test_diverged_weights_are_never_checkpointed(tiny_config: Path, tmp_path: Path) -> None:
    # NaN from step 12 on; the next log point is step 20, the checkpoint at 15 must refuse.
    overrides = ["monitoring.log_interval=20", "checkpoint.interval=15"]
    container = build_container(load_config(tiny_config, overrides), run_dir=tmp_path / "run")
    vocab = container.tokenizer().vocab_size
    diverging = providers.Object(NaNAfter(vocab, bad_call=12))
    with container.model.override(diverging), pytest.raises(TrainingDiverged, match="at step 15"):
        container.trainer().fit()
    assert not list((tmp_path / "run" / "checkpoints").glob("step_*"))
