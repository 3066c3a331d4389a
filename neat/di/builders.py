"""Plain functions that turn config sections into components. The container wires them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
import torch
from rich.console import Console
from torch import nn

from neat.config.data import FileSourceConfig, JsonlSourceConfig, TextSourceConfig
from neat.config.schema import AdamWConfig, ExperimentConfig, GPTConfig, LossEvaluatorConfig
from neat.data import (
    BatchSampler,
    JsonlSource,
    MixtureSource,
    TextFileSource,
    TokenData,
    default_cache_dir,
    eval_batches,
    prepare_token_data,
)
from neat.data import build_tokenizer as build_builtin_tokenizer
from neat.data.prefetch import PrefetchingBatches
from neat.data.refresh import RefreshingSampler, RefreshMonitor, live_parts
from neat.di.registry import build, register_builder
from neat.errors import ConfigError
from neat.evaluation import LossEvaluator
from neat.interfaces import IDataSource, IEvaluator, IMonitor, IOptimizerFactory, ITokenizer
from neat.models import GPT
from neat.monitoring import MonitorContext, build_monitors
from neat.optimization import AdamWFactory
from neat.persistence import Checkpointer, resolve_checkpoint
from neat.training.device import enable_fast_math
from neat.training.distributed import (
    SINGLE,
    DistInfo,
    check_batch_divides,
    init_distributed,
    rank_zero_first,
    unwrap_model,
    wrap_model,
)
from neat.training.run_dir import CHECKPOINTS, write_run_files
from neat.training.trainer import BatchSource


def build_gpt(cfg: GPTConfig, vocab_size: int) -> nn.Module:
    return GPT(cfg, vocab_size)


def _file_options(cfg: FileSourceConfig) -> dict[str, Any]:
    return {
        "include": cfg.include,
        "exclude": cfg.exclude,
        "on_decode_error": cfg.on_decode_error,
    }


def build_text_source(cfg: TextSourceConfig, config: ExperimentConfig) -> IDataSource:
    return TextFileSource(_paths(cfg.path), **_file_options(cfg))


def build_jsonl_source(cfg: JsonlSourceConfig, config: ExperimentConfig) -> IDataSource:
    return JsonlSource(
        _paths(cfg.path),
        text_field=cfg.text_field,
        prompt_field=cfg.prompt_field,
        response_field=cfg.response_field,
        messages_field=cfg.messages_field,
        format=config.data.format,
        on_bad_line=cfg.on_bad_line,
        **_file_options(cfg),
    )


def _paths(path: str | list[str]) -> list[str]:
    return [path] if isinstance(path, str) else list(path)


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
    """Loss, perplexity and bits per byte on fixed batches from every part's val split."""
    batches = eval_batches(
        token_data.val_splits(), cfg.batch_size or batch_size, block_size, cfg.batches
    )
    return LossEvaluator(batches, token_data.tokenizer.token_bytes(), device, precision)


log = structlog.get_logger(__name__)

register_builder("model", "gpt", build_gpt)
register_builder("source", "text", build_text_source)
register_builder("source", "jsonl", build_jsonl_source)
register_builder("tokenizer", "char", build_builtin_tokenizer)
register_builder("tokenizer", "byte", build_builtin_tokenizer)
register_builder("tokenizer", "bpe", build_builtin_tokenizer)
register_builder("tokenizer", "hf", build_builtin_tokenizer)
register_builder("optimization", "adamw", build_adamw)
register_builder("evaluation", "lm", build_loss_evaluator)


# -- functions the container calls ---------------------------------------------------------------


def make_dist(config: ExperimentConfig) -> DistInfo:
    """torchrun's process group when launched by it (one GPU per process), else one process."""
    return init_distributed(config.training.distributed, config.training.device)


def make_device(dist: DistInfo) -> torch.device:
    enable_fast_math(dist.device)
    return dist.device


def cache_dir_of(config: ExperimentConfig) -> Path:
    cache_dir = config.data.cache_dir
    return Path(cache_dir) if cache_dir else default_cache_dir()


def make_data_source(config: ExperimentConfig) -> IDataSource:
    """One source, or a weighted mixture of several."""
    parts = [
        (build("source", cfg, config), float(getattr(cfg, "weight", 1.0)))
        for cfg in config.data.sources
    ]
    if len(parts) == 1:
        source: IDataSource = parts[0][0]
        return source
    return MixtureSource(parts)


def make_tokenizer(
    config: ExperimentConfig, source: IDataSource, dist: DistInfo = SINGLE
) -> ITokenizer:
    """Under torchrun rank 0 fits (or finds) it first; the others then load its cache."""
    with rank_zero_first(dist):
        tokenizer: ITokenizer = build(
            "tokenizer", config.data.tokenizer, source, cache_dir_of(config)
        )
    return tokenizer


def make_token_data(
    config: ExperimentConfig, source: IDataSource, tokenizer: ITokenizer, dist: DistInfo = SINGLE
) -> TokenData:
    """Each source part prepared (or found) in the token cache, split into train and val.

    Under torchrun rank 0 tokenizes first and the others read the finished cache entry,
    rather than every rank tokenizing the same corpus on the same cores.
    """
    with rank_zero_first(dist):
        return prepare_token_data(source, tokenizer, cache_dir_of(config), config.data.val_fraction)


def block_size_of(config: ExperimentConfig) -> int:
    block_size = getattr(config.model, "block_size", None)
    if not isinstance(block_size, int):
        raise ConfigError(f"model type {config.model.type!r} must define block_size")
    return block_size


def make_model(
    config: ExperimentConfig, tokenizer: ITokenizer, *, use_init_from: bool = True
) -> nn.Module:
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
    if config.training.activation_checkpointing:
        if not hasattr(model, "activation_checkpointing"):
            raise ConfigError(
                f"training.activation_checkpointing: model type {config.model.type!r} does not "
                "support it; set it to false"
            )
        setattr(model, "activation_checkpointing", True)  # noqa: B010  (nn.Module typing)
    init_from = getattr(config.model, "init_from", None)
    if init_from and use_init_from:  # weights only: optimizer, step, data position start fresh
        checkpoint = resolve_checkpoint(Path(init_from))
        Checkpointer(checkpoint.parent).load(checkpoint, model)
        log.info("model_initialised_from", checkpoint=str(checkpoint))
    return model


def make_parallel_model(
    config: ExperimentConfig, model: nn.Module, dist: DistInfo, device: torch.device
) -> nn.Module:
    """The model on its device and, under torchrun, wrapped by DDP or sharded by FSDP2."""
    if dist.mode == "fsdp" and config.training.precision == "fp16":
        raise ConfigError(
            "training.precision=fp16 does not work with training.distributed=fsdp (each "
            "rank's loss scaler would see only its gradient shard); use bf16"
        )
    model.to(device)
    return wrap_model(model, dist)


def make_optimizer(
    factory: IOptimizerFactory, model: nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    """After `make_parallel_model`: fused AdamW needs the parameters on the GPU already, and
    FSDP2 replaces them with their shards, which the optimizer must be given."""
    return factory.create(unwrap_model(model), device)


def make_train_batches(
    config: ExperimentConfig,
    token_data: TokenData,
    device: torch.device,
    source: IDataSource,
    tokenizer: ITokenizer,
    dist: DistInfo = SINGLE,
) -> BatchSource:
    """The sampler (this rank's rows of each global batch); one that takes the source's
    changes at epoch ends when it refreshes."""
    check_batch_divides(config.training.batch_size, dist)

    def sampler(data: TokenData) -> BatchSampler:
        return BatchSampler(
            data.weighted_train(),
            batch_size=config.training.batch_size,
            block_size=block_size_of(config),
            seed=config.training.seed,
            device=device,
            name="train",
            rank=dist.rank,
            world_size=dist.world_size,
        )

    if not live_parts(source):
        batches = sampler(token_data)
        depth = config.training.prefetch_batches
        # a thread only pays where the step runs elsewhere (the GPU); on the CPU it competes
        return PrefetchingBatches(batches, depth) if depth and device.type == "cuda" else batches
    if dist.active:
        raise ConfigError(
            "a data source with reindex_interval > 0 cannot feed multi-process training: "
            "each rank would see the corpus change at a different time; set its "
            "reindex_interval to 0 or train in one process"
        )
    return RefreshingSampler(
        token_data,
        fingerprint=source.fingerprint,
        prepare=lambda: make_token_data(config, source, tokenizer),
        make_sampler=sampler,
    )


def make_evaluator(
    config: ExperimentConfig,
    token_data: TokenData,
    device: torch.device,
    precision: str,
    dist: DistInfo = SINGLE,
) -> IEvaluator:
    """Every rank evaluates the same batches (so FSDP's gathers line up and every rank
    agrees on best_val_loss); their default size is one rank's share of the training batch,
    which is known to fit on one device."""
    evaluator: IEvaluator = build(
        "evaluation",
        config.evaluation,
        token_data=token_data,
        block_size=block_size_of(config),
        batch_size=config.training.batch_size // dist.world_size,
        device=device,
        precision=precision,
    )
    return evaluator


def make_checkpointer(
    config: ExperimentConfig, run_dir: Path, dist: DistInfo = SINGLE
) -> Checkpointer:
    """Rank 0 writes; the other ranks' checkpointer only takes part in gathering shards."""
    return Checkpointer(
        run_dir / CHECKPOINTS,
        keep_last=config.checkpoint.keep_last,
        metadata=config.model_dump(mode="json"),
        writer=dist.is_main,
    )


def make_monitors(
    config: ExperimentConfig,
    run_dir: Path,
    console: Console,
    source: IDataSource,
    dist: DistInfo = SINGLE,
) -> list[IMonitor]:
    """The configured monitors, and one refresher per source that refreshes during training.
    Only rank 0 watches a run: one progress display, one metrics.jsonl, one log.jsonl."""
    if not dist.is_main:
        return []
    ctx = MonitorContext(run_dir=run_dir, console=console, progress_mode=config.monitoring.progress)
    monitors = build_monitors(config.monitoring.monitors, ctx)
    refreshers: list[IMonitor] = [
        RefreshMonitor(part, part.reindex_interval) for part in live_parts(source)
    ]
    return monitors + refreshers


def run_dir_writer(config: ExperimentConfig, tokenizer: ITokenizer, dist: DistInfo = SINGLE) -> Any:
    """Rank 0 writes config.yaml and tokenizer.json; other ranks write nothing."""
    if not dist.is_main:
        return lambda run_dir: {}
    return lambda run_dir: write_run_files(run_dir, config, tokenizer)


def tokens_per_step(config: ExperimentConfig) -> int:
    training = config.training
    return training.batch_size * training.grad_accum_steps * block_size_of(config)


def grad_clip_of(config: ExperimentConfig) -> float:
    return float(getattr(config.optimization, "grad_clip", 0.0))


def config_dict(config: ExperimentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


import neat.di.blt  # noqa: E402  (registers the blt model builder)
import neat.di.indexing  # noqa: E402  (registers the markdown source builder)
import neat.di.synthetic  # noqa: E402,F401  (registers the synthetic math builders)
