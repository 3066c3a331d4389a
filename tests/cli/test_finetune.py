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


@pytest.mark.parametrize("targets", ["[blocks.*]", "[blocks.*, lm_head]"])
def test_merge_lora_writes_a_plain_model_with_the_adapted_outputs(
    targets: str, base_run: Path, tiny_config: Path, tmp_path: Path
) -> None:
    import torch

    from neat.models.load import load_trained_model

    tuned = tmp_path / "lora"
    args = ["-c", str(tiny_config), "--run-dir", str(tuned), "--set", f"model.init_from={base_run}"]
    code, _, err = invoke(
        "train",
        *args,
        "--set",
        "finetune.method=lora",
        "--set",
        f"finetune.targets={targets}",
        "--set",
        "training.max_steps=6",
    )
    assert code == 0, err
    merged = tmp_path / "merged"
    code, out, err = invoke("checkpoints", "merge-lora", str(tuned), "--out", str(merged))
    assert code == 0, err
    assert "merged" in out
    # the base architecture's names; a merged head is untied from the embedding
    head = {"lm_head.weight"} if "lm_head" in targets else set()
    assert set(weights(merged)) == set(weights(base_run)) | head
    adapted, _, _ = load_trained_model(resolve_checkpoint(tuned))
    plain, _, config = load_trained_model(resolve_checkpoint(merged))
    assert config.finetune.method == "full" and config.model.init_from is None
    assert getattr(config.model, "tie_embeddings") is not bool(head)  # noqa: B009
    idx = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(0))
    adapted.eval(), plain.eval()
    with torch.no_grad():
        lora_logits, merged_logits = adapted(idx)["logits"], plain(idx)["logits"]
        base_model, _, _ = load_trained_model(resolve_checkpoint(base_run))
        base_model.eval()
        base_logits = base_model(idx)["logits"]
    assert (lora_logits - base_logits).abs().max() > 1e-6  # the adapters did change it
    torch.testing.assert_close(merged_logits, lora_logits, rtol=0, atol=1e-5)
    code, _, err = invoke("checkpoints", "merge-lora", str(tuned), "--out", str(merged))
    assert code != 0 and "already exists" in err  # nothing written into an existing folder
    code, _, err = invoke("checkpoints", "merge-lora", str(base_run), "--out", str(tmp_path / "x"))
    assert code != 0 and "not lora" in err
    assert not (tmp_path / "x").exists()
