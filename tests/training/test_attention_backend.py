"""`training.attention_backend`: which SDPA kernels stay on (set process-wide, as TF32 is)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from neat.config import validate_config
from neat.errors import ConfigError
from neat.training.device import ATTENTION_BACKENDS, set_attention_backend

KERNELS = ("flash", "mem_efficient", "cudnn", "math")


def enabled() -> dict[str, bool]:
    return {k: bool(getattr(torch.backends.cuda, f"{k}_sdp_enabled")()) for k in KERNELS}


@pytest.fixture(autouse=True)
def restore_kernels() -> Iterator[None]:
    before = enabled()
    yield
    for kernel, on in before.items():
        getattr(torch.backends.cuda, f"enable_{kernel}_sdp")(on)


@pytest.mark.parametrize("name", sorted(ATTENTION_BACKENDS))
def test_only_the_chosen_kernels_and_math_stay_on_for_cuda(name: str) -> None:
    set_attention_backend(name, torch.device("cuda"))
    on = {k for k, v in enabled().items() if v}
    assert on == set(ATTENTION_BACKENDS[name])
    assert "math" in on  # the fallback for shapes a fast kernel does not take


def test_auto_and_other_devices_leave_pytorchs_choice() -> None:
    before = enabled()
    set_attention_backend("auto", torch.device("cuda"))
    set_attention_backend("cudnn", torch.device("cpu"))
    assert enabled() == before


def test_an_unknown_backend_is_one_config_error(tmp_path: object) -> None:
    raw = {
        "model": {"type": "gpt", "n_layer": 1, "n_head": 1, "n_embd": 8, "block_size": 8},
        "data": {"type": "text", "path": "x.txt"},
        "training": {"attention_backend": "fa9"},
    }
    with pytest.raises((ConfigError, ValueError), match="attention_backend"):
        validate_config(raw)
