"""Subword tokenizers from the Hugging Face `tokenizers` library: byte-level BPE and any
`tokenizer.json`.

Text is always encoded as ordinary text: a literal "<|endoftext|>" inside a document becomes
the bytes it spells, never the end-of-text id (so data cannot inject special tokens, and
`decode(encode(x)) == x` holds for every string). Special ids appear only where the caller puts
them, as the data pipeline does with `eot_id` between documents.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# `tokenizers` (a 3 MB native library) is imported where a BPE is built or loaded, not here:
# runs with the byte or char tokenizer never load it (issue 19: the CPU example's peak memory).

__all__ = ["EOT_CANDIDATES", "HFTokenizer", "byte_level_decoder_map", "train_bpe"]

# End-of-text tokens of common vocabularies (GPT-2 and neat's BPE, Llama 2 / T5, Llama 3, Gemma).
EOT_CANDIDATES: tuple[str, ...] = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>")

# `train_from_iterator` receives lists of text pieces of about this many characters in all;
# a long document is cut into pieces at line ends so no batch holds a whole large file.
_BATCH_CHARS = 8 << 20
_PIECE_CHARS = 1 << 20

_BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def byte_level_decoder_map() -> dict[str, int]:
    """GPT-2's printable stand-in character -> the byte it stands for (the ByteLevel alphabet)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _component_types(node: Any) -> set[str]:
    """Every `type` in a (possibly nested, e.g. Sequence) component of a tokenizer.json."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            found.add(node["type"])
        for value in node.values():
            found |= _component_types(value)
    elif isinstance(node, list):
        for value in node:
            found |= _component_types(value)
    return found


class HFTokenizer:
    """ITokenizer around a `tokenizers.Tokenizer` (a trained BPE or any HF `tokenizer.json`)."""

    def __init__(self, tokenizer: Tokenizer, eot_token: str | None = None) -> None:
        self._tok = tokenizer
        # Special-token strings in the input are plain text (see the module docstring).
        self._tok.encode_special_tokens = True
        self._json = tokenizer.to_str()
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        # Some vocabularies have holes; every id must be below vocab_size for the embedding.
        self._vocab_size = max(
            tokenizer.get_vocab_size(with_added_tokens=True), max(vocab.values(), default=-1) + 1
        )
        self.default_eot_token = next((t for t in EOT_CANDIDATES if t in vocab), None)
        if eot_token is not None and eot_token not in vocab:
            raise ValueError(f"end-of-text token {eot_token!r} is not in the vocabulary")
        self.eot_token = eot_token if eot_token is not None else self.default_eot_token
        self._eot_id = vocab[self.eot_token] if self.eot_token is not None else None

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_str(cls, text: str, eot_token: str | None = None) -> HFTokenizer:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as exc:  # the library raises a bare Exception on a malformed file
            raise ValueError(f"not a valid tokenizer.json: {exc}") from exc
        return cls(tokenizer, eot_token)

    @property
    def hf_tokenizer(self) -> Tokenizer:
        """The wrapped `tokenizers.Tokenizer`, for direct use (benchmarks, batch encoding)."""
        return self._tok

    # -- ITokenizer --------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def eot_id(self) -> int | None:
        return self._eot_id

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Many texts at once, in parallel threads inside the library."""
        encodings = self._tok.encode_batch_fast(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        n = self._vocab_size
        values = ids.tolist() if callable(getattr(ids, "tolist", None)) else list(ids)  # type: ignore[attr-defined]
        if values and (min(values) < 0 or max(values) >= n):  # C-speed bounds check
            bad = [i for i in values if not 0 <= i < n]
            raise ValueError(f"token id(s) {bad[:5]} are outside the vocabulary (size {n})")
        eot = self._eot_id
        kept = [i for i in values if i != eot] if eot in values else values
        # A cut-off multi-byte sequence (a model can emit one) decodes to U+FFFD, never fails.
        return self._tok.decode(kept, skip_special_tokens=False)

    def token_bytes(self) -> list[int]:
        return list(self._token_bytes)

    @cached_property
    def _token_bytes(self) -> list[int]:
        """UTF-8 bytes each id stands for; 0 for special tokens (and ids no token has)."""
        spec = json.loads(self._json)
        decoder_types = _component_types(spec.get("decoder"))
        byte_level = "ByteLevel" in decoder_types
        metaspace = bool({"Metaspace", "Replace"} & decoder_types)
        byte_fallback = "ByteFallback" in decoder_types
        wordpiece_prefix: str | None = None
        decoder = spec.get("decoder")
        if isinstance(decoder, dict) and decoder.get("type") == "WordPiece":
            wordpiece_prefix = str(decoder.get("prefix", "##"))
        alphabet = byte_level_decoder_map()
        special = {i for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
        sizes = [0] * self._vocab_size
        for token, i in self._tok.get_vocab(with_added_tokens=True).items():
            if i in special:
                continue
            if byte_level:  # as the ByteLevel decoder: a stand-in is one byte, others UTF-8
                sizes[i] = sum(1 if c in alphabet else len(c.encode("utf-8")) for c in token)
            elif byte_fallback and _BYTE_FALLBACK.fullmatch(token):
                sizes[i] = 1
            else:
                text = token.replace("▁", " ") if metaspace else token
                if wordpiece_prefix and text.startswith(wordpiece_prefix):
                    text = text[len(wordpiece_prefix) :]
                sizes[i] = len(text.encode("utf-8"))
        return sizes

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self._json.encode("utf-8"))
        if self.eot_token != self.default_eot_token:
            # A configured end-of-text token changes the token stream (documents end with it).
            digest.update(f"\0eot:{self.eot_token}".encode())
        return digest.hexdigest()

    def save(self, path: Path) -> None:
        """Write the HF `tokenizer.json` (any HF-compatible tool loads it), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self._json, encoding="utf-8")
        os.replace(tmp, path)

    def __repr__(self) -> str:
        return f"HFTokenizer(vocab_size={self.vocab_size}, eot={self.eot_token!r})"


def _pieces(text: str, size: int = _PIECE_CHARS) -> Iterator[str]:
    """`text` in pieces of about `size` characters, cut after a newline where there is one."""
    start, n = 0, len(text)
    while n - start > size:
        cut = text.rfind("\n", start, start + size)
        end = cut + 1 if cut >= start else start + size
        yield text[start:end]
        start = end
    if start < n:
        yield text[start:]


def _batches(texts: Iterable[str], batch_chars: int = _BATCH_CHARS) -> Iterator[list[str]]:
    batch: list[str] = []
    chars = 0
    for text in texts:
        for piece in _pieces(text):
            batch.append(piece)
            chars += len(piece)
            if chars >= batch_chars:
                yield batch
                batch, chars = [], 0
    if batch:
        yield batch


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    min_frequency: int = 2,
) -> HFTokenizer:
    """Train a byte-level BPE (GPT-2 style) on streamed texts; any string encodes afterwards.

    Special tokens take the first ids, then the 256 byte tokens, then the merges. The corpus
    is read once, in batches, and never held whole.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_batches(texts), trainer=trainer)
    return HFTokenizer(tokenizer)
