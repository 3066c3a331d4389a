"""training.activation_checkpointing (full, selective) and training.fsdp's policy, in one
process: which blocks are wrapped, that recomputation changes no loss, and how the nulls of
training.fsdp are filled in. (Peak activation memory is a GPU measurement, not tested here.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.utils.checkpoint

import neat.models.gpt
from neat.config import load_config
from neat.config.schema import TrainingConfig
from neat.di import build_container
from neat.errors import ConfigError
from neat.models.gpt import GPT, GPTConfig
from neat.monitoring import read_metrics
from neat.training.activation_checkpointing import (
    apply_activation_checkpointing,
    checkpoint_mode,
    is_checkpointed,
)
from neat.training.distributed import FsdpPolicy, fsdp_policy

CONFIG = """\
name: ac
model: {type: gpt, n_layer: 4, n_head: 2, n_embd: 32, block_size: 32, dropout: 0.0}
data: {type: text, path: corpus.txt, tokenizer: {type: char}, val_fraction: 0.1}
optimization: {lr: 1.0e-3, warmup_steps: 2, decay_steps: 20}
training: {max_steps: 6, batch_size: 4, seed: 3, device: cpu}
evaluation: {interval: 100, batches: 1, batch_size: 4}
monitoring: {log_interval: 1, progress: plain, monitors: [metrics]}
checkpoint: {interval: 100, save_final: false}
"""


def tiny(n_layer: int = 4) -> GPT:
    return GPT(GPTConfig(n_layer=n_layer, n_head=2, n_embd=16, block_size=16), vocab_size=40)


class Spy:
    """Counts the blocks that pass through torch.utils.checkpoint (test-only patch)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.blocks: list[object] = []

    def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # the model passes the block; selective passes its class's forward and the block
        self.blocks.append(fn if isinstance(fn, torch.nn.Module) else args[0])
        return self.real(fn, *args, **kwargs)


def _backward(model: GPT) -> None:
    x = torch.randint(0, 40, (2, 16))
    loss = model(x, x)["loss"]
    assert loss is not None
    loss.backward()


def test_modes_of_the_setting() -> None:
    assert [checkpoint_mode(v) for v in (False, True, "full", "selective")] == [
        "none",
        "full",
        "full",
        "selective",
    ]
    assert TrainingConfig(activation_checkpointing=True).activation_checkpointing is True
    assert TrainingConfig(activation_checkpointing="selective").activation_checkpointing == (
        "selective"
    )
    with pytest.raises(ValueError, match="activation_checkpointing"):
        TrainingConfig(activation_checkpointing="every_layer")  # type: ignore[arg-type]


def test_selective_wraps_every_other_block(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny()
    apply_activation_checkpointing(model, "selective", "gpt")
    assert model.activation_checkpointing is False  # the model's own full switch stays off
    assert [is_checkpointed(b) for b in model.blocks] == [False, True, False, True]
    spy = Spy(torch.utils.checkpoint.checkpoint)
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", spy)
    _backward(model)
    assert spy.blocks == [model.blocks[1], model.blocks[3]]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 4, dtype=torch.long))
    assert len(spy.blocks) == 2  # evaluation and generation recompute nothing


def test_full_checkpoints_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny()
    for setting in (True, "full"):
        apply_activation_checkpointing(model, setting, "gpt")
        assert model.activation_checkpointing is True
        assert not any(is_checkpointed(b) for b in model.blocks)
    spy = Spy(neat.models.gpt.checkpoint)
    monkeypatch.setattr(neat.models.gpt, "checkpoint", spy)
    _backward(model)
    assert spy.blocks == list(model.blocks)


def test_a_model_without_blocks_is_refused() -> None:
    with pytest.raises(ConfigError, match="'linear' does not support it"):
        apply_activation_checkpointing(torch.nn.Linear(2, 2), "selective", "linear")


def test_a_copy_of_a_selective_model_recomputes_its_own_block() -> None:
    import copy

    model = tiny(2)
    apply_activation_checkpointing(model, "selective", "gpt")
    twin = copy.deepcopy(model)
    assert twin.blocks[1].forward.__self__ is twin.blocks[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("ac")
    shakespeare = Path(__file__).resolve().parents[2] / "examples/data/tinyshakespeare.txt"
    (work / "corpus.txt").write_text(shakespeare.read_text(encoding="utf-8")[:20_000])
    (work / "ac.yaml").write_text(CONFIG, encoding="utf-8")
    return work


def _losses(work: Path, name: str, *overrides: str) -> list[float]:
    run = work / name
    config = load_config(work / "ac.yaml", list(overrides))
    build_container(config, run_dir=run).trainer().fit()
    records = read_metrics(run / "metrics.jsonl")
    return [r["loss"] for r in records if r["event"] == "train"]


def test_recomputing_changes_no_loss(work: Path) -> None:
    plain = _losses(work, "plain")
    assert len(plain) == 6
    for setting in ("full", "selective"):
        got = _losses(work, setting, f"training.activation_checkpointing={setting}")
        assert got == pytest.approx(plain, rel=0, abs=1e-6), setting


def test_fsdp_policy_defaults_follow_the_precision() -> None:
    bf16, fp32 = torch.bfloat16, torch.float32
    assert fsdp_policy(None, None, True, "bf16") == FsdpPolicy(bf16, fp32, True)
    assert fsdp_policy(None, None, True, "fp32") == FsdpPolicy(fp32, fp32, True)
    assert fsdp_policy("bf16", "bf16", False, "fp32") == FsdpPolicy(bf16, bf16, False)
    assert TrainingConfig().fsdp.reshard_after_forward is True
    with pytest.raises(ValueError, match="param_dtype"):
        TrainingConfig.model_validate({"fsdp": {"param_dtype": "int8"}})


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_fsdp_gathers_in_the_policy_dtype(tmp_path: Path) -> None:
    """A one-process gloo group (FSDP2 shards over one rank): the blocks compute with bf16
    parameters while the stored parameters and their gradients stay fp32."""
    import torch.distributed as dist

    from neat.training.distributed import DistInfo, wrap_model

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        model = tiny(2)
        apply_activation_checkpointing(model, "selective", "gpt")
        policy = fsdp_policy(None, None, False, "bf16")
        wrap_model(model, DistInfo(world_size=1, mode="fsdp"), policy)
        seen: list[torch.dtype] = []
        for block in model.blocks:  # after FSDP2's own hook, which gathers the parameters
            block.register_forward_pre_hook(
                lambda block, args: seen.append(block.attn.c_attn.weight.dtype)
            )
        _backward(model)
        assert seen == [torch.bfloat16, torch.bfloat16]
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    finally:
        dist.destroy_process_group()
