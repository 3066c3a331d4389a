"""The experiment config: one validated, frozen tree for a whole run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, PositiveInt, model_validator

from neat.config.base import ComponentConfig, PathStr, StrictModel, component, register_config
from neat.config.data import DataConfig
from neat.config.indexing import IndexingConfig
from neat.config.migrations import CURRENT_VERSION, migrate

if TYPE_CHECKING:  # mypy sees the base class; at run time the registry dispatches on `type`
    ModelSection: TypeAlias = ComponentConfig
    OptimizationSection: TypeAlias = ComponentConfig
    EvaluationSection: TypeAlias = ComponentConfig
else:
    ModelSection = component("model")
    OptimizationSection = component("optimization")
    EvaluationSection = component("evaluation")


class GPTConfig(ComponentConfig):
    """GPT-2 layout. The strategy fields name the block parts; later models add choices."""

    type: Literal["gpt"] = "gpt"
    n_layer: PositiveInt = 4
    n_head: PositiveInt = 4
    n_embd: PositiveInt = 128
    block_size: PositiveInt = Field(default=64, description="context length in tokens")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    bias: bool = True
    vocab_size: PositiveInt | None = Field(default=None, description="default: the tokenizer's")
    pad_vocab_multiple: PositiveInt = Field(
        default=1, description="pad the vocab for faster matmuls"
    )
    attention: Literal["mha"] = "mha"
    mlp: Literal["gelu"] = "gelu"
    norm: Literal["layernorm"] = "layernorm"
    position: Literal["learned"] = "learned"
    init_from: PathStr | None = Field(
        default=None, description="start from this run's or checkpoint's weights (fresh optimizer)"
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class AdamWConfig(ComponentConfig):
    """AdamW with a warmup + decay schedule, evaluated as a pure function of the step."""

    type: Literal["adamw"] = "adamw"
    lr: float = Field(default=6e-4, gt=0.0)
    min_lr: float = Field(default=6e-5, ge=0.0)
    warmup_steps: int = Field(default=100, ge=0)
    decay_steps: PositiveInt | None = Field(default=None, description="default: training.max_steps")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(default=0.1, ge=0.0)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.95, ge=0.0, lt=1.0)
    eps: float = Field(default=1e-8, gt=0.0)
    grad_clip: float = Field(default=1.0, ge=0.0, description="max global grad norm; 0 disables")
    fused: bool | None = Field(default=None, description="default: fused on CUDA")


class TrainingConfig(StrictModel):
    max_steps: PositiveInt = 1000
    batch_size: PositiveInt = Field(
        default=12, description="rows per micro-step in all; torchrun's processes split them"
    )
    grad_accum_steps: PositiveInt = 1
    seed: int = 1337
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N | mps")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    distributed: Literal["auto", "ddp", "fsdp", "none"] = Field(
        default="auto",
        description="under torchrun: auto (DDP with more than one process), ddp, fsdp (FSDP2)",
    )
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = Field(
        default="default", description="torch.compile mode; reduce-overhead uses CUDA graphs"
    )
    prefetch_batches: int = Field(
        default=0,
        ge=0,
        description="batches made ahead on a thread (GPU only; 0: off, as measured no faster)",
    )
    activation_checkpointing: bool = Field(
        default=False, description="recompute each block's activations in backward (less memory)"
    )


class LossEvaluatorConfig(ComponentConfig):
    """Validation loss, perplexity and bits per byte over a fixed set of batches."""

    type: Literal["lm"] = "lm"
    interval: PositiveInt = 250
    batches: PositiveInt = Field(default=20, description="validation batches per evaluation")
    batch_size: PositiveInt | None = Field(default=None, description="default: training.batch_size")


class MonitoringConfig(StrictModel):
    log_interval: PositiveInt = 10
    monitors: list[str] = Field(default_factory=lambda: ["console", "structlog", "metrics"])
    progress: Literal["auto", "rich", "plain"] = "auto"


class CheckpointConfig(StrictModel):
    interval: PositiveInt = 500
    keep_last: PositiveInt = 2
    save_final: bool = True


class ExperimentConfig(StrictModel):
    version: int = CURRENT_VERSION
    name: str = "neat"
    model: ModelSection = Field(default_factory=GPTConfig)
    data: DataConfig
    optimization: OptimizationSection = Field(default_factory=AdamWConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationSection = Field(default_factory=LossEvaluatorConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    indexing: IndexingConfig = Field(default_factory=IndexingConfig)

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        # validated even when absent, so its relative paths resolve against the config's folder
        return {"indexing": {}, **migrate(raw)}


_BUILTIN: list[tuple[str, type[ComponentConfig]]] = [
    ("model", GPTConfig),
    ("optimization", AdamWConfig),
    ("evaluation", LossEvaluatorConfig),
]
for _section, _cls in _BUILTIN:
    register_config(_section, _cls)
# Registering modules: importing them adds their config types to the registry.
import neat.config.blt  # noqa: E402  (the blt model)
import neat.config.synthetic  # noqa: E402  (synthetic_math, exact_match)
import neat.config.tokenizers  # noqa: E402, F401  (bpe and hf tokenizers)
