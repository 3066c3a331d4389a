"""The roles of the pipeline. The trainer and the container only talk to these.

Interfaces are `typing.Protocol`s: a user's class fits a role by having the methods, no
inheritance needed (a plain `nn.Module` with the right `forward` is a model).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from neat.interfaces.records import Batch, Document, SearchHit, TrainState

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "Batch",
    "Document",
    "IBatchSource",
    "ICheckpointer",
    "IDataSource",
    "IDocumentIndexer",
    "IEmbedder",
    "IEvaluator",
    "IFileSource",
    "IFormattedSource",
    "IMeasuredModel",
    "IMixtureSource",
    "IModel",
    "IMonitor",
    "IObjective",
    "IOptimizerFactory",
    "IReadReport",
    "ITokenizer",
    "ITrainer",
    "SearchHit",
    "TrainState",
]


@runtime_checkable
class IDataSource(Protocol):
    """Yields documents; its fingerprint changes whenever the content does (cache key)."""

    def documents(self) -> Iterator[Document]: ...

    def fingerprint(self) -> str: ...

    def describe(self) -> str: ...


@runtime_checkable
class IMixtureSource(Protocol):
    """A source made of weighted parts, each prepared and sampled on its own."""

    @property
    def parts(self) -> Sequence[tuple[IDataSource, float]]: ...


@runtime_checkable
class IFormattedSource(Protocol):
    """A source that says its data format: `prompt_response` documents carry the segments
    the token cache keeps as a loss mask."""

    @property
    def format(self) -> str: ...


class IReadReport(Protocol):
    """What reading files found: skipped binaries, lossy decodes, malformed lines."""

    undecodable: list[str]
    replaced: list[str]
    bad_lines: list[str]

    def summary(self) -> str: ...


@runtime_checkable
class IFileSource(Protocol):
    """A source that reads files: their paths (for progress) and what reading them found."""

    @property
    def files(self) -> Sequence[Path]: ...

    @property
    def report(self) -> IReadReport: ...


@runtime_checkable
class IBatchSource(Protocol):
    """Batches in a resumable order: `state_dict` is the position, `load_state_dict` goes
    back to it (a sampler, a prefetching or refreshing wrapper, random benchmark data)."""

    def next_batch(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class ITokenizer(Protocol):
    """Text <-> token ids. `token_bytes` gives the UTF-8 length of each id, for bits per byte."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def eot_id(self) -> int | None: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def token_bytes(self) -> list[int]: ...

    def fingerprint(self) -> str: ...

    def save(self, path: Path) -> None: ...


@runtime_checkable
class IModel(Protocol):
    """A causal LM: `forward(input_ids, targets=None)` returns a mapping with `logits` and
    `loss`. Any `torch.nn.Module` with that forward fits."""

    training: bool

    def __call__(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> Mapping[str, Any]: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...


@runtime_checkable
class IMeasuredModel(Protocol):
    """A model that knows its size and training FLOPs per token: MFU is reported for it."""

    def num_params(self) -> int: ...

    def flops_per_token(self, seq_len: int) -> float: ...


@runtime_checkable
class IOptimizerFactory(Protocol):
    """Builds the optimizer for a model and says the learning rate at each step."""

    def create(self, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer: ...

    def lr_at(self, step: int) -> float: ...


@runtime_checkable
class ITrainer(Protocol):
    """Runs training to the end (or to an interruption) and returns the final state.
    `restore` loads the resume point (or seeds) first, so its errors come before any write."""

    def restore(self) -> TrainState: ...

    def fit(self) -> TrainState: ...


@runtime_checkable
class IObjective(Protocol):
    """What one training step minimises on a batch: the next-token loss, or a reward on
    sampled answers. `metrics` returns its own figures since the last call (host floats, e.g.
    the mean reward), logged beside the loss."""

    def loss(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor: ...

    def metrics(self) -> dict[str, float]: ...


@runtime_checkable
class IEvaluator(Protocol):
    """Scores a model on held-out data; the same batches every call, so numbers compare."""

    def evaluate(self, model: IModel) -> dict[str, float]: ...


@runtime_checkable
class ICheckpointer(Protocol):
    """Saves and restores training atomically; never loads an incomplete checkpoint.
    Retention never deletes the checkpoint directory named `protected` (the best one)."""

    protected: str | None

    def save(
        self,
        state: TrainState,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        extra_files: Mapping[str, Path] | None = None,
    ) -> Path: ...

    def latest(self) -> Path | None: ...

    def load(
        self,
        path: Path,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> TrainState: ...


@runtime_checkable
class IMonitor(Protocol):
    """Receives events from the bus; must never change training state."""

    def on_event(self, event: object) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class IEmbedder(Protocol):
    """Turns texts into unit-length vectors for dense search.

    Optional members, looked up with `getattr` (an embedder without them still works):
    `fingerprint` (str), the identity stored vectors are valid for; `max_tokens` (int), the
    most tokens of a text it reads, and `token_count(texts) -> list[int]`, each text's length
    in those tokens (special tokens not counted). With both, the indexer splits chunks over
    the limit rather than let `embed` truncate them, and counts any piece it cannot split.
    """

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class IDocumentIndexer(Protocol):
    """Keeps a searchable index of a document tree current, and serves its documents to
    training from one consistent snapshot. `db` is where the index lives."""

    db: Path

    def build(self, paths: Sequence[Path] = ()) -> Mapping[str, Any]: ...

    def search(self, query: str, k: int = 10, mode: str | None = None) -> list[SearchHit]: ...

    def stats(self) -> Mapping[str, Any]: ...

    def documents(
        self, unit: Literal["file", "chunk"] = "file", *, roots: Sequence[Path] | None = None
    ) -> Iterator[Document]: ...

    def fingerprint(self, *, roots: Sequence[Path] | None = None) -> str: ...
