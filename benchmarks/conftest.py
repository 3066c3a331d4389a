"""Benchmarks keep their token caches in a temporary folder, like the tests."""

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
