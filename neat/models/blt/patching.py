"""Entropy patching for the Byte Latent Transformer (Pagnoni et al., arXiv 2412.09871, §2.3).

A small frozen byte LM (a neat GPT trained with the byte tokenizer: vocab 257, id 256 = end of
text) scores every byte by the entropy of its next-byte prediction; a patch starts where that
entropy is high (the global rule) or jumps up (the approximate monotonic rule). The rules follow
facebookresearch/blt `bytelatent/data/patcher.py` (`entropy`, `find_entropy_patch_start_ids`,
`split_large_numbers`); the code here is our own.

Conventions, all in nats (natural log, as `patcher.py` computes it; the paper's thresholds are
in nats):

- ``H[i]`` is the entropy of ``p(x_i | x_<i)``, the prediction FOR byte ``i``. ``H[0]`` is
  predicted from the end-of-text id alone (our BOS). The reference prepends BOS to the bytes and
  always starts patches at positions 0 (BOS) and 1; without a BOS in the sequence that is our
  position 0.
- Global rule: byte ``t >= 1`` starts a patch iff ``H[t] > θ``. Monotonic rule: iff
  ``H[t] - H[t-1] > θ``. Byte 0 always starts one.
- Every ``H[i]`` depends on ``x_<i`` only (a causal model and a window fixed per position), so
  patching a prefix gives the prefix of the patching (§2.4), as long as θ is fixed. Calibrating
  θ on the text being patched (``patch(..., target_patch_size=...)``) reads the whole text.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BYTE_VOCAB_SIZE",
    "EOT_ID",
    "Mode",
    "Patching",
    "boundaries",
    "calibrate_threshold",
    "global_boundaries",
    "monotonic_boundaries",
    "next_byte_entropies",
    "patch",
    "patch_lengths",
    "split_long_patches",
    "word_start_fraction",
    "word_starts",
]

Mode = Literal["global", "monotonic"]
MODES: tuple[Mode, ...] = ("global", "monotonic")
BYTE_VOCAB_SIZE = 257  # neat's ByteTokenizer: 256 byte values + end of text
EOT_ID = 256


# -- entropies -------------------------------------------------------------------------------------


def next_byte_entropies(
    model: nn.Module,
    byte_ids: torch.Tensor | Sequence[int],
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 16,
    include_next: bool = False,
) -> torch.Tensor:
    """Entropy in nats of the model's next-byte distribution (all 257 outcomes, end of text
    included) for every byte: ``H[..., i] = H(p(x_i | context_i))``.

    The model reads ``s = [EOT] + x`` in chunks of ``window`` ids that start every ``stride``
    ids (default ``window // 2``); chunk 0 scores its ids 0..window-1, every later chunk only
    its last ``stride``. So byte ``i`` sees the ``i`` bytes before it (and EOT) while
    ``i < window``, and afterwards the last ``window - stride + 1`` to ``window`` bytes before
    it, a number fixed by ``i`` alone: the causality BLT's incremental patching needs, with one
    forward per chunk rather than per byte. ``window`` defaults to ``model.block_size``.

    1-D input (bytes, or a tensor or list of ids 0..256: end of text between documents)
    gives shape ``(L,)``, ``(B, L)`` gives ``(B, L)``; float32 on the CPU. `include_next` adds
    ``H[..., L]``, the entropy of the byte after the input (whether it starts a patch).
    """
    if isinstance(byte_ids, bytes | bytearray):
        byte_ids = list(byte_ids)
    ids = torch.as_tensor(byte_ids, dtype=torch.long).cpu()
    if ids.dim() not in (1, 2):
        raise ValueError(f"byte_ids must be 1-D or 2-D, got shape {tuple(ids.shape)}")
    rows = ids.unsqueeze(0) if ids.dim() == 1 else ids
    if rows.numel() and (rows.min() < 0 or rows.max() > EOT_ID):
        raise ValueError(f"byte_ids must be ids of the byte vocabulary, 0..{EOT_ID}")
    window, stride = _window_and_stride(model, window, stride)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # The ids the model reads: position i of `inputs` predicts byte i.
    bos = torch.full((rows.shape[0], 1), EOT_ID)
    inputs = torch.cat([bos, rows if include_next else rows[:, :-1]], dim=1)
    if rows.shape[1] == 0 and not include_next:
        inputs = inputs[:, :0]
    entropies = _chunked_entropies(model, inputs, window, stride, batch_size)
    return entropies[0] if ids.dim() == 1 else entropies


def _window_and_stride(model: nn.Module, window: int | None, stride: int | None) -> tuple[int, int]:
    block_size = getattr(model, "block_size", None)
    if window is None:
        if block_size is None:
            raise ValueError("pass window: the model has no block_size")
        window = int(block_size)
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    if block_size is not None and window > int(block_size):
        raise ValueError(f"window {window} exceeds the entropy model's block_size {block_size}")
    stride = window // 2 if stride is None else stride
    if not 1 <= stride < window:
        raise ValueError(f"stride must be in 1..window-1 ({window - 1}), got {stride}")
    return window, stride


def _chunked_entropies(
    model: nn.Module, inputs: torch.Tensor, window: int, stride: int, batch_size: int
) -> torch.Tensor:
    batch, length = inputs.shape
    if length == 0:
        return torch.zeros(batch, 0)
    n_chunks = 1 + max(0, -(-(length - window) // stride))
    padded_len = (n_chunks - 1) * stride + window
    # Right padding cannot change earlier positions of a causal model, and with one chunk
    # length a prefix and the whole text run the same per-chunk computation.
    inputs = F.pad(inputs, (0, padded_len - length), value=EOT_ID)
    chunks = inputs.unfold(1, window, stride).reshape(-1, window)  # (B * n_chunks, window)
    scores = torch.cat([_entropies(model, part) for part in torch.split(chunks, batch_size)])
    scores = scores.view(batch, n_chunks, window)
    kept = torch.cat([scores[:, 0], scores[:, 1:, window - stride :].reshape(batch, -1)], dim=1)
    return kept[:, :length]


def _entropies(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Entropy of every position's predicted distribution, computed in float32."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():  # not inference_mode: results may enter a caller's graph
            out = model(ids.to(device))
            logits = out["logits"] if isinstance(out, dict) else out
            logp = torch.log_softmax(logits.float(), dim=-1)
            p = logp.exp()
            entropy = -torch.where(p > 0, p * logp, 0.0).sum(dim=-1)  # 0·log 0 = 0
    finally:
        model.train(was_training)
    return entropy.cpu()


# -- boundary rules --------------------------------------------------------------------------------


def _rule_scores(entropies: torch.Tensor, mode: Mode) -> torch.Tensor:
    """What the threshold is compared with at bytes 1..L-1, in float64 so that a calibrated
    threshold between two float32 scores separates them exactly."""
    h = entropies.to(torch.float64)
    if mode == "global":
        return h[..., 1:]
    if mode == "monotonic":
        return h[..., 1:] - h[..., :-1]
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def boundaries(
    entropies: torch.Tensor,
    threshold: float,
    mode: Mode = "global",
    *,
    max_patch_length: int | None = None,
) -> torch.Tensor:
    """Patch starts (a bool mask shaped like `entropies`) under `mode`'s rule."""
    if entropies.shape[-1] == 0:
        return torch.zeros(entropies.shape, dtype=torch.bool)
    above = _rule_scores(entropies, mode) > threshold
    first = torch.ones((*entropies.shape[:-1], 1), dtype=torch.bool)
    starts = torch.cat([first, above.cpu()], dim=-1)
    return starts if max_patch_length is None else split_long_patches(starts, max_patch_length)


def global_boundaries(
    entropies: torch.Tensor, threshold: float, *, max_patch_length: int | None = None
) -> torch.Tensor:
    """A patch starts at byte t iff H[t] > θ (paper §2.3, "global constraint"); byte 0 always."""
    return boundaries(entropies, threshold, "global", max_patch_length=max_patch_length)


def monotonic_boundaries(
    entropies: torch.Tensor, threshold: float, *, max_patch_length: int | None = None
) -> torch.Tensor:
    """A patch starts at byte t iff H[t] - H[t-1] > θ (paper §2.3, "approximate monotonic
    constraint": a patch ends where entropy stops decreasing); byte 0 always."""
    return boundaries(entropies, threshold, "monotonic", max_patch_length=max_patch_length)


def split_long_patches(starts: torch.Tensor, max_patch_length: int) -> torch.Tensor:
    """Add starts so that no patch is longer than `max_patch_length`: a patch of n bytes
    becomes pieces of max_patch_length and a remainder, as `split_large_numbers` does. Each
    added start depends on earlier starts only, so patching stays incremental."""
    if max_patch_length < 1:
        raise ValueError(f"max_patch_length must be >= 1, got {max_patch_length}")
    if starts.shape[-1] == 0:
        return starts.clone()
    position = torch.arange(starts.shape[-1]).expand_as(starts)
    last_start = torch.where(starts, position, torch.zeros_like(position)).cummax(dim=-1).values
    return starts | ((position - last_start) % max_patch_length == 0)


def patch_lengths(starts: torch.Tensor) -> list[int]:
    """Lengths of the patches a 1-D start mask describes; they sum to its length."""
    if starts.dim() != 1:
        raise ValueError(f"starts must be 1-D, got shape {tuple(starts.shape)}")
    if starts.numel() == 0:
        return []
    if not bool(starts[0]):
        raise ValueError("byte 0 must start a patch")
    positions = torch.nonzero(starts).flatten()
    ends = torch.cat([positions[1:], torch.tensor([starts.numel()])])
    return [int(n) for n in ends - positions]


# -- calibration -----------------------------------------------------------------------------------


def calibrate_threshold(
    entropies: torch.Tensor, target_patch_size: float, mode: Mode = "global"
) -> float:
    """The threshold whose mean patch size (bytes / patches over all rows) on `entropies` is
    the closest achievable to `target_patch_size` (paper §4.3 calibrates θ this way on a sample
    of the training data). Exact, by sorting: j scores above θ give rows + j patches, and θ is
    the midpoint between the j-th and (j+1)-th largest scores. Ignores `max_patch_length`."""
    if target_patch_size < 1.0:
        raise ValueError(f"target_patch_size must be >= 1, got {target_patch_size}")
    if entropies.shape[-1] == 0:
        raise ValueError("cannot calibrate on an empty sequence")
    rows = math.prod(entropies.shape[:-1])
    total = rows * entropies.shape[-1]
    scores = _rule_scores(entropies, mode).flatten().sort(descending=True).values
    if scores.numel() == 0:
        return 0.0
    # j = number of scores above θ; only j where the j-th and (j+1)-th scores differ are
    # achievable, plus none and all.
    j = torch.arange(scores.numel() + 1)
    achievable = torch.ones_like(j, dtype=torch.bool)
    achievable[1:-1] = scores[:-1] > scores[1:]
    mean_size = total / (rows + j.to(torch.float64))
    error = torch.where(achievable, (mean_size - target_patch_size).abs(), math.inf)
    best = int(error.argmin())
    if best == 0:
        return float(scores[0])
    if best == scores.numel():
        return float(scores[-1]) - 1.0
    return float((scores[best - 1] + scores[best]) / 2)


# -- the whole pipeline ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Patching:
    """A byte string cut into patches, with everything that decided the cuts."""

    data: bytes
    entropies: torch.Tensor  # (L,) float32, nats: H[i] = H(p(x_i | x_<i))
    starts: torch.Tensor  # (L,) bool
    lengths: list[int]
    threshold: float
    mode: Mode

    @property
    def num_patches(self) -> int:
        return len(self.lengths)

    @property
    def mean_patch_size(self) -> float:
        return len(self.data) / len(self.lengths) if self.lengths else 0.0

    @property
    def patches(self) -> list[bytes]:
        offsets = [0, *itertools.accumulate(self.lengths)]
        return [self.data[a:b] for a, b in itertools.pairwise(offsets)]


def patch(
    text_or_bytes: str | bytes,
    model: nn.Module,
    threshold: float | None = None,
    target_patch_size: float | None = None,
    mode: Mode = "global",
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 16,
    max_patch_length: int | None = None,
) -> Patching:
    """Cut UTF-8 text (or raw bytes) into entropy patches with a fixed `threshold`, or with
    the one calibrated on this text to give `target_patch_size` bytes per patch."""
    if (threshold is None) == (target_patch_size is None):
        raise ValueError("give exactly one of threshold and target_patch_size")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    data = text_or_bytes.encode("utf-8") if isinstance(text_or_bytes, str) else text_or_bytes
    entropies = next_byte_entropies(
        model, data, window=window, stride=stride, batch_size=batch_size
    )
    if threshold is None:
        assert target_patch_size is not None
        threshold = calibrate_threshold(entropies, target_patch_size, mode)
    starts = boundaries(entropies, threshold, mode, max_patch_length=max_patch_length)
    return Patching(data, entropies, starts, patch_lengths(starts), threshold, mode)


# -- diagnostics -----------------------------------------------------------------------------------


def word_starts(data: str | bytes) -> torch.Tensor:
    """Bytes that begin a word: the first byte, any byte after whitespace, and a letter after
    a non-letter ("'tis" has two: the quote and the t). Bytes >= 0x80 count as letters."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if not raw:
        return torch.zeros(0, dtype=torch.bool)
    values = torch.tensor(list(raw), dtype=torch.long)
    letter = torch.tensor([chr(b).isalpha() or b >= 0x80 for b in range(256)])[values]
    space = torch.tensor([chr(b).isspace() and b < 0x80 for b in range(256)])[values]
    starts = torch.zeros(len(raw), dtype=torch.bool)
    starts[0] = True
    starts[1:] = space[:-1] | (letter[1:] & ~letter[:-1])
    return starts


def word_start_fraction(data: str | bytes, starts: torch.Tensor) -> float:
    """The share of patch starts that fall at word starts: how well an entropy model's cuts
    line up with words, for which it was never told where words are."""
    at_word = word_starts(data)
    if at_word.shape != starts.shape:
        raise ValueError(f"starts has shape {tuple(starts.shape)}, the data {tuple(at_word.shape)}")
    n = int(starts.sum())
    return int((starts & at_word).sum()) / n if n else 0.0
