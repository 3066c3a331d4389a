"""The sentence-transformers embedder: local folders only, unit float32 rows, stable identity."""

from __future__ import annotations

import importlib.util
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neat.config.indexing import SentenceTransformerEmbedderConfig
from neat.errors import ConfigError
from neat.indexing import embedders
from neat.indexing.embedders import (
    SentenceTransformerEmbedder,
    build_embedder,
    embedder_fingerprint,
)
from neat.interfaces import IEmbedder
from tests.indexing.tiny_models import TINY_DIM, build_tiny_sentence_transformer

TEXTS = [
    "Markdown documents are split at headings.",
    "BM25 ranks documents by term frequency.",
    "Markdown documents are split at headings.",
    "",
    "a much longer text " * 200,
]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE set and every socket connection refused: loading must not need either."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_loads_by_path_offline_and_returns_unit_float32_rows(
    tiny_model: Path, offline: None
) -> None:
    embedder = build_embedder(SentenceTransformerEmbedderConfig(path=str(tiny_model)))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert isinstance(embedder, IEmbedder)
    assert embedder.dim == TINY_DIM
    vectors = embedder.embed(TEXTS)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), TINY_DIM)
    assert vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_equal_texts_embed_equally_and_different_texts_differently(tiny_model: Path) -> None:
    vectors = SentenceTransformerEmbedder(tiny_model).embed(TEXTS)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)
    assert not np.allclose(vectors[0], vectors[3], atol=1e-3)


def test_two_loads_give_the_same_vectors_whatever_the_batch_size(tiny_model: Path) -> None:
    first = SentenceTransformerEmbedder(tiny_model, batch_size=32).embed(TEXTS)
    second = SentenceTransformerEmbedder(tiny_model, batch_size=1).embed(TEXTS)
    np.testing.assert_allclose(first, second, atol=1e-5)


def test_two_builds_of_the_tiny_model_are_identical(tiny_model: Path, tmp_path: Path) -> None:
    again = build_tiny_sentence_transformer(tmp_path / "again")
    assert build_tiny_sentence_transformer(tmp_path / "again") == again  # reused, not rebuilt
    one = SentenceTransformerEmbedder(tiny_model)
    two = SentenceTransformerEmbedder(again)
    assert one.fingerprint == two.fingerprint
    np.testing.assert_array_equal(one.embed(TEXTS), two.embed(TEXTS))


def test_empty_input_gives_zero_rows(tiny_model: Path) -> None:
    vectors = SentenceTransformerEmbedder(tiny_model).embed([])
    assert vectors.shape == (0, TINY_DIM)
    assert vectors.dtype == np.float32


def test_a_bare_string_is_refused(tiny_model: Path) -> None:
    embedder = SentenceTransformerEmbedder(tiny_model)
    with pytest.raises(TypeError, match="single string"):
        embedder.embed("one text")
    with pytest.raises(TypeError, match="strings"):
        embedder.embed([b"bytes"])  # type: ignore[list-item]


def test_missing_path_is_a_config_error_naming_it_without_network(
    tmp_path: Path, offline: None
) -> None:
    missing = tmp_path / "no-such-model"
    cfg = SentenceTransformerEmbedderConfig(path=str(missing))
    with pytest.raises(ConfigError, match="never downloads") as caught:
        build_embedder(cfg)
    assert str(missing) in str(caught.value)
    assert "indexing.embedder.path" in str(caught.value)


def test_a_hub_style_id_is_not_downloaded(
    offline: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="sentence-transformers/all-MiniLM-L6-v2"):
        SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2")


def test_a_file_is_not_a_model_folder(tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_bytes(b"\0")
    with pytest.raises(ConfigError, match="not a folder"):
        SentenceTransformerEmbedder(file)


def test_a_folder_without_a_model_fails_on_first_use(tmp_path: Path, offline: None) -> None:
    embedder = SentenceTransformerEmbedder(tmp_path)  # construction only checks the folder
    with pytest.raises(ConfigError, match="could not load"):
        embedder.embed(["x"])


def test_missing_sentence_transformers_names_the_extra(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "sentence_transformers" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"pip install 'neat\[embeddings\]'"):
        SentenceTransformerEmbedder(tiny_model)


def test_bad_batch_size_is_a_config_error(tiny_model: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        SentenceTransformerEmbedder(tiny_model, batch_size=0)


def test_a_missing_accelerator_is_a_config_error(tiny_model: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device"):
        SentenceTransformerEmbedder(tiny_model, device="cuda").embed(["x"])


def test_no_config_means_no_embedder() -> None:
    assert build_embedder(None) is None


def test_fingerprint_follows_the_files_not_the_location(tiny_model: Path, tmp_path: Path) -> None:
    original = SentenceTransformerEmbedder(tiny_model).fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    assert SentenceTransformerEmbedder(copy).fingerprint == original

    (copy / "README.md").write_text("a new model card", encoding="utf-8")
    (copy / ".cache").mkdir()
    (copy / ".cache" / "junk").write_text("x", encoding="utf-8")
    assert SentenceTransformerEmbedder(copy).fingerprint == original

    pooling = copy / "1_Pooling" / "config.json"
    text = pooling.read_text(encoding="utf-8")
    assert '"mean"' in text
    pooling.write_text(text.replace('"mean"', '"max"'), encoding="utf-8")
    assert SentenceTransformerEmbedder(copy).fingerprint != original


def test_name_and_repr_show_the_folder(tiny_model: Path) -> None:
    embedder = SentenceTransformerEmbedder(tiny_model)
    assert str(tiny_model.resolve()) in embedder.name
    assert str(tiny_model.resolve()) in repr(embedder)
    assert embedder.path == tiny_model.resolve()


def test_loading_restores_the_progress_bar_switch(tiny_model: Path) -> None:
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    SentenceTransformerEmbedder(tiny_model).embed(["x"])
    assert hf_logging.is_progress_bar_enabled() == before


class _PlainEmbedder:
    """A user's embedder with no fingerprint."""

    @property
    def dim(self) -> int:
        return 3

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.full((len(texts), 3), 1 / np.sqrt(3), dtype=np.float32)


def test_embedder_fingerprint_falls_back_to_class_and_width(tiny_model: Path) -> None:
    st = SentenceTransformerEmbedder(tiny_model)
    # it counts tokens, so its long texts are pooled pieces: that scheme keys the vectors too
    assert embedder_fingerprint(st) == f"{st.fingerprint}|{embedders.LONG_TEXTS}"
    assert embedder_fingerprint(_PlainEmbedder()).endswith("_PlainEmbedder:dim=3")


def test_zero_rows_stay_zero_when_normalising() -> None:
    rows = embedders._unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]])
    assert rows.dtype == np.float32
