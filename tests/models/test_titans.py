"""Titans as a model: streaming, causality, batch independence, gradients, config errors and
the CLI run of the example (float64 where exactness matters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from pydantic import ValidationError

from neat.cli import cli
from neat.config import load_config
from neat.models.titans import Titans, TitansConfig
from neat.models.titans.memory import NeuralMemory

VOCAB = 19
VARIANTS = ["mac", "mag", "mal"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "titans_cpu.yaml"


def tiny(variant: str, **fields: Any) -> Titans:
    torch.manual_seed(0)
    cfg = TitansConfig(
        variant=variant,
        **{
            "n_layer": 2,
            "n_head": 2,
            "n_embd": 16,
            "block_size": 16,
            "segment": 8,
            "persistent_tokens": 2,
            "memory": {"chunk_size": 4},
            **fields,
        },
    )
    model = Titans(cfg, VOCAB).double().eval()
    with torch.no_grad():  # data-dependent gates, not the constant ones of the init
        for block in model.blocks:
            block.memory.to_gates.weight.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("variant", VARIANTS)
def test_streaming_segment_by_segment_equals_one_call(variant: str) -> None:
    model = tiny(variant)
    x = torch.randint(0, VOCAB, (2, 40))  # 2.5 blocks: a partial segment at the end
    whole = model(x)["logits"]
    state, pieces = None, []
    for start in (0, 8, 24, 32):
        stop = {0: 8, 8: 24, 24: 32, 32: 40}[start]
        out = model(x[:, start:stop], state=state)
        pieces.append(out["logits"])
        state = out["state"]
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=0, atol=1e-10)


def future_moves_past(model: Titans, cut: int) -> bool:
    torch.manual_seed(1)
    x = torch.randint(0, VOCAB, (2, 24))
    moved = x.clone()
    moved[:, cut:] = (moved[:, cut:] + 1) % VOCAB
    a, b = model(x)["logits"], model(moved)["logits"]
    assert not torch.allclose(a[:, cut:], b[:, cut:])
    return not torch.allclose(a[:, :cut], b[:, :cut], rtol=0, atol=0)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cut", [3, 8, 13])  # inside a chunk, at a segment start, mid-segment
def test_every_variant_is_causal(variant: str, cut: int) -> None:
    assert not future_moves_past(tiny(variant), cut)


@pytest.mark.parametrize("variant", VARIANTS)
def test_reading_after_the_write_is_caught_as_a_leak(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative control: a memory that writes a chunk before reading it sees the future."""
    forward = NeuralMemory.forward

    def write_then_read(self: NeuralMemory, x: torch.Tensor, state: Any = None) -> Any:
        _, written = forward(self, x, state)
        return self.read(x, written), written

    monkeypatch.setattr(NeuralMemory, "forward", write_then_read)
    assert future_moves_past(tiny(variant), 3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sequences_of_a_batch_and_successive_batches_share_nothing(variant: str) -> None:
    model = tiny(variant)
    x = torch.randint(0, VOCAB, (3, 16))
    together = model(x)["logits"]
    for b in range(3):
        alone = model(x[b : b + 1])["logits"]
        torch.testing.assert_close(alone, together[b : b + 1], rtol=0, atol=1e-12)
    torch.testing.assert_close(model(x)["logits"], together, rtol=0, atol=0)  # no state kept


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_outer_loss_trains_the_memory_projections_and_gates(variant: str) -> None:
    model = tiny(variant).train()
    x = torch.randint(0, VOCAB, (2, 16))
    model(x, x)["loss"].backward()  # type: ignore[union-attr]
    for i, block in enumerate(model.blocks):
        for name, p in block.memory.named_parameters():
            assert p.grad is not None and p.grad.abs().max() > 0, f"block {i} memory.{name}"
    assert model.blocks[0].attn.persistent.grad.abs().max() > 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "keys"),
    [
        ({"segment": 24}, ["model.block_size", "model.segment"]),
        ({"segment": 10}, ["model.segment", "model.memory.chunk_size"]),
        ({"attention": "hyena", "position": "none"}, ["model.attention"]),
        ({"position": "learned"}, ["model.position"]),
        ({"n_embd": 30, "n_head": 4}, ["n_embd", "n_head"]),
    ],
)
def test_impossible_configs_name_their_keys(fields: dict[str, Any], keys: list[str]) -> None:
    base = {"block_size": 64, "segment": 32, "memory": {"chunk_size": 8}}
    with pytest.raises(ValidationError) as info:
        TitansConfig(**{**base, **fields})
    for key in keys:
        assert key in str(info.value)


def test_flops_count_the_memory_and_the_segment_not_the_whole_context() -> None:
    model = tiny("mac")
    cfg = model.cfg
    assert model.flops_per_token(16) > 6 * model.num_params()
    # attention is local: a longer sequence adds no FLOPs per token
    assert model.flops_per_token(4096) == model.flops_per_token(cfg.segment)


def test_the_example_trains_resumes_evaluates_and_samples(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text((EXAMPLE.parent / "data/tinyshakespeare.txt").read_text()[:40_000])
    run = tmp_path / "run"
    small = [
        f"data.path={corpus}",
        "model.n_layer=1",
        "model.n_embd=32",
        "model.block_size=32",
        "model.segment=16",
        "model.memory.chunk_size=8",
        "training.batch_size=4",
        "evaluation.interval=4",
        "evaluation.batches=1",
        "checkpoint.interval=4",
        "monitoring.log_interval=4",
    ]
    sets = [arg for item in small for arg in ("--set", item)]

    def neat(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), prog_name="neat", catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert load_config(EXAMPLE).model.type == "titans"
    train = ["train", "-c", str(EXAMPLE), *sets, "--run-dir", str(run)]
    neat(*train, "--set", "training.max_steps=4")
    neat(*train, "--set", "training.max_steps=8", "--resume", "auto")
    assert (run / "checkpoints" / "step_8").is_dir()
    text = neat("generate", "--checkpoint", str(run), "--prompt", "ROMEO:", "--max-new-tokens=40")
    assert text.startswith("ROMEO:") and len(text) > 40


@pytest.mark.parametrize("variant", VARIANTS)
def test_trains_under_bf16_autocast_with_the_memory_in_fp32(variant: str) -> None:
    model = tiny(variant).float().train()
    x = torch.randint(0, VOCAB, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, x)
    loss = out["loss"]
    assert isinstance(loss, torch.Tensor) and torch.isfinite(loss)
    loss.backward()
    state = out["state"]
    assert isinstance(state, tuple) and state[0].weights[0].dtype == torch.float32


def test_streamed_eval_of_a_model_without_memory_fails_when_the_config_loads(
    tmp_path: Path,
) -> None:
    """Before training, not at the first evaluation (which would lose the steps before it)."""
    config = tmp_path / "gpt.yaml"
    config.write_text(
        "data: {type: text, path: corpus.txt}\nevaluation: {stream: true}\n", encoding="utf-8"
    )
    (tmp_path / "corpus.txt").write_text("abc " * 500, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "-c", str(config)], prog_name="neat")
    assert result.exit_code == 2
    assert "evaluation.stream" in result.output and "model.type gpt" in result.output
    assert load_config(config, ["model.type=titans", "model.block_size=64"]).evaluation
