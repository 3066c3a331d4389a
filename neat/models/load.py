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
from neat.persistence import Checkpointer, read_checkpoint_meta, resolve_checkpoint
from neat.persistence.manifest import STATE_FILE, TOKENIZER_FILE

__all__ = ["build_model", "load_trained_model"]


def build_model(cfg: ModelConfig, tokenizer: ITokenizer, seed: int) -> nn.Module:
    """The model `cfg` names, initialised under `seed` alone (the global RNG is untouched)."""
    vocab_size = cfg.vocab_size or tokenizer.vocab_size
    if vocab_size < tokenizer.vocab_size:
        raise ConfigError(
            f"model.vocab_size={vocab_size} is smaller than the tokenizer's vocabulary "
            f"({tokenizer.vocab_size}); remove model.vocab_size or raise it"
        )
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
    Checkpointer(path.parent).load(path, model)
    model.to(device)
    return model, tokenizer, config
