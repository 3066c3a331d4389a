"""Small typed records passed between components."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, slots=True)
class Document:
    """One unit of text from a data source; `source` names where it came from (a path, a URI)."""

    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Batch:
    """Token ids of shape (batch, seq) and next-token targets of the same shape.

    A batch of prompts (for an objective that samples answers, e.g. reinforce) sets
    `prompt_lengths` (batch,): `input_ids` then holds the prompts right-padded, and `targets`
    the reference answers right-padded with -100, each row's width its own. An image model
    (`model.type: vq`) gets uint8 images (batch, H, W, 3) in `input_ids` and the cells' tile
    codes in `targets`. `problems` holds a prompt batch's problem records, which rewards
    score sampled answers against."""

    input_ids: torch.Tensor
    targets: torch.Tensor
    prompt_lengths: torch.Tensor | None = None
    problems: tuple[Any, ...] | None = None


@dataclass(slots=True)
class TrainState:
    """Everything besides model and optimizer tensors that exact resume needs."""

    step: int = 0
    tokens_seen: int = 0
    data_state: dict[str, Any] = field(default_factory=dict)
    rng_state: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    best_val_loss: float | None = None
    tracker: dict[str, Any] = field(default_factory=dict)  # early stopping and the best step


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One ranked result of a document search."""

    path: str
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int
    score: float
    snippet: str
