"""Apple MPS without an Apple machine: `training.device: auto` picks it when present, the
allocator's watermark variables are made consistent (or refused) before anything is
allocated, precision stays fp32, and a missing MPS operation is one clear error."""

from __future__ import annotations

import click
import pytest
import torch
from click.testing import CliRunner

from neat.cli.common import user_errors
from neat.errors import ConfigError
from neat.optimization.precision import resolve_precision
from neat.training.device import MPS_HIGH, MPS_LOW, mps_watermarks, resolve_device


@pytest.fixture
def apple(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with MPS and no CUDA (the one thing this test machine cannot be)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.delenv(MPS_HIGH, raising=False)
    monkeypatch.delenv(MPS_LOW, raising=False)


def test_auto_picks_mps_and_fixes_a_lone_low_high_watermark(
    apple: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv(MPS_HIGH, "1.0")
    device = resolve_device("auto")
    assert device.type == "mps" and resolve_device("mps").type == "mps"
    assert os.environ[MPS_LOW] == "1"  # the default 1.4 would be above the high 1.0
    assert resolve_precision("auto", device) == "fp32"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {}),
        ({MPS_HIGH: "0.0"}, {}),  # no limit: the default low one is fine
        ({MPS_HIGH: "1.7"}, {}),
        ({MPS_HIGH: "0.8"}, {MPS_LOW: "0.8"}),
        ({MPS_HIGH: "1.2", MPS_LOW: "1.0"}, {}),
    ],
)
def test_watermarks_that_work(environ: dict[str, str], expected: dict[str, str]) -> None:
    assert mps_watermarks(environ) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({MPS_HIGH: "2.5"}, "outside [0, 2]"),
        ({MPS_HIGH: "lots"}, "is not a number"),
        ({MPS_HIGH: "1.2", MPS_LOW: "1.5"}, f"set {MPS_LOW} at most 1.2"),
        ({MPS_LOW: "2.5"}, "outside [0, 2]"),
    ],
)
def test_watermarks_the_allocator_would_refuse(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        mps_watermarks(environ)


def test_without_mps_an_explicit_mps_device_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")


def test_a_missing_mps_operation_says_how_to_fall_back() -> None:
    @click.command()
    @user_errors
    def step() -> None:
        raise NotImplementedError(
            "The operator 'aten::foo' is not currently implemented for the MPS device."
        )

    result = CliRunner().invoke(step, [])
    assert result.exit_code == 2
    assert "PYTORCH_ENABLE_MPS_FALLBACK=1" in result.output and "aten::foo" in result.output
