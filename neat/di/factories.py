"""The functions the container calls: each takes the config sections and the parts it needs
by keyword, and asks the component registry for the type a section names. No component is
implemented here; each type lives, with its config class and builder, beside its code."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import torch
from rich.console import Console
from torch import nn

from neat.config import ExperimentConfig, build
from neat.config.base import EvaluatorConfig, ModelConfig, OptimizerConfig
from neat.config.data import DataConfig
from neat.config.finetune import FinetuneConfig
from neat.config.indexing import IndexingConfig
from neat.config.mvot import MVoTConfig
from neat.config.rl import RLConfig
from neat.config.schema import MonitoringConfig, TrainingConfig
from neat.data import TokenData, default_cache_dir, prepare_token_data
from neat.data.prefetch import PrefetchingBatches
from neat.data.refresh import RefreshingSampler, RefreshMonitor, live_parts
from neat.data.rl_problems import ProblemBatches
from neat.data.sampler import BatchSampler
from neat.data.sources import build_data_source
from neat.errors import ConfigError
from neat.interfaces import (
    IBatchSource,
    IDataSource,
    IEvaluator,
    IMonitor,
    IObjective,
    IOptimizerFactory,
    ITokenizer,
)
from neat.interfaces.contexts import (
    EvaluatorContext,
    MonitorContext,
    OptimizerContext,
    TokenizerContext,
)
from neat.models.adapters.apply import adapters_disabled, apply_finetune, has_adapters
from neat.models.fused_loss import enable_fused_loss
from neat.models.load import TRAINING_BYTES_PER_PARAM, build_model
from neat.persistence import Checkpointer, resolve_checkpoint
from neat.persistence.compat import check_tokenizer_matches
from neat.persistence.manifest import CHECKPOINTS_DIR
from neat.training.activation_checkpointing import apply_activation_checkpointing
from neat.training.device import enable_fast_math, memory_bytes, set_attention_backend
from neat.training.distributed import (
    SINGLE,
    DistInfo,
    broadcast_object,
    check_batch_divides,
    fsdp_policy,
    init_distributed,
    rank_zero_first,
    unwrap_model,
    wrap_model,
)
from neat.training.float8 import convert_to_float8
from neat.training.grpo import GRPO
from neat.training.mvot import DiscrepancyObjective
from neat.training.objectives import NextTokenLoss
from neat.training.reconstruction import ReconstructionObjective
from neat.training.reinforce import Reinforce
from neat.training.run_dir import write_run_files

log = structlog.get_logger(__name__)


# -- where it runs ---------------------------------------------------------------------------------


def make_dist(training: TrainingConfig) -> DistInfo:
    """torchrun's process group when launched by it (one GPU per process), else one process."""
    return init_distributed(training.distributed, training.device)


def make_device(dist: DistInfo, training: TrainingConfig) -> torch.device:
    enable_fast_math(dist.device)
    set_attention_backend(training.attention_backend, dist.device)
    return dist.device


def memory_per_rank(device: torch.device, dist: DistInfo) -> int | None:
    """What one rank's share of the model may use: its device's memory, times the world size
    when FSDP2 shards the parameters and optimizer state across the ranks."""
    memory = memory_bytes(device)
    if memory is None:
        return None
    return memory * dist.world_size if dist.mode == "fsdp" else memory


def agreed(value: Any, dist: DistInfo) -> Any:
    """Rank 0's value on every rank: each rank resolved its own run directory and resume
    point (a new run's name has a timestamp), and all must write and read one run."""
    return broadcast_object(value, dist) if dist.active else value


# -- data ------------------------------------------------------------------------------------------


def cache_dir_of(data: DataConfig) -> Path:
    return Path(data.cache_dir) if data.cache_dir else default_cache_dir()


def make_data_source(data: DataConfig, indexing: IndexingConfig) -> IDataSource:
    return build_data_source(data, indexing)


def make_tokenizer(data: DataConfig, source: IDataSource, dist: DistInfo = SINGLE) -> ITokenizer:
    """Under torchrun rank 0 fits (or finds) it first; the others then load its cache."""
    with rank_zero_first(dist):
        tokenizer: ITokenizer = build(
            "tokenizer", data.tokenizer, TokenizerContext(source, cache_dir_of(data))
        )
    return tokenizer


def make_token_data(
    data: DataConfig, source: IDataSource, tokenizer: ITokenizer, dist: DistInfo = SINGLE
) -> TokenData:
    """Each source part prepared (or found) in the token cache, split into train and val.

    Under torchrun rank 0 tokenizes first and the others read the finished cache entry,
    rather than every rank tokenizing the same corpus on the same cores.
    """
    with rank_zero_first(dist):
        return prepare_token_data(source, tokenizer, cache_dir_of(data), data.val_fraction)


def make_train_batches(
    training: TrainingConfig,
    model: ModelConfig,
    data: DataConfig,
    token_data: TokenData,
    source: IDataSource,
    tokenizer: ITokenizer,
    device: torch.device,
    dist: DistInfo = SINGLE,
    finetune: FinetuneConfig | None = None,
) -> IBatchSource:
    """This rank's rows of each global batch; a sampler that takes the source's changes at
    epoch ends when the source refreshes during training; the problems as prompts for
    `finetune.objective: reinforce` and `training.objective: grpo` (validated to have one
    source with problems)."""
    check_batch_divides(training.batch_size, dist)
    if model.type == "vq":
        return make_state_image_batches(training, model, data, device, dist)
    if model.type == "bi_encoder":
        return make_pair_batches(training, model, data, tokenizer, device, dist)
    reinforce = finetune is not None and finetune.objective == "reinforce"
    if reinforce or training.objective == "grpo":
        return ProblemBatches(
            data.sources[0],
            tokenizer,
            batch_size=training.batch_size,
            seed=training.seed,
            device=device,
            rank=dist.rank,
            world_size=dist.world_size,
        )

    def sampler(prepared: TokenData) -> BatchSampler:
        return BatchSampler(
            prepared.weighted_train(),
            batch_size=training.batch_size,
            block_size=model.block_size,
            seed=training.seed,
            device=device,
            name="train",
            rank=dist.rank,
            world_size=dist.world_size,
        )

    if not live_parts(source):
        batches = sampler(token_data)
        depth = training.prefetch_batches
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
        prepare=lambda: make_token_data(data, source, tokenizer),
        make_sampler=sampler,
    )


def make_pair_batches(
    training: TrainingConfig,
    model: ModelConfig,
    data: DataConfig,
    tokenizer: ITokenizer,
    device: torch.device,
    dist: DistInfo = SINGLE,
) -> IBatchSource:
    """Query/passage batches for a bi-encoder, from the pairs source (the validator made
    sure there is one)."""
    from neat.indexing.pair_data import PairBatches, PairsSourceConfig, load_pairs

    source = next(s for s in data.sources if isinstance(s, PairsSourceConfig))
    return PairBatches(
        load_pairs(Path(source.path), "data.sources[].path"),
        tokenizer,
        batch_size=training.batch_size,
        block_size=model.block_size,
        negatives=source.negatives,
        seed=training.seed,
        device=device,
        rank=dist.rank,
        world_size=dist.world_size,
    )


def make_state_image_batches(
    training: TrainingConfig,
    model: ModelConfig,
    data: DataConfig,
    device: torch.device,
    dist: DistInfo = SINGLE,
) -> IBatchSource:
    """Crops of rendered states for the image tokenizer, `model.block_size` cells each (the
    validator made sure the data has a grid_world source)."""
    from neat.data.grid_world.images import StateImageBatches
    from neat.data.grid_world.spec import GridWorldSourceConfig

    source = next(s for s in data.sources if isinstance(s, GridWorldSourceConfig))
    side = math.isqrt(model.block_size)
    if side * side != model.block_size or side > source.size[0]:
        raise ConfigError(
            f"model.block_size={model.block_size}: a vq model trains on square crops of "
            f"sqrt(block_size) cells a side, at most the smallest grid ({source.size[0]}); "
            f"set it to a square number up to {source.size[0] ** 2}"
        )
    return StateImageBatches(
        source,
        side=side,
        batch_size=training.batch_size,
        seed=training.seed,
        device=device,
        rank=dist.rank,
        world_size=dist.world_size,
    )


# -- model and optimizer ---------------------------------------------------------------------------


INIT_FROM_TOKENIZER_FIX = (
    "use the data and tokenizer settings it was trained with, or set "
    "training.init_from_tokenizer: ignore to start from its weights anyway"
)


def make_model(
    model: ModelConfig,
    training: TrainingConfig,
    tokenizer: ITokenizer,
    *,
    finetune: FinetuneConfig | None = None,
    memory: int | None = None,
    init_from: bool = True,
) -> nn.Module:
    """Built under `training.seed` alone, so init depends on nothing else (and refused early
    when training it cannot fit in `memory`); then the weights of `model.init_from` when set
    (weights only: optimizer, step and data start fresh)."""
    module = build_model(
        model, tokenizer, training.seed, memory=memory, bytes_per_param=TRAINING_BYTES_PER_PARAM
    )
    apply_activation_checkpointing(module, training.activation_checkpointing, model.type)
    if model.init_from and init_from:
        checkpoint = resolve_checkpoint(Path(model.init_from))
        if training.init_from_tokenizer == "check":
            check_tokenizer_matches(checkpoint, tokenizer, fix=INIT_FROM_TOKENIZER_FIX)
        Checkpointer(checkpoint.parent).load(checkpoint, module)
        log.info("model_initialised_from", checkpoint=str(checkpoint))
    if finetune is not None:  # after init_from: svf decomposes the trained weights
        apply_finetune(module, finetune)
    if training.fused_loss:  # after finetune: an adapted head cannot be fused
        enable_fused_loss(module, model.type, training.fused_loss_chunk)
    return module


def make_objective(
    finetune: FinetuneConfig,
    parallel_model: nn.Module,
    tokenizer: ITokenizer,
    block_size: int,
    device: torch.device,
    mvot: MVoTConfig | None = None,
    model: ModelConfig | None = None,
    data: DataConfig | None = None,
    training: TrainingConfig | None = None,
    rl: RLConfig | None = None,
) -> IObjective:
    """The next-token loss (plus MVoT's discrepancy loss when `mvot.discrepancy_weight` > 0),
    GRPO (`training.objective: grpo`), or reinforce, each with the starting model as KL
    reference."""
    if model is not None and model.type == "vq":
        return ReconstructionObjective()
    if mvot is not None and mvot.discrepancy_weight > 0:
        return make_discrepancy_objective(mvot, tokenizer, data)
    policy = unwrap_model(parallel_model)  # on its device; sampling needs no DDP wrapper
    if training is not None and training.objective == "grpo":
        assert rl is not None
        return GRPO(
            policy=policy,
            reference=reference_logits(policy) if rl.reference == "init_from" else None,
            tokenizer=tokenizer,
            rewards=[build("reward", section, None) for section in rl.rewards],
            cfg=rl,
            block_size=block_size,
            device=device,
        )
    if finetune.objective == "sft":
        return NextTokenLoss()
    return Reinforce(
        policy=policy,
        reference=reference_logits(policy),
        tokenizer=tokenizer,
        cfg=finetune.reinforce,
        block_size=block_size,
        device=device,
    )


def make_sampler(
    evaluation: EvaluatorConfig, model: ModelConfig, tokenizer: ITokenizer, device: torch.device
) -> Callable[[nn.Module], str] | None:
    """`evaluation.sample`'s generator; none for an image tokenizer, which writes no text."""
    if evaluation.sample is None or model.type in ("vq", "bi_encoder"):
        return None
    from neat.evaluation.samples import EvalSampler

    return EvalSampler(evaluation.sample, tokenizer, model.block_size, device)


def reference_logits(policy: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The starting model's logits, for a KL penalty: the same weights with the adapters off
    (lora, svf), or a frozen copy taken now, before any step (full)."""
    if has_adapters(policy):

        def adapters_off(x: torch.Tensor) -> torch.Tensor:
            with adapters_disabled(policy):
                logits: torch.Tensor = policy(x)["logits"]
            return logits

        return adapters_off
    import copy

    frozen = copy.deepcopy(policy).requires_grad_(False)

    def frozen_copy(x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = frozen(x)["logits"]
        return logits

    return frozen_copy


def make_discrepancy_objective(
    mvot: MVoTConfig, tokenizer: ITokenizer, data: DataConfig | None = None
) -> IObjective:
    """CE + weight x L_D, the distances from the codebook the image codes come from: the
    interleaved grid-world source's image tokenizer, else the tile codes (the validator
    made sure the tokenizer has image codes)."""
    from neat.data.grid_world.codec import TileCodec, codec_for
    from neat.data.grid_world.spec import GridWorldSourceConfig
    from neat.data.image_text import ImageTextTokenizer
    from neat.models.mvot.discrepancy import codebook_distances

    assert isinstance(tokenizer, ImageTextTokenizer)
    sources = data.sources if data is not None else []
    images = [
        s for s in sources if isinstance(s, GridWorldSourceConfig) and s.reasoning == "interleaved"
    ]
    codec = codec_for(images[0].image_tokenizer) if images else TileCodec()
    if tokenizer.num_codes != codec.num_codes:
        raise ConfigError(
            f"the image tokenizer has {codec.num_codes} codes and data.tokenizer has "
            f"codes: {tokenizer.num_codes}; set data.tokenizer.codes: {codec.num_codes}"
        )
    return DiscrepancyObjective(
        image_code_ids=torch.tensor(tokenizer.code_ids),
        distances=codebook_distances(codec.vectors(mvot.codebook), mvot.metric),
        weight=mvot.discrepancy_weight,
    )


def make_parallel_model(
    training: TrainingConfig,
    model: nn.Module,
    dist: DistInfo,
    device: torch.device,
    precision: str = "fp32",
) -> nn.Module:
    """The model on its device and, under torchrun, wrapped by DDP or sharded by FSDP2
    (under training.fsdp's policy, its nulls filled from the resolved `precision`)."""
    if dist.mode == "fsdp" and training.precision == "fp16":
        raise ConfigError(
            "training.precision=fp16 does not work with training.distributed=fsdp (each "
            "rank's loss scaler would see only its gradient shard); use bf16"
        )
    if training.float8:  # before DDP / FSDP2 and torch.compile, which must see its layers
        convert_to_float8(model, device, compiled=training.compile)
    model.to(device)
    fsdp = training.fsdp
    policy = fsdp_policy(fsdp.param_dtype, fsdp.reduce_dtype, fsdp.reshard_after_forward, precision)
    return wrap_model(model, dist, policy)


def make_optimizer_factory(
    optimization: OptimizerConfig, training: TrainingConfig
) -> IOptimizerFactory:
    factory: IOptimizerFactory = build(
        "optimization", optimization, OptimizerContext(max_steps=training.max_steps)
    )
    return factory


def make_optimizer(
    factory: IOptimizerFactory, model: nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    """After `make_parallel_model`: fused AdamW needs the parameters on the GPU already, and
    FSDP2 replaces them with their shards, which the optimizer must be given."""
    return factory.create(unwrap_model(model), device)


# -- evaluation, checkpoints, monitors -------------------------------------------------------------


def make_evaluator(
    evaluation: EvaluatorConfig,
    model: ModelConfig,
    training: TrainingConfig,
    token_data: TokenData,
    device: torch.device,
    precision: str,
    dist: DistInfo = SINGLE,
) -> IEvaluator:
    """Every rank evaluates the same batches (so FSDP's gathers line up and every rank
    agrees on best_val_loss); their default size is one rank's share of the training batch,
    which is known to fit on one device."""
    ctx = EvaluatorContext(
        token_data=token_data,
        block_size=model.block_size,
        batch_size=training.batch_size // dist.world_size,
        device=device,
        precision=precision,
    )
    evaluator: IEvaluator = build("evaluation", evaluation, ctx)
    return evaluator


def make_checkpointer(
    config: ExperimentConfig,
    run_dir: Path,
    dist: DistInfo = SINGLE,
    tokenizer: ITokenizer | None = None,
) -> Checkpointer:
    """Rank 0 writes; the other ranks' checkpointer only takes part in gathering shards, or,
    with checkpoint.format dcp (auto under fsdp), writes its own. The whole config goes into
    every checkpoint, so a checkpoint alone rebuilds its model."""
    layout = config.checkpoint.format
    if layout == "auto":  # sharded runs save sharded: no rank gathers the whole model
        layout = "dcp" if dist.mode == "fsdp" else "safetensors"
    return Checkpointer(
        run_dir / CHECKPOINTS_DIR,
        keep_last=config.checkpoint.keep_last,
        metadata=config.model_dump(mode="json"),
        writer=dist.is_main,
        tokenizer=tokenizer,  # a resume refuses a checkpoint of another tokenizer
        layout=layout,
        group=dist.cpu_group,
    )


def make_monitors(
    monitoring: MonitoringConfig,
    run_dir: Path,
    console: Console,
    source: IDataSource,
    dist: DistInfo = SINGLE,
) -> list[IMonitor]:
    """The configured monitors, one refresher per source that refreshes during training, and
    the run registry of the runs folder (always: `neat runs list` should know every run).
    Only rank 0 watches a run: one progress display, one metrics.jsonl, one log.jsonl."""
    from neat.monitoring.registry_monitor import RegistryMonitor

    if not dist.is_main:
        return []
    ctx = MonitorContext(run_dir=run_dir, console=console, progress_mode=monitoring.progress)
    monitors: list[IMonitor] = [build("monitor", cfg, ctx) for cfg in monitoring.monitors]
    refreshers: list[IMonitor] = [
        RefreshMonitor(part, part.reindex_interval) for part in live_parts(source)
    ]
    return [*monitors, *refreshers, RegistryMonitor(run_dir)]


def run_files_writer(
    config: ExperimentConfig, tokenizer: ITokenizer, dist: DistInfo = SINGLE
) -> Callable[[Path], dict[str, Path]]:
    """Rank 0 writes config.yaml and tokenizer.json; other ranks write nothing."""
    if not dist.is_main:
        return lambda run_dir: {}
    return lambda run_dir: write_run_files(run_dir, config, tokenizer)


def tokens_per_step(training: TrainingConfig, model: ModelConfig) -> int:
    return training.batch_size * training.grad_accum_steps * model.block_size


def config_dict(config: ExperimentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def lr_schedule(factory: IOptimizerFactory) -> Callable[[int], float]:
    return factory.lr_at
