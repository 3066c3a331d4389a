"""training.activation_checkpointing: which blocks recompute their activations in backward.

`full` (or `true`) is the model's own switch: a model that supports it has an
`activation_checkpointing` attribute and checkpoints every block itself. `selective`
checkpoints every other block, torchtitan's "selective layer" AC with ac_freq 2: about half
the activation memory of no checkpointing for about half the recompute of full. It is applied
from outside, the model untouched: the 2nd, 4th, ... module of every ModuleList named
`blocks` (counted over all of them in module order) gets a forward that runs its class's
forward under torch.utils.checkpoint while training.
"""

from __future__ import annotations

import types
from typing import Any, Literal

import torch
import torch.utils.checkpoint
from torch import nn

from neat.errors import ConfigError

__all__ = ["AC_FREQ", "apply_activation_checkpointing", "checkpoint_mode", "is_checkpointed"]

AC_FREQ = 2  # selective: one block in AC_FREQ is checkpointed
_MARK = "_neat_selective_ac"

Mode = Literal["none", "full", "selective"]


def checkpoint_mode(setting: bool | str) -> Mode:
    """The config value as one of three modes (`true` is `full`, as it always meant)."""
    if setting is True or setting == "full":
        return "full"
    if setting is False or setting == "none":
        return "none"
    if setting == "selective":
        return "selective"
    raise ConfigError(
        f"training.activation_checkpointing: unknown value {setting!r}; use false, true, full "
        "or selective"
    )


def apply_activation_checkpointing(module: nn.Module, setting: bool | str, model_type: str) -> None:
    """Switch the model's own full checkpointing on, or wrap every other block."""
    mode = checkpoint_mode(setting)
    if mode == "none":
        return
    if not hasattr(module, "activation_checkpointing"):
        raise ConfigError(
            f"training.activation_checkpointing: model type {model_type!r} does not support "
            "it; set it to false"
        )
    if mode == "full":
        setattr(module, "activation_checkpointing", True)  # noqa: B010  (nn.Module typing)
        return
    blocks = [
        block
        for name, child in module.named_modules()
        if isinstance(child, nn.ModuleList) and name.rsplit(".", 1)[-1] == "blocks"
        for block in child
    ]
    if not blocks:
        raise ConfigError(
            f"training.activation_checkpointing: selective wraps the model's `blocks`, and "
            f"model type {model_type!r} has none; use full"
        )
    for index, block in enumerate(blocks):
        if (index + 1) % AC_FREQ == 0:
            _checkpoint_forward(block)


def is_checkpointed(block: nn.Module) -> bool:
    """Whether selective checkpointing wrapped this block."""
    return bool(getattr(block, _MARK, False))


def _checkpoint_forward(block: nn.Module) -> None:
    # A bound method rather than a closure: copy.deepcopy (e.g. GRPO's frozen reference
    # policy) then binds the copy's forward to the copied block, not to this one. FSDP2's
    # hooks run around __call__, outside this forward, so a recompute finds the block's
    # parameters gathered, as with torch's checkpoint_wrapper inside fully_shard.
    block.forward = types.MethodType(_checkpointed_forward, block)
    setattr(block, _MARK, True)


def _checkpointed_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    forward = type(self).forward
    if self.training and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(
            forward, self, *args, use_reentrant=False, **kwargs
        )
    return forward(self, *args, **kwargs)
