"""`finetune:` end to end: a base run, then LoRA and SVF runs from it through the CLI, their
checkpoints evaluated and sampled, and the errors a user can cause."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from neat.cli import cli
from neat.persistence import resolve_checkpoint
from neat.persistence.manifest import MODEL_FILE


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), prog_name="neat")
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def base_run(tiny_config: Path, tmp_path: Path) -> Path:
    run = tmp_path / "base"
    code, _, err = invoke(
        "train", "-c", str(tiny_config), "--run-dir", str(run), "--set", "training.max_steps=10"
    )
    assert code == 0, err
    return run


def weights(run: Path) -> dict[str, object]:
    return dict(load_file(str(resolve_checkpoint(run) / MODEL_FILE)))


@pytest.mark.parametrize(
    ("method", "adapter_keys"),
    [("lora", {"lora_a", "lora_b"}), ("svf", {"z", "svd_u", "svd_s", "svd_v"})],
)
def test_an_adapted_run_trains_only_its_adapters_and_its_checkpoint_serves(
    method: str, adapter_keys: set[str], base_run: Path, tiny_config: Path, tmp_path: Path
) -> None:
    tuned = tmp_path / method
    code, _, err = invoke(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(tuned),
        "--set",
        f"model.init_from={base_run}",
        "--set",
        f"finetune.method={method}",
        "--set",
        "training.max_steps=4",
    )
    assert code == 0, err
    base, adapted = weights(base_run), weights(tuned)
    suffixes = {key.rsplit(".", 1)[-1] for key in adapted}
    assert adapter_keys <= suffixes
    # every base weight arrives unchanged, under the wrapped layer's `base.` name
    import torch

    for key, tensor in base.items():
        wrapped = key.replace(".weight", ".base.weight").replace(".bias", ".base.bias")
        found = adapted.get(key, adapted.get(wrapped))
        assert found is not None, key
        assert torch.equal(found, tensor), key  # type: ignore[arg-type]
    code, out, err = invoke("eval", "-c", str(tiny_config), "--checkpoint", str(tuned))
    assert code == 0, err
    assert "val_loss" in out
    code, out, err = invoke(
        "generate", "--checkpoint", str(tuned), "--prompt", "ROMEO:", "--max-new-tokens", "8"
    )
    assert code == 0, err
    assert out.strip()


def test_an_adapter_without_a_base_is_a_config_error(tiny_config: Path, tmp_path: Path) -> None:
    code, _, err = invoke(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(tmp_path / "run"),
        "--set",
        "finetune.method=lora",
    )
    assert code != 0
    assert "finetune.method" in err and "model.init_from" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_target_that_matches_nothing_names_the_key(
    base_run: Path, tiny_config: Path, tmp_path: Path
) -> None:
    code, _, err = invoke(
        "train",
        "-c",
        str(tiny_config),
        "--run-dir",
        str(tmp_path / "run"),
        "--set",
        f"model.init_from={base_run}",
        "--set",
        "finetune.method=lora",
        "--set",
        "finetune.targets=[no_such_layer]",
    )
    assert code != 0
    assert "finetune.targets" in err and "no_such_layer" in err
