"""A parameter-matched GPT baseline for any model config.

A new architecture's val_bpb means little alone: the fair comparison is a plain GPT with the
same parameter count, context, data and training budget. `matched_baseline` builds that
config; `neat baseline` prints and writes it. Counts come from building the models on the
meta device, which records shapes only, so they work for any registered model type (and any
size) without knowing how each type lays out its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from neat.config import ExperimentConfig, ModelConfig, build, validate_config
from neat.errors import ConfigError
from neat.interfaces.contexts import ModelContext, TokenizerContext
from neat.models.gpt import GPTConfig

__all__ = ["BaselineMatch", "count_params", "matched_baseline", "vocab_size_of"]

DEFAULT_DEPTH = 4
DEFAULT_HEADS = 4
MAX_DEPTH = 48


@dataclass(frozen=True)
class BaselineMatch:
    """How close the baseline GPT comes to the model it stands in for, and its shape."""

    target_params: int
    baseline_params: int
    relative_diff: float  # (baseline - target) / target
    n_layer: int
    n_head: int
    n_embd: int


def count_params(model_cfg: ModelConfig, vocab_size: int) -> int:
    """Every parameter tensor of the model `model_cfg` builds, a tied weight once.

    Built on the meta device (shapes only, no memory), as `neat.models.load` checks sizes. A
    builder that must compute on real values there (a BLT calibrating its entropy threshold)
    is built on the CPU instead: slower, but the count is still the model's own.
    """
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            model = build("model", model_cfg, ModelContext(vocab_size=vocab_size))
    except Exception:  # whatever failed there, the CPU build fails with the real reason
        model = _build_on_cpu(model_cfg, vocab_size)
    unique = {id(p): p.numel() for p in model.parameters()}
    return sum(unique.values())


def _build_on_cpu(model_cfg: ModelConfig, vocab_size: int) -> torch.nn.Module:
    try:
        with torch.random.fork_rng(devices=[]):
            model: torch.nn.Module = build("model", model_cfg, ModelContext(vocab_size=vocab_size))
    except Exception as exc:
        raise ConfigError(
            f"cannot build model.type {model_cfg.type} to count its parameters: {exc}"
        ) from exc
    return model


def vocab_size_of(config: ExperimentConfig) -> int:
    """The vocabulary the run's model gets: `model.vocab_size` when set, else the tokenizer's,
    built from the data section as training builds it (a char or BPE tokenizer is fitted on
    the corpus, or found in the token cache): building it writes nothing but caches."""
    if config.model.vocab_size is not None:
        return config.model.vocab_size
    from neat.data import default_cache_dir
    from neat.data.sources import build_data_source

    data = config.data
    source = build_data_source(data, config.indexing)
    cache_dir = Path(data.cache_dir) if data.cache_dir else default_cache_dir()
    tokenizer = build("tokenizer", data.tokenizer, TokenizerContext(source, cache_dir))
    vocab_size: int = tokenizer.vocab_size
    return vocab_size


def matched_baseline(
    config: ExperimentConfig, *, tolerance: float = 0.02, vocab_size: int | None = None
) -> tuple[ExperimentConfig, BaselineMatch]:
    """`config` with its model replaced by a plain GPT of (nearly) the same parameter count.

    Context, dropout, data, tokenizer, optimization, training budget, evaluation, checkpoint
    and monitoring stay as they are, so the two runs differ in architecture alone; finetune and
    mvot go back to their defaults (they address the original model's parts). The GPT keeps
    the model's depth (`n_layer`, else `global_layers`, else 4) and heads (`n_head`, else 4)
    and only its width changes; when no width comes within `tolerance` (relative), the depth
    changes too. `vocab_size` defaults to `vocab_size_of(config)`.
    """
    if tolerance < 0:
        raise ConfigError(f"tolerance must be at least 0, got {tolerance}")
    vocab = vocab_size if vocab_size is not None else vocab_size_of(config)
    target = count_params(config.model, vocab)
    depth = int(getattr(config.model, "n_layer", None) or _global_layers(config.model))
    heads = int(getattr(config.model, "n_head", None) or DEFAULT_HEADS)
    base = _gpt_fields(config.model)
    counter = _GPTCounter(base, heads, vocab)

    shape = _closest_width(counter, depth, target)
    if _relative(counter.count(*shape), target) > tolerance:
        shape = _closest_shape(counter, depth, target)
    n_layer, n_embd = shape
    gpt = GPTConfig(**base, n_layer=n_layer, n_head=heads, n_embd=n_embd)
    found = count_params(gpt, vocab)  # the chosen shape counted by a build, not the formula
    diff = (found - target) / target
    if abs(diff) > tolerance:
        raise ConfigError(
            f"no GPT comes within {tolerance * 100:g}% of the model's {target:,} parameters: the "
            f"closest has {found:,} ({diff:+.2%}; n_layer {n_layer}, n_head {heads}, n_embd "
            f"{n_embd}); raise the tolerance"
        )
    match = BaselineMatch(target, found, diff, n_layer, heads, n_embd)
    return _with_model(config, gpt), match


def _global_layers(model_cfg: ModelConfig) -> int:
    return int(getattr(model_cfg, "global_layers", None) or DEFAULT_DEPTH)


def _gpt_fields(model_cfg: ModelConfig) -> dict[str, Any]:
    """What the baseline takes over from the model besides its shape."""
    fields: dict[str, Any] = {"block_size": model_cfg.block_size}
    dropout = getattr(model_cfg, "dropout", None)
    if isinstance(dropout, float):
        fields["dropout"] = dropout
    if model_cfg.vocab_size is not None:
        fields["vocab_size"] = model_cfg.vocab_size
    return fields


class _GPTCounter:
    """Parameter counts of the baseline GPT by (n_layer, n_embd).

    A GPT's blocks are identical, so its count is affine in n_layer: two meta builds per width
    (1 and 2 layers) give every depth, which keeps the depth search to a few hundred small
    builds instead of thousands of deep ones.
    """

    def __init__(self, base: dict[str, Any], n_head: int, vocab_size: int) -> None:
        self.n_head = n_head

        @cache
        def at(n_layer: int, n_embd: int) -> int:
            cfg = GPTConfig(**base, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
            return count_params(cfg, vocab_size)

        self._at: Callable[[int, int], int] = at

    def count(self, n_layer: int, n_embd: int) -> int:
        one, two = self._at(1, n_embd), self._at(2, n_embd)
        return one + (n_layer - 1) * (two - one)


def _closest_width(counter: _GPTCounter, n_layer: int, target: int) -> tuple[int, int]:
    """(n_layer, n_embd) with n_embd the multiple of n_head whose count is closest to target.

    The count grows with the width, so an exponential then binary search over the multiple
    finds the first width at or above the target; it or the one below is the closest.
    """
    step = counter.n_head

    def params(k: int) -> int:
        return counter.count(n_layer, k * step)

    high = 1
    while params(high) < target:
        high *= 2
    low = high // 2 if high > 1 else 1
    while low < high:  # the first multiple whose count reaches the target
        mid = (low + high) // 2
        if params(mid) < target:
            low = mid + 1
        else:
            high = mid
    candidates = [k for k in (low - 1, low) if k >= 1]
    best = min(candidates, key=lambda k: abs(params(k) - target))
    return n_layer, best * step


def _closest_shape(counter: _GPTCounter, depth: int, target: int) -> tuple[int, int]:
    """The (n_layer, n_embd) over depths 1..MAX_DEPTH closest in count; `depth` wins ties."""
    shapes = [_closest_width(counter, n, target) for n in range(1, MAX_DEPTH + 1)]
    return min(shapes, key=lambda s: (abs(counter.count(*s) - target), s[0] != depth))


def _relative(count: int, target: int) -> float:
    return abs(count - target) / target


def _with_model(config: ExperimentConfig, gpt: GPTConfig) -> ExperimentConfig:
    """`config` with the GPT as its model, re-validated as the loader validates a file.

    Dumped paths are already absolute (validation resolved them against the original file's
    folder), so the result, and the YAML written from it, points at the same data wherever it
    is saved or run from.
    """
    raw = config.model_dump(mode="json")
    raw["name"] = f"{config.name}-baseline"
    raw["model"] = gpt.model_dump(mode="json")
    for section in ("finetune", "mvot"):
        raw.pop(section, None)
    return validate_config(raw, source=f"baseline of {config.name}")
