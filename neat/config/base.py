"""Base classes of every config section, and the path type that resolves against the file."""

from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationInfo,
    field_validator,
)


class StrictModel(BaseModel):
    """Unknown keys are errors, numbers are finite and never booleans, and validated configs
    never change. Every section inherits this, plugin sections included, so no field can
    forget it: pydantic alone reads `max_steps: true` as 1 and `lr: .inf` as a rate."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _holds_a_boolean_for_a_number(value, field.annotation):
            raise ValueError("expected a number, not true/false")
        return value


def _holds_a_boolean_for_a_number(value: Any, annotation: Any) -> bool:
    """Whether `value` is (or, in a list, holds) a bool where `annotation` wants an int or a
    float and no bool (`PositiveInt | None`, `list[PositiveInt]`, ...)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _holds_a_boolean_for_a_number(value, args[0])
    if origin in (typing.Union, types.UnionType):
        if bool in args:
            return False
        return any(_holds_a_boolean_for_a_number(value, arg) for arg in args)
    if origin is list and isinstance(value, list) and args:
        return any(_holds_a_boolean_for_a_number(item, args[0]) for item in value)
    return isinstance(value, bool) and annotation in (int, float)


class ComponentConfig(StrictModel):
    """A section whose `type` picks the implementation (a model, a data source, ...)."""

    type: str


class CommandLineStr(str):
    """A string typed on the command line (`--set`): a relative path in it means the folder
    the user typed it in, not the config file's. Validation turns it into a plain str."""

    __slots__ = ()


# Messages that name an input's type ("expected a mapping, got str") describe what the user
# typed: a string.
CommandLineStr.__name__ = CommandLineStr.__qualname__ = "str"


def _resolve_path(value: Any, info: ValidationInfo) -> Any:
    """Relative paths resolve against the config file's folder (passed as validation context),
    those typed on the command line against the working directory."""
    if not isinstance(value, str | os.PathLike):
        return value
    text = os.path.expanduser(os.fspath(value))
    base = (
        os.getcwd() if isinstance(value, CommandLineStr) else (info.context or {}).get("base_dir")
    )
    if base is not None and not os.path.isabs(text):
        text = os.path.join(os.fspath(base), text)
    return os.path.normpath(os.path.abspath(text)) if base is not None else text


# A path (or glob pattern) kept as a string so glob characters survive.
PathStr = Annotated[str, BeforeValidator(_resolve_path)]


class ModelConfig(ComponentConfig):
    """Fields the training loop reads from every model section, whatever its type."""

    # True for models whose forward takes and returns a `state` carried between calls
    # (titans): only they can be evaluated or sampled as a stream.
    carries_state: ClassVar[bool] = False

    block_size: int = Field(default=64, gt=0, description="context length in tokens")
    vocab_size: int | None = Field(default=None, gt=0, description="default: the tokenizer's")
    init_from: PathStr | None = Field(
        default=None, description="start from this run's or checkpoint's weights (fresh optimizer)"
    )


class SourceConfig(ComponentConfig):
    """Fields every data source has. `weight` is its share of training batches in a mix."""

    weight: float = Field(default=1.0, gt=0.0)


class OptimizerConfig(ComponentConfig):
    """Fields the training loop reads from every optimization section."""

    grad_clip: float = Field(default=1.0, ge=0.0, description="max global grad norm; 0 disables")


class EarlyStoppingConfig(StrictModel):
    """Stop a run whose `metric` has not improved by more than `min_delta` for `patience`
    evaluations in a row."""

    metric: str = Field(default="val_loss", description="an evaluation metric")
    patience: PositiveInt = Field(default=5, description="evaluations without improvement")
    min_delta: float = Field(default=0.0, ge=0.0, description="the smallest improvement")
    mode: Literal["min", "max"] = Field(default="min", description="min: lower is better")


class SampleConfig(StrictModel):
    """A sample generated at each evaluation, always from the same seed (so samples of one
    run compare step by step, and the run's own random stream is untouched)."""

    prompt: str = Field(default="\n", description="the text the sample continues")
    max_new_tokens: PositiveInt = 200
    temperature: float = Field(default=0.8, ge=0.0, description="0: greedy")
    top_k: PositiveInt | None = 40
    seed: int = Field(default=1337, ge=0)


class EvaluatorConfig(ComponentConfig):
    """Fields the training loop reads from every evaluation section."""

    interval: int = Field(default=250, gt=0, description="steps between evaluations")
    early_stopping: EarlyStoppingConfig | None = Field(
        default=None, description="stop when the metric stops improving (default: never)"
    )
    sample: SampleConfig | None = Field(
        default=None, description="generate a sample at each evaluation (metrics.jsonl, logs)"
    )


def source_from_context(raw: Any, info: ValidationInfo, key: str) -> Any:
    """`raw` with `source` filled by the first data source noted under `key` in the validation
    context (sources validate before `evaluation`), so the saved config names it in full."""
    if not isinstance(raw, dict) or raw.get("source") is not None:
        return raw
    noted = info.context.get(key) if isinstance(info.context, dict) else None
    return {**raw, "source": noted[0]} if noted else raw


@dataclass(frozen=True)
class Section:
    """Marks a field as a component section; the loader uses it to suggest key names."""

    name: str
