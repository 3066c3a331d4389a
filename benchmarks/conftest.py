"""Benchmarks keep their token caches in a temporary folder, like the tests, and the `slow`
ones (a 1 GiB prepare, a 10k-file index) run only when `-m` selects them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def isolated_token_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.environ.get("NEAT_CACHE_DIR")
    os.environ["NEAT_CACHE_DIR"] = str(tmp_path_factory.mktemp("neat-cache"))
    yield
    if previous is None:
        os.environ.pop("NEAT_CACHE_DIR", None)
    else:
        os.environ["NEAT_CACHE_DIR"] = previous


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.markexpr:  # -m given: it decides, `-m slow` included
        return
    skip = pytest.mark.skip(reason="slow: select with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
