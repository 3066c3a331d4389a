"""Building a model from its config section, and rebuilding a trained one from a checkpoint
alone (its saved config, tokenizer and weights): what training, inference and a BLT's
frozen entropy model share."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from neat.config import ExperimentConfig, ModelConfig, build, validate_config
from neat.data.tokenizers import load_tokenizer
from neat.errors import CheckpointError, ConfigError
from neat.interfaces import ITokenizer
from neat.interfaces.contexts import ModelContext
from neat.models.adapters.apply import apply_finetune
from neat.persistence import Checkpointer, read_checkpoint_meta, resolve_checkpoint
from neat.persistence.manifest import STATE_FILE, TOKENIZER_FILE

__all__ = ["TRAINING_BYTES_PER_PARAM", "build_model", "load_trained_model"]

# fp32 weights, gradients and AdamW's two moments: what training needs per parameter at least.
TRAINING_BYTES_PER_PARAM = 16


def build_model(
    cfg: ModelConfig,
    tokenizer: ITokenizer,
    seed: int,
    *,
    memory: int | None = None,
    bytes_per_param: int = 4,
) -> nn.Module:
    """The model `cfg` names, initialised under `seed` alone (the global RNG is untouched).

    With `memory` (bytes), a model whose parameters alone need more (`bytes_per_param` each)
    is refused before a byte is allocated: it is first built on the meta device, which only
    records shapes, so a `block_size` or `vocab_size` of 10^9 is one clear error, not an
    out-of-memory kill minutes later.
    """
    vocab_size = cfg.vocab_size or tokenizer.vocab_size
    if vocab_size < tokenizer.vocab_size:
        raise ConfigError(
            f"model.vocab_size={vocab_size} is smaller than the tokenizer's vocabulary "
            f"({tokenizer.vocab_size}); remove model.vocab_size or raise it"
        )
    if memory is not None:
        _check_fits(cfg, vocab_size, memory, bytes_per_param)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: nn.Module = build("model", cfg, ModelContext(vocab_size=vocab_size))
    return model


def load_trained_model(
    checkpoint: Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, ITokenizer, ExperimentConfig]:
    """Model (weights loaded, on `device`), tokenizer and config from the checkpoint alone."""
    path = resolve_checkpoint(checkpoint)
    meta = read_checkpoint_meta(path)
    saved = meta.get("config")
    if saved is None:  # a hand-written, weights-only checkpoint may leave it out
        raise CheckpointError(
            f"checkpoint {path} stores no config in its {STATE_FILE}, so its model cannot be "
            'rebuilt from it alone; add the run\'s resolved config under "config"'
        )
    config = validate_config(saved, source=str(path / STATE_FILE))
    tokenizer = load_tokenizer(path / TOKENIZER_FILE)
    model = build_model(config.model, tokenizer, config.training.seed)
    apply_finetune(model, config.finetune)  # the adapters' weights are in the checkpoint
    Checkpointer(path.parent).load(path, model)
    model.to(device)
    return model, tokenizer, config


def _check_fits(cfg: ModelConfig, vocab_size: int, memory: int, bytes_per_param: int) -> None:
    key = (cfg.model_dump_json(), vocab_size)
    if key not in _SHAPES:  # the same config always has the same shapes
        _SHAPES[key] = _meta_shapes(cfg, vocab_size)
    shape = _SHAPES[key]
    if shape is None:
        return
    params, largest, largest_shape = shape
    needed = params * bytes_per_param
    if needed <= memory:
        return
    raise ConfigError(
        f"model ({cfg.type}, block_size {cfg.block_size}, vocab {vocab_size}) has "
        f"{params:,} parameters and needs at least {needed / 2**30:,.1f} GiB here, more than "
        f"the {memory / 2**30:,.1f} GiB available; its largest tensor is {largest} "
        f"{largest_shape}: lower model.block_size, model.vocab_size or the model's width"
    )


Shapes = tuple[int, str, tuple[int, ...]]
_SHAPES: dict[tuple[str, int], Shapes | None] = {}


def _meta_shapes(cfg: ModelConfig, vocab_size: int) -> Shapes | None:
    """(parameter count, largest tensor's name and shape) of the model built on the meta
    device (a few times a real build's Python time, no memory), or None when its builder
    cannot run there (one that loads weights)."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            shapes = build("model", cfg, ModelContext(vocab_size=vocab_size))
    except Exception:
        return None
    seen: set[int] = set()
    tensors = []
    for name, param in shapes.named_parameters():
        if id(param) not in seen:
            seen.add(id(param))
            tensors.append((param.numel(), name, tuple(param.shape)))
    if not tensors:
        return None
    _, name, shape = max(tensors)
    return sum(n for n, _, _ in tensors), name, shape
