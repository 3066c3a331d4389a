"""What a component's builder may use besides its own config section, per section.

Each context is small and typed, so a builder's signature says exactly what it depends on
(the container fills it from the other sections and the components built before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from neat.interfaces import IDataSource

if TYPE_CHECKING:
    import torch
    from rich.console import Console

    from neat.config.indexing import IndexingConfig
    from neat.data.pipeline import TokenData

__all__ = [
    "EvaluatorContext",
    "ModelContext",
    "MonitorContext",
    "OptimizerContext",
    "SourceContext",
    "TokenizerContext",
]


@dataclass(frozen=True)
class ModelContext:
    """`vocab_size`: the model's vocabulary (the tokenizer's, or `model.vocab_size`)."""

    vocab_size: int


@dataclass(frozen=True)
class SourceContext:
    """`format`: `data.format`; `indexing`: the index settings a markdown source reads by."""

    format: Literal["text", "prompt_response"]
    indexing: IndexingConfig


@dataclass(frozen=True)
class TokenizerContext:
    """The corpus a tokenizer is fitted on, and where fitted tokenizers are cached."""

    source: IDataSource
    cache_dir: Path


@dataclass(frozen=True)
class OptimizerContext:
    """`max_steps`: the default length of the LR schedule's decay."""

    max_steps: int


@dataclass(frozen=True)
class EvaluatorContext:
    """The prepared data (its val splits and tokenizer), the context length, one rank's
    share of the training batch (a size known to fit), and where and how to run."""

    token_data: TokenData
    block_size: int
    batch_size: int
    device: torch.device
    precision: str


@dataclass(frozen=True)
class MonitorContext:
    """The run directory to write in, the console shared with logs, the progress bar mode."""

    run_dir: Path
    console: Console
    progress_mode: str
