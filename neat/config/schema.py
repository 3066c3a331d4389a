"""The experiment config: one validated, frozen tree for a whole run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, PositiveInt, field_serializer, field_validator, model_validator

from neat.config.base import (
    ComponentConfig,
    EvaluatorConfig,
    ModelConfig,
    OptimizerConfig,
    StrictModel,
)
from neat.config.components import check_components, configure_from_components
from neat.config.data import DataConfig
from neat.config.finetune import FinetuneConfig
from neat.config.indexing import IndexingConfig
from neat.config.migrations import CURRENT_VERSION, migrate
from neat.config.mvot import MVoTConfig
from neat.config.registry import component, default_config
from neat.config.rl import RLConfig, check_rl

if TYPE_CHECKING:  # mypy sees the base classes; at run time the registry dispatches on `type`
    ModelSection: TypeAlias = ModelConfig
    OptimizationSection: TypeAlias = OptimizerConfig
    EvaluationSection: TypeAlias = EvaluatorConfig
    MonitorSection: TypeAlias = ComponentConfig
else:
    ModelSection = component("model")
    OptimizationSection = component("optimization")
    EvaluationSection = component("evaluation")
    MonitorSection = component("monitor")


FsdpDtype = Literal["bf16", "fp32", "fp16"]


class FsdpConfig(StrictModel):
    """FSDP2's mixed-precision policy and resharding. Read only when training.distributed is
    fsdp (under torchrun); with ddp, none or auto it is ignored."""

    param_dtype: FsdpDtype | None = Field(
        default=None,
        description="dtype the parameters are all-gathered and computed in; null: bf16 when "
        "training.precision is bf16, else fp32 (no cast)",
    )
    reduce_dtype: FsdpDtype | None = Field(
        default=None,
        description="dtype gradients are reduce-scattered in; null: fp32 (torchtitan's default)",
    )
    reshard_after_forward: bool = Field(
        default=True,
        description="free each block's gathered parameters after its forward (gathered again "
        "in backward): less memory, one more all-gather per block",
    )


class TrainingConfig(StrictModel):
    objective: Literal["next_token", "grpo"] = Field(
        default="next_token",
        description="next_token: the loss of the data (or what finetune and mvot say); grpo: "
        "reinforcement on sampled answers to the source's problems (the rl section)",
    )
    max_steps: PositiveInt = 1000
    batch_size: PositiveInt = Field(
        default=12, description="rows per micro-step in all; torchrun's processes split them"
    )
    grad_accum_steps: PositiveInt = 1
    seed: int = Field(
        default=1337, ge=0, lt=2**63, description="fixes init, data order and dropout"
    )
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
    attention_backend: Literal["auto", "flash", "cudnn", "efficient", "math"] = Field(
        default="auto",
        description="the SDPA kernel on CUDA: auto (PyTorch's pick), flash, cudnn, efficient, math",
    )
    prefetch_batches: int = Field(
        default=0,
        ge=0,
        description="batches made ahead on a thread (GPU only; 0: off, as measured no faster)",
    )
    activation_checkpointing: bool | Literal["full", "selective"] = Field(
        default=False,
        description="recompute block activations in backward (less memory): full (or true) "
        "every block, selective every other block (torchtitan's selective layer AC, ac_freq 2)",
    )
    fused_loss: bool = Field(
        default=False,
        description="head + cross-entropy in chunks of rows: the logits are never held whole",
    )
    fused_loss_chunk: PositiveInt = Field(default=1024, description="rows per fused_loss chunk")
    compile_optimizer: bool = Field(
        default=False,
        description="torch.compile the optimizer step (adamw; lr held as a tensor so the "
        "schedule does not recompile it)",
    )
    float8: bool = Field(
        default=False,
        description="torchao float8 training of the linear layers (CUDA, compute capability 8.9+)",
    )
    init_from_tokenizer: Literal["check", "ignore"] = Field(
        default="check",
        description="ignore: model.init_from may load weights trained with another tokenizer",
    )
    fsdp: FsdpConfig = Field(
        default_factory=FsdpConfig,
        description="FSDP2 settings, used when distributed is fsdp (ignored otherwise)",
    )


class MonitoringConfig(StrictModel):
    """`monitors` names the subscribers of the event bus: a name (`console`) or a section
    (`{type: console, ...}`) when a monitor has options."""

    log_interval: PositiveInt = 10
    monitors: list[MonitorSection] = Field(
        default_factory=lambda: ["console", "structlog", "metrics"], validate_default=True
    )
    progress: Literal["auto", "rich", "plain"] = "auto"

    @field_validator("monitors", mode="before")
    @classmethod
    def _names_are_sections(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        sections = [{"type": item} if isinstance(item, str) else item for item in value]
        names = [
            s.get("type") if isinstance(s, dict) else getattr(s, "type", None) for s in sections
        ]
        repeated = sorted({str(n) for n in names if names.count(n) > 1})
        if repeated:  # two console monitors would fight over one live display
            raise ValueError(f"monitor {repeated[0]!r} is listed twice")
        if "report" in names and "metrics" not in names:  # the report draws metrics.jsonl
            raise ValueError("monitor 'report' draws from metrics.jsonl: list 'metrics' too")
        return sections

    @field_serializer("monitors")
    def _plain_names(self, monitors: list[ComponentConfig]) -> list[Any]:
        """A monitor without options is written back as its bare name."""
        return [m.type if m.model_fields_set <= {"type"} else m.model_dump() for m in monitors]


class CheckpointConfig(StrictModel):
    interval: PositiveInt = 500
    format: Literal["auto", "safetensors", "dcp"] = Field(
        default="auto",
        description="auto: dcp when training.distributed runs fsdp, else safetensors; dcp: "
        "PyTorch distributed checkpoint, each rank writes its own shards (no gather), "
        "resumable on another world size; `neat checkpoints consolidate` makes safetensors",
    )
    keep_last: PositiveInt = 2
    save_final: bool = True
    keep_best: bool = Field(
        default=False,
        description="also save at each eval that improves the metric (evaluation."
        "early_stopping's, else val_loss) and keep that checkpoint whatever keep_last says",
    )


class ExperimentConfig(StrictModel):
    version: int = CURRENT_VERSION
    name: str = "neat"
    model: ModelSection = Field(default_factory=lambda: default_config("model"))
    data: DataConfig
    optimization: OptimizationSection = Field(
        default_factory=lambda: default_config("optimization")
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationSection = Field(default_factory=lambda: default_config("evaluation"))
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    indexing: IndexingConfig = Field(default_factory=IndexingConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    mvot: MVoTConfig = Field(default_factory=MVoTConfig)
    rl: RLConfig = Field(default_factory=RLConfig)

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        # validated even when absent, so its relative paths resolve against the config's folder
        # the unified model's svf and mvot components set the finetune and mvot sections
        return configure_from_components({"indexing": {}, **migrate(raw)})

    @model_validator(mode="after")
    def _components_fit_the_experiment(self) -> ExperimentConfig:
        check_components(self)
        return self

    @model_validator(mode="after")
    def _muon_needs_whole_matrices(self) -> ExperimentConfig:
        if self.optimization.type == "muon" and self.training.distributed == "fsdp":
            raise ValueError(
                "optimization.type: muon orthogonalises whole weight matrices, and "
                "training.distributed: fsdp shards them across ranks: use training."
                "distributed: ddp (or auto) with muon, or optimization.type: adamw with fsdp"
            )
        return self

    @model_validator(mode="after")
    def _grpo_fits_the_experiment(self) -> ExperimentConfig:
        check_rl(self)
        return self

    @model_validator(mode="after")
    def _stream_needs_state(self) -> ExperimentConfig:
        # Checked here, not in the evaluator, so a run fails before training, not at its
        # first evaluation with the steps since the last checkpoint lost.
        if getattr(self.evaluation, "stream", False) and not type(self.model).carries_state:
            raise ValueError(
                "evaluation.stream: true needs a model whose memory carries from one call to "
                f"the next (model.type: titans); model.type {self.model.type} has none: set "
                "evaluation.stream: false"
            )
        return self

    @model_validator(mode="after")
    def _adapters_need_a_base(self) -> ExperimentConfig:
        if self.finetune.method != "full" and not self.model.init_from:
            raise ValueError(
                f"finetune.method: {self.finetune.method} adapts a trained model, and "
                "model.init_from is not set: set it to the run or checkpoint to adapt, or use "
                "finetune.method: full"
            )
        return self

    @model_validator(mode="after")
    def _image_tokenizer_trains_on_grid_states(self) -> ExperimentConfig:
        vq, scores_vq = self.model.type == "vq", self.evaluation.type == "vq_reconstruction"
        if vq and not any(source.type == "grid_world" for source in self.data.sources):
            raise ValueError(
                "model.type: vq trains an image tokenizer on rendered grid-world states, and "
                "data.sources has no grid_world source: add one (data.type: grid_world)"
            )
        if vq and not scores_vq:
            raise ValueError(
                f"model.type: vq is an image tokenizer, which evaluation.type "
                f"{self.evaluation.type} cannot score: set evaluation.type: vq_reconstruction"
            )
        if scores_vq and not vq:
            raise ValueError(
                "evaluation.type: vq_reconstruction scores an image tokenizer, and model.type "
                f"is {self.model.type}: set model.type: vq, or another evaluation.type"
            )
        if vq and (self.finetune.method != "full" or self.mvot.discrepancy_weight > 0):
            raise ValueError(
                "model.type: vq trains with its own reconstruction loss: remove the finetune "
                "and mvot sections"
            )
        return self

    @model_validator(mode="after")
    def _bi_encoder_trains_on_pairs(self) -> ExperimentConfig:
        encoder = self.model.type == "bi_encoder"
        pairs = [source for source in self.data.sources if source.type == "pairs"]
        if encoder and len(pairs) != 1:
            raise ValueError(
                "model.type: bi_encoder trains on query/passage pairs: data.sources needs "
                "exactly one source of type pairs (`neat index train-embedder` writes one)"
            )
        if encoder and self.evaluation.type != "retrieval":
            raise ValueError(
                f"model.type: bi_encoder embeds texts, which evaluation.type "
                f"{self.evaluation.type} cannot score: set evaluation.type: retrieval"
            )
        base = getattr(self.model, "sentence_transformer", None)
        if encoder and base is not None and self.data.tokenizer.type != "hf":
            raise ValueError(
                f"model.sentence_transformer {base!r} is fine-tuned on its own vocabulary: "
                f"set data.tokenizer: {{type: hf, path: {base}/tokenizer.json}}"
            )
        if not encoder and (pairs or self.evaluation.type == "retrieval"):
            raise ValueError(
                "a pairs source and evaluation.type: retrieval train and score a retriever: "
                f"set model.type: bi_encoder (it is {self.model.type})"
            )
        if encoder and (
            self.finetune.method != "full"
            or self.training.objective != "next_token"
            or self.training.fused_loss
            or self.mvot.discrepancy_weight > 0
        ):
            raise ValueError(
                "model.type: bi_encoder trains with its own contrastive loss: remove the "
                "finetune and mvot sections, training.objective and training.fused_loss"
            )
        return self

    @model_validator(mode="after")
    def _interleaved_needs_image_codes(self) -> ExperimentConfig:
        interleaved = [s for s in self.data.sources if getattr(s, "reasoning", "") == "interleaved"]
        if interleaved and self.data.tokenizer.type != "image_text":
            raise ValueError(
                "data.sources: a grid_world source with reasoning: interleaved writes image "
                f"codes, and data.tokenizer.type is {self.data.tokenizer.type}: set "
                "data.tokenizer: {type: image_text, codes: 7} (the tile codebook)"
            )
        return self

    @model_validator(mode="after")
    def _discrepancy_needs_image_codes(self) -> ExperimentConfig:
        if self.mvot.discrepancy_weight == 0:
            return self
        if self.data.tokenizer.type != "image_text":
            raise ValueError(
                "mvot.discrepancy_weight > 0 weighs image codes, and data.tokenizer.type is "
                f"{self.data.tokenizer.type}: set data.tokenizer.type: image_text (with codes: "
                "the codebook size), or mvot.discrepancy_weight: 0"
            )
        if self.finetune.objective != "sft":
            raise ValueError(
                "mvot.discrepancy_weight > 0 adds to the next-token loss, and "
                f"finetune.objective is {self.finetune.objective}: use one of the two"
            )
        if self.training.fused_loss:
            raise ValueError(
                "mvot.discrepancy_weight > 0 weighs the image positions' logits, which "
                "training.fused_loss never materialises: set training.fused_loss: false"
            )
        return self

    @model_validator(mode="after")
    def _compiled_step_is_adamws(self) -> ExperimentConfig:
        if self.training.compile_optimizer and self.optimization.type != "adamw":
            raise ValueError(
                "training.compile_optimizer compiles AdamW's step, and optimization.type is "
                f"{self.optimization.type!r}: set training.compile_optimizer: false"
            )
        return self

    @model_validator(mode="after")
    def _reinforce_needs_problems(self) -> ExperimentConfig:
        if self.finetune.objective != "reinforce":
            return self
        kinds = [source.type for source in self.data.sources]
        if kinds != ["synthetic_math"]:
            raise ValueError(
                "finetune.objective: reinforce rewards exact answers to synthetic math "
                f"problems, and data.sources has {', '.join(kinds)}: use one source of type "
                "synthetic_math, or finetune.objective: sft"
            )
        if not self.model.init_from:
            raise ValueError(
                "finetune.objective: reinforce starts from a model that can already answer "
                "(a random one is never rewarded): set model.init_from to a trained run"
            )
        return self
