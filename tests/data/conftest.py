"""Data-test helpers shared between modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from neat.data import TextFileSource
from neat.interfaces import Document


class CountingSource:
    """A real source that counts how often its documents are read."""

    def __init__(self, inner: TextFileSource) -> None:
        self.inner = inner
        self.reads = 0

    def documents(self) -> Iterator[Document]:
        self.reads += 1
        yield from self.inner.documents()

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def describe(self) -> str:
        return self.inner.describe()


@pytest.fixture
def counting_source() -> type[CountingSource]:
    return CountingSource
