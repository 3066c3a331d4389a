"""Plain functions that turn config sections into components. The container wires them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from neat.config.schema import (
    AdamWConfig,
    ExperimentConfig,
    GPTConfig,
    LossEvaluatorConfig,
    TextDataConfig,
)
from neat.data import (
    BatchSampler,
    TextFileSource,
    TokenCache,
    TokenData,
    default_cache_dir,
    eval_batches,
    prepare_token_data,
)
from neat.data import build_tokenizer as build_builtin_tokenizer
from neat.di.registry import build, register_builder
from neat.errors import ConfigError
from neat.evaluation import LossEvaluator
from neat.interfaces import IDataSource, IEvaluator, IMonitor, IOptimizerFactory, ITokenizer
from neat.models import GPT
from neat.monitoring import MonitorContext, build_monitors
from neat.optimization import AdamWFactory
from neat.persistence import Checkpointer
from neat.training.device import enable_fast_math, resolve_device
from neat.training.run_dir import CHECKPOINTS, write_run_files


def build_gpt(cfg: GPTConfig, vocab_size: int) -> nn.Module:
    return GPT(cfg, vocab_size)


def build_text_source(cfg: TextDataConfig) -> IDataSource:
    paths = [cfg.path] if isinstance(cfg.path, str) else list(cfg.path)
    return TextFileSource(paths)


def build_adamw(cfg: AdamWConfig, training: Any) -> AdamWFactory:
    return AdamWFactory(cfg, training.max_steps)


def build_loss_evaluator(
    cfg: LossEvaluatorConfig,
    *,
    token_data: TokenData,
    block_size: int,
    batch_size: int,
    device: torch.device,
    precision: str,
) -> IEvaluator:
    batches = eval_batches(token_data.val, cfg.batch_size or batch_size, block_size, cfg.batches)
    return LossEvaluator(batches, token_data.tokenizer.token_bytes(), device, precision)


register_builder("model", "gpt", build_gpt)
register_builder("data", "text", build_text_source)
register_builder("tokenizer", "char", build_builtin_tokenizer)
register_builder("tokenizer", "byte", build_builtin_tokenizer)
register_builder("optimization", "adamw", build_adamw)
register_builder("evaluation", "lm", build_loss_evaluator)


# -- functions the container calls ---------------------------------------------------------------


def make_device(config: ExperimentConfig) -> torch.device:
    device = resolve_device(config.training.device)
    enable_fast_math(device)
    return device


def cache_dir_of(config: ExperimentConfig) -> Path:
    cache_dir = getattr(config.data, "cache_dir", None)
    return Path(cache_dir) if cache_dir else default_cache_dir()


def make_tokenizer(config: ExperimentConfig, source: IDataSource) -> ITokenizer:
    tokenizer_cfg = getattr(config.data, "tokenizer", None)
    if tokenizer_cfg is None:
        raise ConfigError(f"data type {config.data.type!r} has no tokenizer section")
    tokenizer: ITokenizer = build("tokenizer", tokenizer_cfg, source, cache_dir_of(config))
    return tokenizer


def make_token_data(
    config: ExperimentConfig, source: IDataSource, tokenizer: ITokenizer
) -> TokenData:
    cache = TokenCache(cache_dir_of(config))
    val_fraction = float(getattr(config.data, "val_fraction", 0.1))
    return prepare_token_data(source, tokenizer, cache, val_fraction)


def block_size_of(config: ExperimentConfig) -> int:
    block_size = getattr(config.model, "block_size", None)
    if not isinstance(block_size, int):
        raise ConfigError(f"model type {config.model.type!r} must define block_size")
    return block_size


def make_model(config: ExperimentConfig, tokenizer: ITokenizer) -> nn.Module:
    """Build under a fixed seed, so init depends on training.seed and nothing else."""
    vocab_size = getattr(config.model, "vocab_size", None) or tokenizer.vocab_size
    if vocab_size < tokenizer.vocab_size:
        raise ConfigError(
            f"model.vocab_size={vocab_size} is smaller than the tokenizer's vocabulary "
            f"({tokenizer.vocab_size}); remove model.vocab_size or raise it"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.training.seed)
        model: nn.Module = build("model", config.model, vocab_size)
    return model


def make_optimizer(
    factory: IOptimizerFactory, model: nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    """Place the model first: fused AdamW needs its parameters on the GPU already."""
    model.to(device)
    return factory.create(model, device)


def make_train_batches(
    config: ExperimentConfig, token_data: TokenData, device: torch.device
) -> BatchSampler:
    return BatchSampler(
        token_data.train,
        batch_size=config.training.batch_size,
        block_size=block_size_of(config),
        seed=config.training.seed,
        device=device,
        name="train",
    )


def make_evaluator(
    config: ExperimentConfig, token_data: TokenData, device: torch.device, precision: str
) -> IEvaluator:
    evaluator: IEvaluator = build(
        "evaluation",
        config.evaluation,
        token_data=token_data,
        block_size=block_size_of(config),
        batch_size=config.training.batch_size,
        device=device,
        precision=precision,
    )
    return evaluator


def make_checkpointer(config: ExperimentConfig, run_dir: Path) -> Checkpointer:
    return Checkpointer(
        run_dir / CHECKPOINTS,
        keep_last=config.checkpoint.keep_last,
        metadata=config.model_dump(mode="json"),
    )


def make_monitors(config: ExperimentConfig, run_dir: Path, console: Console) -> list[IMonitor]:
    ctx = MonitorContext(run_dir=run_dir, console=console, progress_mode=config.monitoring.progress)
    return build_monitors(config.monitoring.monitors, ctx)


def run_dir_writer(config: ExperimentConfig, tokenizer: ITokenizer) -> Any:
    return lambda run_dir: write_run_files(run_dir, config, tokenizer)


def tokens_per_step(config: ExperimentConfig) -> int:
    training = config.training
    return training.batch_size * training.grad_accum_steps * block_size_of(config)


def grad_clip_of(config: ExperimentConfig) -> float:
    return float(getattr(config.optimization, "grad_clip", 0.0))


def config_dict(config: ExperimentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")
