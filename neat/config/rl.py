"""`rl:` — group relative policy optimisation (`training.objective: grpo`).

For each prompt the policy samples `group_size` completions; each is scored by the weighted
sum of `rewards`; advantages are the rewards normalised within the group; the clipped-ratio
objective with a KL penalty to the frozen reference is minimised (Shao et al. 2024,
DeepSeekMath, eq. 3, "GRPO").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

from pydantic import Field, PositiveInt, model_validator

from neat.config.base import ComponentConfig, StrictModel
from neat.config.registry import component

if TYPE_CHECKING:
    RewardSection: TypeAlias = ComponentConfig
else:
    RewardSection = component("reward")

__all__ = ["RL_SOURCES", "RLConfig", "RewardConfig", "check_rl"]

# the data sources whose problems can be prompts (each names its reference answer)
RL_SOURCES = ("synthetic_math", "double_integrator")


class RewardConfig(ComponentConfig):
    """Fields every reward has; the total reward is the weighted sum."""

    # the data source types whose answers the reward can score (empty: any prompt source)
    tasks: ClassVar[tuple[str, ...]] = ()

    weight: float = Field(default=1.0, description="its share of the total reward")


class RLConfig(StrictModel):
    group_size: PositiveInt = Field(
        default=8, ge=2, description="completions sampled per prompt (G); advantages compare them"
    )
    max_new_tokens: PositiveInt = Field(default=512, description="per completion")
    temperature: float = Field(default=1.0, gt=0.0, description="sampling the completions")
    top_k: PositiveInt | None = Field(default=None, description="sample from the k likeliest")
    clip: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="the ratio is clipped to [1 - clip, 1 + clip]"
    )
    kl_coef: float = Field(
        default=0.04, ge=0.0, description="beta: weight of the KL penalty to the reference"
    )
    reference: Literal["init_from", "none"] = Field(
        default="init_from",
        description="init_from: a frozen copy of the starting weights; none: no KL penalty",
    )
    length_norm: Literal["token", "sequence"] = Field(
        default="token",
        description="token: average over every completion token of the batch (no length "
        "bias, Yu et al. 2025, DAPO); sequence: per completion, then over completions (GRPO)",
    )
    rewards: list[RewardSection] = Field(
        default_factory=lambda: [{"type": "exact_match"}], min_length=1, validate_default=True
    )

    @model_validator(mode="after")
    def _kl_needs_a_reference(self) -> RLConfig:
        if self.reference == "none" and self.kl_coef > 0:
            raise ValueError(
                f"rl.kl_coef is {self.kl_coef} and rl.reference is none: a KL penalty needs a "
                "reference; set rl.kl_coef: 0 or rl.reference: init_from"
            )
        return self


def check_rl(config: Any) -> None:
    """What `training.objective: grpo` needs of the rest of the config, as one error each."""
    if config.training.objective != "grpo":
        return
    kinds = [source.type for source in config.data.sources]
    if len(kinds) != 1 or kinds[0] not in RL_SOURCES:
        raise ValueError(
            "training.objective: grpo samples answers to a source's problems, and data.sources "
            f"has {', '.join(kinds)}: use one source of type {' or '.join(RL_SOURCES)}"
        )
    for i, reward in enumerate(config.rl.rewards):
        tasks = getattr(type(reward), "tasks", ())
        if tasks and kinds[0] not in tasks:
            raise ValueError(
                f"rl.rewards.{i}: reward {reward.type!r} scores {' or '.join(tasks)} answers, "
                f"and the data source is {kinds[0]}: remove it or change the source"
            )
    if config.finetune.objective != "sft" or config.mvot.discrepancy_weight > 0:
        raise ValueError(
            "training.objective: grpo is the whole objective: set finetune.objective: sft "
            "(its default) and mvot.discrepancy_weight: 0"
        )
    if config.model.type == "vq":
        raise ValueError("training.objective: grpo needs a language model, not model.type: vq")
    if config.rl.reference == "init_from" and not config.model.init_from:
        raise ValueError(
            "rl.reference: init_from keeps the starting weights as the KL reference, and "
            "model.init_from is not set: set it to the SFT run to start from, or rl.reference: "
            "none with rl.kl_coef: 0"
        )
