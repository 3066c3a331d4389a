"""Tokenizers (char, byte), their save/load format, and the builder the config uses."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neat.config.base import ComponentConfig
from neat.errors import CheckpointError, DataError
from neat.interfaces import IDataSource, ITokenizer


def _canonical(spec: dict[str, Any]) -> str:
    return json.dumps(spec, ensure_ascii=False, sort_keys=True)


def _write_json(path: Path, spec: dict[str, Any]) -> None:
    """Write via a temporary file so a reader never sees half a tokenizer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(_canonical(spec) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class CharTokenizer:
    """One id per character seen in the corpus; ids follow the sorted characters."""

    def __init__(self, chars: Sequence[str]) -> None:
        bad = [c for c in chars if len(c) != 1]
        if bad:
            raise ValueError(f"CharTokenizer takes single characters, got {bad[:5]!r}")
        self.chars: list[str] = sorted(set(chars))
        self._stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, texts: Iterable[str]) -> CharTokenizer:
        vocab: set[str] = set()
        for text in texts:
            vocab.update(text)
        return cls(sorted(vocab))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def eot_id(self) -> int | None:
        return None

    def encode(self, text: str) -> list[int]:
        stoi = self._stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            unseen = sorted(set(text) - stoi.keys())
            shown = ", ".join(repr(c) for c in unseen[:10])
            more = f" and {len(unseen) - 10} more" if len(unseen) > 10 else ""
            raise DataError(
                f"character(s) {shown}{more} are not in the char tokenizer's vocabulary "
                f"({self.vocab_size} characters seen in the training data); "
                "use only those characters, or train with data.tokenizer.type: byte"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        chars, n = self.chars, len(self.chars)
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise ValueError(f"token id(s) {bad[:5]} are outside the vocabulary (size {n})")
        return "".join(chars[i] for i in ids)

    def token_bytes(self) -> list[int]:
        return [len(c.encode("utf-8")) for c in self.chars]

    def _spec(self) -> dict[str, Any]:
        return {"neat_tokenizer": "char", "chars": self.chars}

    def fingerprint(self) -> str:
        return hashlib.sha256(_canonical(self._spec()).encode()).hexdigest()

    def save(self, path: Path) -> None:
        _write_json(path, self._spec())


class ByteTokenizer:
    """UTF-8 bytes (ids 0..255) plus end-of-text (256): any text encodes, no fitting needed."""

    EOT = 256

    @property
    def vocab_size(self) -> int:
        return 257

    @property
    def eot_id(self) -> int | None:
        return self.EOT

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        bad = [i for i in ids if not 0 <= i <= self.EOT]
        if bad:
            raise ValueError(f"token id(s) {bad[:5]} are outside the vocabulary (size 257)")
        # A model can emit a cut-off multi-byte sequence; show it as U+FFFD rather than fail.
        return bytes(i for i in ids if i < self.EOT).decode("utf-8", errors="replace")

    def token_bytes(self) -> list[int]:
        return [1] * 256 + [0]

    def _spec(self) -> dict[str, Any]:
        return {"neat_tokenizer": "byte"}

    def fingerprint(self) -> str:
        return hashlib.sha256(_canonical(self._spec()).encode()).hexdigest()

    def save(self, path: Path) -> None:
        _write_json(path, self._spec())


def load_tokenizer(path: Path) -> ITokenizer:
    """Read a tokenizer written by `save`; CheckpointError when missing or not a tokenizer."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"tokenizer file {path} does not exist; is this a neat run or checkpoint folder?"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"tokenizer file {path} is unreadable or not JSON: {exc}") from exc
    kind = spec.get("neat_tokenizer") if isinstance(spec, dict) else None
    if kind == "byte":
        return ByteTokenizer()
    chars = spec.get("chars") if isinstance(spec, dict) else None
    if (
        kind == "char"
        and isinstance(chars, list)
        and all(isinstance(c, str) and len(c) == 1 for c in chars)
    ):
        return CharTokenizer(chars)
    raise CheckpointError(f"tokenizer file {path} is not a valid neat tokenizer (kind {kind!r})")


def encode_to_array(tokenizer: ITokenizer, text: str) -> np.ndarray:
    """Token ids as int64, the dtype embedding lookups take."""
    return np.asarray(tokenizer.encode(text), dtype=np.int64)


def _build_char(cfg: ComponentConfig, source: IDataSource, cache_dir: Path) -> ITokenizer:
    # The vocab depends only on the corpus, so cache it by the corpus fingerprint: a second
    # run skips a full pass over the text.
    path = Path(cache_dir) / f"vocab-char-{source.fingerprint()[:16]}.json"
    if path.is_file():
        try:
            cached = load_tokenizer(path)
        except CheckpointError:
            cached = None  # a damaged cache file is rebuilt, never trusted
        if isinstance(cached, CharTokenizer):
            return cached
    tokenizer = CharTokenizer.fit(doc.text for doc in source.documents())
    if tokenizer.vocab_size == 0:
        raise DataError(f"{source.describe()} contains no text; check data.path")
    tokenizer.save(path)
    return tokenizer


def _build_byte(cfg: ComponentConfig, source: IDataSource, cache_dir: Path) -> ITokenizer:
    return ByteTokenizer()


TokenizerBuilder = Callable[[ComponentConfig, IDataSource, Path], ITokenizer]

# `data.tokenizer.type` -> builder. Extend it to add a tokenizer type.
TOKENIZERS: dict[str, TokenizerBuilder] = {"char": _build_char, "byte": _build_byte}


def build_tokenizer(cfg: ComponentConfig, source: IDataSource, cache_dir: Path) -> ITokenizer:
    """The tokenizer `cfg` names, fitted on `source` when the type needs fitting."""
    builder = TOKENIZERS.get(cfg.type)
    if builder is None:
        raise ValueError(
            f"unknown tokenizer type {cfg.type!r}; known: {', '.join(sorted(TOKENIZERS))}"
        )
    return builder(cfg, source, cache_dir)
