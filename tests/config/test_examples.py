"""Every shipped example config validates as it stands, so none can rot unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest

from neat.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_the_example_validates(path: Path) -> None:
    config = load_config(path)
    assert config.name and config.training.max_steps > 0
