"""Embedding neat as a library: build the container, swap parts, train, and nothing leaks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from dependency_injector import providers
from torch import nn

from neat.config import ModelConfig, load_config
from neat.data import TextFileSource
from neat.di import ServiceContainer, build_container, register_component
from neat.interfaces import Document, IDataSource, IModel
from neat.interfaces.contexts import ModelContext
from neat.models import GPT
from neat.monitoring import read_metrics


class BigramModel(nn.Module):
    """A user's own model: a lookup table of next-token logits."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, Any]:
        logits = self.table(input_ids)
        loss = None
        if targets is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return {"logits": logits, "loss": loss}


class RepeatedSource:
    """A user's own data source: one synthetic document held in memory."""

    def __init__(self, text: str) -> None:
        self.text = text

    def documents(self) -> Iterator[Document]:
        yield Document(self.text, source="memory")

    def fingerprint(self) -> str:
        return f"repeated-{hash(self.text)}"

    def describe(self) -> str:
        return "in-memory text"


def test_container_wires_the_configured_components(tiny_config: Path, tmp_path: Path) -> None:
    container = build_container(load_config(tiny_config), run_dir=tmp_path / "run")
    assert isinstance(container.model(), GPT)
    assert isinstance(container.data_source(), TextFileSource)
    assert container.model() is container.model()  # singletons per container
    assert container.trainer() is container.trainer()
    assert container.trainer().model is container.model()
    assert isinstance(container.model(), IModel)


def test_override_the_model_with_a_users_class(tiny_config: Path, tmp_path: Path) -> None:
    config = load_config(
        tiny_config, ["training.max_steps=12", "optimization.lr=0.1", "optimization.warmup_steps=0"]
    )
    container = build_container(config, run_dir=tmp_path / "run")
    vocab = container.tokenizer().vocab_size
    with container.model.override(providers.Object(BigramModel(vocab))):
        state = container.trainer().fit()
        assert isinstance(container.trainer().model, BigramModel)
    assert state.step == 12
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["event"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"]

    fresh = build_container(config, run_dir=tmp_path / "other")
    assert isinstance(fresh.model(), GPT)  # the override stayed with its container
    assert not ServiceContainer.model.overridden


def test_override_the_data_source(tiny_config: Path, tmp_path: Path) -> None:
    config = load_config(tiny_config, ["training.max_steps=5"])
    container = build_container(config, run_dir=tmp_path / "run")
    source: IDataSource = RepeatedSource("abcab" * 2000)
    container.data_source.override(providers.Object(source))
    assert container.tokenizer().vocab_size == 3  # the char vocab came from the user's text
    state = container.trainer().fit()
    assert state.step == 5
    assert build_container(config, run_dir=tmp_path / "x").tokenizer().vocab_size > 3


def test_register_a_new_model_type_for_configs(tiny_config: Path, tmp_path: Path) -> None:
    class BigramConfig(ModelConfig):
        type: str = "bigram-test"
        block_size: int = 32

    def build_bigram(cfg: BigramConfig, ctx: ModelContext) -> BigramModel:
        return BigramModel(ctx.vocab_size)

    register_component("model", BigramConfig, build_bigram)
    config = load_config(tiny_config, ["model={type: bigram-test}", "training.max_steps=3"])
    container = build_container(config, run_dir=tmp_path / "run")
    assert isinstance(container.model(), BigramModel)
    assert container.trainer().fit().step == 3


def test_model_init_depends_only_on_the_seed(tiny_config: Path, tmp_path: Path) -> None:
    config = load_config(tiny_config)
    first = build_container(config, run_dir=tmp_path / "a").model()
    torch.manual_seed(12345)  # unrelated global RNG use must not change the init
    second = build_container(config, run_dir=tmp_path / "b").model()
    pairs = zip(first.state_dict().items(), second.state_dict().items(), strict=True)
    for (name, a), (_, b) in pairs:
        assert torch.equal(a, b), name
    other = build_container(load_config(tiny_config, ["training.seed=8"]), run_dir=tmp_path / "c")
    assert not torch.equal(
        other.model().state_dict()["wte.weight"], first.state_dict()["wte.weight"]
    )


@pytest.fixture(autouse=True)
def no_class_level_overrides() -> Iterator[None]:
    yield
    for provider in ServiceContainer.providers.values():
        assert not provider.overridden
