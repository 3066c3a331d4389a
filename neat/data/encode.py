"""Documents -> tasks -> token arrays: the encoding half of `neat data prepare`.

Byte and char tokenizers have a vectorised numpy encoder here (`array_encoder`) that runs at
memory speed in the calling process: shipping text to another process would cost more than
encoding it. Any other tokenizer is called per text, or per task with `encode_batch`.
Each document ends with the tokenizer's end-of-text id (when it has one), except a piece of a
large file that the next piece continues. With prompt/response data (documents carrying
`metadata["segments"] = [(text, trained), ...]`) a parallel uint8 mask marks the tokens that
are training targets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neat.data.tokenizers import ByteTokenizer, CharTokenizer
from neat.errors import DataError
from neat.interfaces import Document, ITokenizer

__all__ = [
    "MIN_TASK_CHARS",
    "TASK_CHARS",
    "TASK_DOCUMENTS",
    "Counts",
    "Encoded",
    "Encoder",
    "Item",
    "array_encoder",
    "task_chars",
    "tasks",
]

TASK_CHARS = 4 << 20  # at most this much text per task (one unit of work for a worker)
MIN_TASK_CHARS = 256 << 10  # at least this much, so a task outweighs its sending
TASK_DOCUMENTS = 4096  # and at most this many documents

Segments = list[tuple[str, bool]]
Item = tuple[str | Segments, bool]  # (text, or (text, trained) segments), end with eot?
Encoded = tuple[np.ndarray, np.ndarray | None, int]  # tokens, mask, UTF-8 bytes
ArrayEncoder = Callable[[Sequence[str]], list[np.ndarray]]


def _byte_arrays(texts: Sequence[str]) -> list[np.ndarray]:
    return [np.frombuffer(text.encode("utf-8"), dtype=np.uint8) for text in texts]


class _CharArrays:
    """CharTokenizer.encode as a table lookup over code points (ASCII: over bytes)."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        self.tokenizer = tokenizer
        n = len(tokenizer.chars)  # ids of characters; an end-of-text id, if any, is n
        dtype = np.uint16 if n + 1 < 1 << 16 else np.uint32
        points = np.array([ord(c) for c in tokenizer.chars], dtype=np.int64)
        # Unknown characters map to n, an id no character has: one max() finds them.
        self.table = np.full(int(points.max(initial=0)) + 2, n, dtype=dtype)
        self.table[points] = np.arange(n, dtype=dtype)
        self.ascii = np.full(128, n, dtype=dtype)
        low = points[points < 128]
        self.ascii[low] = self.table[low]
        # Small vocabularies (ids and the unknown marker fit a byte): bytes.translate maps
        # ASCII text at memory speed.
        self.translate = bytes(self.ascii.tolist() + [n] * 128) if n < 255 else None
        self.unknown = n

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        out = []
        for text in texts:
            ids: np.ndarray
            if text.isascii():  # O(1) in CPython; then one byte per character
                raw = text.encode("ascii")
                if self.translate is not None:
                    ids = np.frombuffer(raw.translate(self.translate), dtype=np.uint8)
                else:
                    ids = self.ascii[np.frombuffer(raw, dtype=np.uint8)]
            else:
                points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
                ids = np.take(self.table, points, mode="clip")
            if ids.size and int(ids.max()) >= self.unknown:
                self.tokenizer.encode(text)  # raises the DataError that names the characters
                raise DataError("text has characters outside the char tokenizer's vocabulary")
            out.append(ids)
        return out


def array_encoder(tokenizer: ITokenizer) -> ArrayEncoder | None:
    """A vectorised `texts -> [ids array]` for the built-in byte and char tokenizers (exact
    types only: a subclass may encode differently), else None."""
    if type(tokenizer) is ByteTokenizer:
        return _byte_arrays
    if type(tokenizer) is CharTokenizer:
        return _CharArrays(tokenizer)
    return None


def generic_encoder(tokenizer: ITokenizer) -> ArrayEncoder:
    encode_batch = getattr(tokenizer, "encode_batch", None)
    if callable(encode_batch):
        return lambda texts: [np.asarray(ids, dtype=np.int64) for ids in encode_batch(texts)]
    return lambda texts: [np.asarray(tokenizer.encode(t), dtype=np.int64) for t in texts]


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Encoder:
    """Turns a task (documents) into one token array, its mask and its byte count."""

    def __init__(self, tokenizer: ITokenizer, dtype: np.dtype[Any], masked: bool) -> None:
        fast = array_encoder(tokenizer)
        # The vectorised encoders only produce ids inside the vocabulary; others are checked.
        self.trusted = fast is not None
        self.arrays = fast or generic_encoder(tokenizer)
        self.vocab_size = tokenizer.vocab_size
        self.dtype = dtype
        self.masked = masked
        self.eot = tokenizer.eot_id

    def __call__(self, items: Sequence[Item]) -> Encoded:
        texts: list[str] = []
        layout: list[tuple[list[bool], bool]] = []
        for content, end in items:
            if isinstance(content, str):
                texts.append(content)
                layout.append(([True], end))
            else:
                texts.extend(text for text, _ in content)
                layout.append(([trained for _, trained in content], end))
        arrays = self.arrays(texts)
        n_bytes = sum(_utf8_len(t) for t in texts)
        eot = self.eot
        total = sum(len(a) for a in arrays)
        if eot is not None:
            total += sum(end for _, end in layout)
        # One output array, filled in place: no intermediate concatenation or wide copy.
        tokens = np.empty(total, dtype=self.dtype if self.trusted else np.int64)
        mask = np.empty(total, dtype=np.uint8) if self.masked else None
        at = i = 0
        for trained, end in layout:
            for flag in trained:
                n = len(arrays[i])
                tokens[at : at + n] = arrays[i]
                if mask is not None:
                    mask[at : at + n] = flag
                at += n
                i += 1
            if end and eot is not None:
                tokens[at] = eot
                if mask is not None:  # learn to stop after a trained part, not after a prompt
                    mask[at] = not trained or trained[-1]
                at += 1
        if not self.trusted and total:
            low, high = int(tokens.min()), int(tokens.max())
            if low < 0 or high >= self.vocab_size:
                raise DataError(
                    f"the tokenizer produced id {low if low < 0 else high}, outside its "
                    f"vocabulary of {self.vocab_size}; is its vocab_size right?"
                )
            tokens = tokens.astype(self.dtype)
        return tokens, mask, n_bytes


# -- documents -> tasks ----------------------------------------------------------------------------


@dataclass
class Counts:
    """Documents (ended with end-of-text) and pieces (all, continued ones too) seen."""

    documents: int = 0
    pieces: int = 0


def task_chars(total_bytes: int, workers: int) -> int:
    """Tasks small enough that every worker gets several, within [MIN_, TASK_CHARS]."""
    if total_bytes <= 0 or workers <= 1:
        return TASK_CHARS
    return max(MIN_TASK_CHARS, min(TASK_CHARS, total_bytes // (4 * workers)))


def tasks(
    documents: Iterator[Document], masked: bool, counts: Counts, chars_per_task: int = TASK_CHARS
) -> Iterator[list[Item]]:
    """Documents grouped into tasks of about `chars_per_task` characters (the unit of work of
    a worker, and of one write), counting them into `counts` as they pass."""
    task: list[Item] = []
    chars = 0
    for doc in documents:
        end = not doc.metadata.get("continued", False)
        counts.pieces += 1
        counts.documents += end
        content: str | Segments = doc.text
        if masked:
            segments = doc.metadata.get("segments")
            content = [(t, bool(k)) for t, k in segments] if segments else [(doc.text, True)]
        task.append((content, end))
        chars += len(doc.text)
        if chars >= chars_per_task or len(task) >= TASK_DOCUMENTS:
            yield task
            task, chars = [], 0
    if task:
        yield task
