"""The passkey benchmark's data: shapes, the supervised digits at the end equal the needle's,
one needle per row before the query, depths vary, and a seed fixes the batch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from neat.models.gpt import IGNORE_INDEX

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "passkey.py"
BATCH, SEQ_LEN, N_DIGITS, VOCAB = 64, 96, 5, 32


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("passkey_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


passkey = _load()


def _batch(seed: int = 0, seq_len: int = SEQ_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x, y = passkey.passkey_batch(BATCH, seq_len, N_DIGITS, gen, VOCAB)
    return x, y


def _needle_starts(x: torch.Tensor) -> torch.Tensor:
    """Position of the key marker in each row (asserting there is exactly one)."""
    marks: torch.Tensor = x == passkey.KEY_MARK
    assert (marks.sum(dim=1) == 1).all()
    return marks.int().argmax(dim=1)


def test_shapes_and_dtypes() -> None:
    x, y = _batch()
    assert x.shape == y.shape == (BATCH, SEQ_LEN)
    assert x.dtype == y.dtype == torch.long
    assert int(x.min()) >= 0 and int(x.max()) < VOCAB


def test_exactly_the_last_n_digits_are_supervised() -> None:
    _, y = _batch()
    supervised = y != IGNORE_INDEX
    assert (supervised.sum(dim=1) == N_DIGITS).all()
    assert supervised[:, -N_DIGITS:].all()
    assert ((y[:, -N_DIGITS:] >= 0) & (y[:, -N_DIGITS:] < passkey.N_DIGITS)).all()


def test_query_then_teacher_forced_digits_end_the_inputs() -> None:
    x, y = _batch()
    assert (x[:, -N_DIGITS] == passkey.QUERY_MARK).all()
    # The input after the query marker is each digit, the target is the next one.
    assert torch.equal(x[:, -N_DIGITS + 1 :], y[:, -N_DIGITS:-1])
    assert ((x[:, :-N_DIGITS] == passkey.QUERY_MARK).sum(dim=1) == 0).all()


def test_targets_are_the_needle_digits_and_the_needle_occurs_once() -> None:
    x, y = _batch()
    before_query = x[:, :-N_DIGITS]
    starts = _needle_starts(before_query)
    offsets = starts[:, None] + 1 + torch.arange(N_DIGITS)
    assert (offsets < before_query.shape[1]).all()
    assert torch.equal(before_query.gather(1, offsets), y[:, -N_DIGITS:])
    # Digits appear nowhere else before the query: the filler has none.
    is_digit = before_query < passkey.N_DIGITS
    assert (is_digit.sum(dim=1) == N_DIGITS).all()
    others = before_query.clone()
    others.scatter_(1, torch.cat([starts[:, None], offsets], dim=1), passkey.FILLER_START)
    assert (others >= passkey.FILLER_START).all()


def test_needle_depth_varies_and_spans_the_haystack() -> None:
    x, _ = _batch(seq_len=256)
    starts = _needle_starts(x[:, :-N_DIGITS])
    assert len(set(starts.tolist())) > BATCH // 2
    assert int(starts.min()) < 256 // 4 and int(starts.max()) > 3 * 256 // 4


def test_same_seed_same_batch() -> None:
    x0, y0 = _batch(seed=3)
    x1, y1 = _batch(seed=3)
    x2, _ = _batch(seed=4)
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert not torch.equal(x0, x2)


def test_shortest_sequence_and_too_short() -> None:
    x, y = _batch(seq_len=2 * N_DIGITS + 1)
    assert torch.equal(x[:, 1 : N_DIGITS + 1], y[:, -N_DIGITS:])
    with pytest.raises(ValueError, match="too short"):
        _batch(seq_len=2 * N_DIGITS)
