"""Using a trained checkpoint: evaluate it on a config's data, or sample from it alone."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import torch
from dependency_injector import providers
from rich.console import Console
from torch import nn

from neat.config.finetune import FinetuneConfig
from neat.config.schema import ExperimentConfig
from neat.data import load_tokenizer
from neat.di.container import build_container
from neat.errors import CheckpointError, ConfigError
from neat.evaluation import generate
from neat.evaluation.generation import TextStream, check_sampling, check_stream, iter_tokens
from neat.interfaces import ITokenizer
from neat.models.adapters.apply import apply_finetune
from neat.models.load import build_model, load_trained_model
from neat.persistence import read_checkpoint_meta, resolve_checkpoint
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
    # the checkpoint's weights replace the init anyway: no model.init_from
    model = build_model(config.model, container.tokenizer(), config.training.seed)
    # the checkpoint's adapters, not the config's: a LoRA run is evaluated with its base config
    apply_finetune(model, saved_finetune(path, config))
    state = container.checkpointer().load(path, model)
    refuse_non_finite(model, path)
    model.to(container.device())
    metrics: dict[str, Any] = dict(container.evaluator().evaluate(model))
    metrics["step"] = state.step
    metrics["checkpoint"] = str(path)
    return metrics


def saved_finetune(checkpoint: Path, config: ExperimentConfig) -> FinetuneConfig:
    """The `finetune:` section the checkpoint was trained with (the config's when it stores
    none): the module tree its tensors belong to."""
    saved = read_checkpoint_meta(checkpoint).get("config")
    if isinstance(saved, dict) and isinstance(saved.get("finetune"), dict):
        return FinetuneConfig.model_validate(saved["finetune"])
    return config.finetune


def load_for_inference(checkpoint: Path, device: str = "auto") -> tuple[nn.Module, ITokenizer, int]:
    """Model, tokenizer and context length from the checkpoint alone (no config, no data)."""
    path = resolve_checkpoint(checkpoint)
    model, tokenizer, config = load_trained_model(path, resolve_device(device))
    refuse_non_finite(model, path)
    return model, tokenizer, config.model.block_size


def refuse_non_finite(model: nn.Module, checkpoint: Path) -> None:
    """NaN or inf weights give NaN metrics and garbage text without a word: refuse them."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"checkpoint {checkpoint}: tensor {name!r} holds NaN or infinite values (the run "
                "had diverged when it was saved); use an earlier checkpoint"
            )


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
    stream: bool = False,
) -> str:
    """The prompt and its continuation, decoded once at the end. `stream`: condition on the
    whole history through the model's memory (titans), see `iter_tokens`."""
    sampling: dict[str, Any] = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    model, tokenizer, block_size, ids, generator = _prepare(
        checkpoint, prompt, max_new_tokens, sampling, seed, device, stream
    )
    out = generate(
        model,
        ids,
        max_new_tokens,
        block_size=block_size,
        generator=generator,
        stream=stream,
        **sampling,
    )
    return tokenizer.decode(out[0].tolist())


def stream_text(
    checkpoint: Path,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 1337,
    device: str = "auto",
    stream: bool = False,
) -> Generator[str, None, None]:
    """The pieces of `generate_text`'s result (same seed, same text) as they are sampled.

    Settings, checkpoint and device are checked here, before the first piece is asked for.
    """
    sampling: dict[str, Any] = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    model, tokenizer, block_size, ids, generator = _prepare(
        checkpoint, prompt, max_new_tokens, sampling, seed, device, stream
    )
    tokens = iter_tokens(
        model,
        ids,
        max_new_tokens,
        block_size=block_size,
        generator=generator,
        stream=stream,
        **sampling,
    )
    return text_pieces(TextStream(tokenizer), ids, tokens)


def text_pieces(
    stream: TextStream, ids: torch.Tensor, tokens: Iterator[torch.Tensor]
) -> Generator[str, None, None]:
    if piece := stream.push(ids[0].tolist()):
        yield piece
    for next_id in tokens:
        if piece := stream.push(next_id[0].tolist()):
            yield piece
    if piece := stream.finish():
        yield piece


def _prepare(
    checkpoint: Path,
    prompt: str,
    max_new_tokens: int,
    sampling: dict[str, Any],
    seed: int,
    device: str,
    stream: bool = False,
) -> tuple[nn.Module, ITokenizer, int, torch.Tensor, torch.Generator]:
    """Check the settings before the (slow) load; the model, prompt ids and seeded generator."""
    check_sampling(max_new_tokens=max_new_tokens, seed=seed, **sampling)
    model, tokenizer, block_size = load_for_inference(checkpoint, device)
    if stream:
        check_stream(model)
    model_device = next(model.parameters()).device
    prompt_ids = tokenizer.encode(prompt)
    if not prompt_ids:
        if tokenizer.eot_id is None:
            raise ConfigError(
                "the prompt (--prompt) is empty and this checkpoint's tokenizer has no "
                "end-of-text token to start from; give a prompt of at least one character "
                "(the default is a newline)"
            )
        prompt_ids = [tokenizer.eot_id]
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=model_device)
    generator = torch.Generator(device=model_device).manual_seed(seed)
    return model, tokenizer, block_size, ids, generator
