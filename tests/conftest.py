"""Shared fixtures: a small real corpus and a tiny model config that trains in seconds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO / "examples" / "data" / "tinyshakespeare.txt"

TINY_CONFIG = """\
name: tiny
model: {{type: gpt, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, dropout: 0.1}}
data: {{type: text, path: corpus.txt, tokenizer: {{type: char}}, val_fraction: 0.1}}
optimization: {{lr: 1.0e-3, min_lr: 1.0e-4, warmup_steps: 5, decay_steps: 100}}
training: {{max_steps: {max_steps}, batch_size: 4, seed: 7, device: cpu}}
evaluation: {{interval: 10, batches: 2}}
monitoring: {{log_interval: 1}}
checkpoint: {{interval: 10, keep_last: 2}}
"""


@pytest.fixture(autouse=True, scope="session")
def isolated_token_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep token caches out of ~/.cache; subprocesses inherit the variable."""
    previous = os.environ.get("NEAT_CACHE_DIR")
    os.environ["NEAT_CACHE_DIR"] = str(tmp_path_factory.mktemp("neat-cache"))
    yield
    if previous is None:
        os.environ.pop("NEAT_CACHE_DIR", None)
    else:
        os.environ["NEAT_CACHE_DIR"] = previous


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """The first 60 kB of tiny Shakespeare."""
    path = tmp_path / "corpus.txt"
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    return path


@pytest.fixture
def tiny_config(tmp_path: Path, corpus: Path) -> Path:
    """A config next to `corpus.txt` for a 2-layer model; 30 steps by default."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(max_steps=30), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def components_registered_by_a_test_go_with_it() -> Iterator[None]:
    """A test that registers a component type of its own (a plugin) leaves the one registry
    as it found it: neat's own types stay, the test's are dropped."""
    yield
    from neat.config import registry

    for entries in registry._REGISTRY.values():
        for name in [n for n, c in entries.items() if not c.config.__module__.startswith("neat.")]:
            del entries[name]


@pytest.fixture(scope="session")
def trained_vq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of examples/vq_grid.yaml as shipped (800 steps, about 10 s on one core): the
    frozen image tokenizer that MVoT tests read and write codes with."""
    from click.testing import CliRunner

    from neat.cli import cli

    run = tmp_path_factory.mktemp("vq") / "run"
    config = REPO / "examples" / "vq_grid.yaml"
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    return run
