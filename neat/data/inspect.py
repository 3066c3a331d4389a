"""What a prepared corpus holds (`neat data inspect`): counts, shards and decoded samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from neat.interfaces import IDataSource, ITokenizer

if TYPE_CHECKING:
    from neat.data.prepare import PreparedData

EOT_MARK = "<|eot|>"  # how an end-of-text token shows in a sample
SAMPLE_CHARS = 200
_SAMPLE_TOKENS = 400


def _decode(tokenizer: ITokenizer, ids: np.ndarray) -> str:
    """Decoded text with each end-of-text id shown as EOT_MARK (documents stay visible)."""
    eot = tokenizer.eot_id
    values = [int(i) for i in ids]
    if eot is None:
        return tokenizer.decode(values)
    pieces: list[list[int]] = [[]]
    for value in values:
        if value == eot:
            pieces.append([])
        else:
            pieces[-1].append(value)
    return EOT_MARK.join(tokenizer.decode(piece) for piece in pieces)


def _samples(
    tokenizer: ITokenizer, entry: PreparedData, part: int, count: int
) -> list[dict[str, Any]]:
    """`count` windows spread evenly over the entry, first SAMPLE_CHARS characters each."""
    total = entry.num_tokens
    if count <= 0 or total == 0:
        return []
    width = min(_SAMPLE_TOKENS, total)
    positions = sorted({int(p) for p in np.linspace(0, total - width, count)})
    bounds = np.cumsum([0] + [len(s) for s in entry.shards])
    found = []
    for position in positions:
        shard = int(np.searchsorted(bounds, position, side="right")) - 1
        start = position - int(bounds[shard])
        tokens = entry.shards[shard].tokens[start : start + width]  # to the shard's end at most
        sample: dict[str, Any] = {
            "part": part,
            "position": position,
            "text": _decode(tokenizer, tokens)[:SAMPLE_CHARS],
        }
        mask = entry.shards[shard].mask
        if mask is not None:
            window = mask[start : start + len(tokens)]
            sample["trained_fraction"] = round(float(window.mean()) if len(window) else 0.0, 4)
        found.append(sample)
    return found


def _part_summary(entry: PreparedData, weight: float) -> dict[str, Any]:
    m = entry.manifest
    tokens = entry.num_tokens
    return {
        "source": m.get("source"),
        "weight": weight,
        "key": entry.key,
        "path": str(entry.path),
        "documents": entry.documents,
        "bytes": entry.num_bytes,
        "tokens": tokens,
        "bytes_per_token": round(entry.num_bytes / tokens, 4) if tokens else None,
        "trained_tokens": m.get("trained_tokens", tokens),
        "shards": len(entry.shards),
        "dtype": m.get("dtype"),
        "has_mask": entry.has_mask,
        "data_format": m.get("data_format"),
        "read_report": m.get("read_report"),
        "created": m.get("created"),
    }


def inspect_data(
    source: IDataSource,
    tokenizer: ITokenizer,
    prepared: PreparedData | Sequence[PreparedData] | Sequence[tuple[PreparedData, float]],
    samples: int = 3,
) -> dict[str, Any]:
    """A JSON-ready summary of prepared data: totals, one entry per part, and `samples`
    decoded windows per part (what `prepare_source` / `prepare_parts` returned)."""
    from neat.data.prepare import PreparedData

    if isinstance(prepared, PreparedData):
        entries: list[tuple[PreparedData, float]] = [(prepared, 1.0)]
    else:
        entries = [e if isinstance(e, tuple) else (e, 1.0) for e in prepared]
    parts = [_part_summary(entry, weight) for entry, weight in entries]
    documents = sum(p["documents"] for p in parts)
    num_bytes = sum(p["bytes"] for p in parts)
    tokens = sum(p["tokens"] for p in parts)
    found = []
    for i, (entry, _) in enumerate(entries):
        found.extend(_samples(tokenizer, entry, i, samples))
    reports = [p["read_report"]["summary"] for p in parts if p["read_report"]]
    return {
        "source": source.describe(),
        "tokenizer": {
            "type": type(tokenizer).__name__,
            "vocab_size": tokenizer.vocab_size,
            "eot_id": tokenizer.eot_id,
            "fingerprint": tokenizer.fingerprint()[:16],
        },
        "documents": documents,
        "bytes": num_bytes,
        "tokens": tokens,
        "bytes_per_token": round(num_bytes / tokens, 4) if tokens else None,
        "trained_tokens": sum(p["trained_tokens"] for p in parts),
        "shards": sum(p["shards"] for p in parts),
        "has_mask": any(p["has_mask"] for p in parts),
        "read_report": "; ".join(reports) if reports else None,
        "parts": parts,
        "samples": found,
    }
