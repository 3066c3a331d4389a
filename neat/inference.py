"""Using a trained checkpoint: evaluate it on a config's data, or sample from it alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from dependency_injector import providers
from rich.console import Console
from torch import nn

from neat.config.loader import validate_config
from neat.config.schema import ExperimentConfig
from neat.data import load_tokenizer
from neat.di.builders import make_model
from neat.di.container import build_container
from neat.evaluation import generate
from neat.interfaces import ITokenizer
from neat.persistence import Checkpointer, read_checkpoint_meta, resolve_checkpoint
from neat.training.device import resolve_device


def evaluate_checkpoint(
    config: ExperimentConfig, checkpoint: Path, console: Console | None = None
) -> dict[str, Any]:
    """Val loss, perplexity and bits per byte of `checkpoint` on `config`'s validation split."""
    path = resolve_checkpoint(checkpoint)
    container = build_container(config, run_dir=path.parent, console=console)
    tokenizer_file = path / "tokenizer.json"
    if tokenizer_file.is_file():  # the vocab the model was trained with, not a refit
        container.tokenizer.override(providers.Object(load_tokenizer(tokenizer_file)))
    # the checkpoint's weights replace the init anyway: skip model.init_from
    model = make_model(config, container.tokenizer(), use_init_from=False)
    state = container.checkpointer().load(path, model)
    model.to(container.device())
    metrics: dict[str, Any] = dict(container.evaluator().evaluate(model))
    metrics["step"] = state.step
    metrics["checkpoint"] = str(path)
    return metrics


def load_for_inference(checkpoint: Path, device: str = "auto") -> tuple[nn.Module, ITokenizer, int]:
    """Model, tokenizer and context length from the checkpoint alone (no config, no data)."""
    path = resolve_checkpoint(checkpoint)
    meta = read_checkpoint_meta(path)
    config = validate_config(meta["config"], source=str(path / "state.json"))
    tokenizer = load_tokenizer(path / "tokenizer.json")
    model = make_model(config, tokenizer, use_init_from=False)
    Checkpointer(path.parent).load(path, model)
    model.to(resolve_device(device))
    block_size = int(getattr(config.model, "block_size", 1024))
    return model, tokenizer, block_size


def generate_text(
    checkpoint: Path,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 1337,
    device: str = "auto",
) -> str:
    model, tokenizer, block_size = load_for_inference(checkpoint, device)
    model_device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=model_device)
    if ids.shape[1] == 0:
        start = tokenizer.eot_id if tokenizer.eot_id is not None else 0
        ids = torch.tensor([[start]], dtype=torch.long, device=model_device)
    generator = torch.Generator(device=model_device).manual_seed(seed)
    out = generate(
        model,
        ids,
        max_new_tokens,
        block_size=block_size,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
    )
    return tokenizer.decode(out[0].tolist())
