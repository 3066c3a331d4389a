"""Streaming: a model with memory (titans) evaluated and sampled past its training context,
the history read piece by piece with its state carried, exactly as one call over all of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neat.cli import cli
from neat.data.sampler import eval_batches
from neat.errors import ConfigError
from neat.evaluation import LossEvaluator, generate
from neat.evaluation.evaluator import LossEvaluatorConfig, build_loss_evaluator
from neat.interfaces import Batch
from neat.models.gpt import GPT, IGNORE_INDEX, GPTConfig
from neat.models.titans import Titans, TitansConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "titans_cpu.yaml"
SHAKESPEARE = EXAMPLE.parent / "data" / "tinyshakespeare.txt"
VOCAB = 40
BLOCK = 32


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: a second thread only adds synchronisation (and on a busy
    machine, spinning that makes a call a hundred times slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def titans() -> Titans:
    torch.manual_seed(0)
    cfg = TitansConfig(
        variant="mac",
        n_layer=2,
        n_head=2,
        n_embd=32,
        block_size=BLOCK,
        segment=16,
        memory={"chunk_size": 8},
    )
    model = Titans(cfg, VOCAB).double().eval()
    with torch.no_grad():  # data-dependent gates, so the memory matters from the start
        for memory in model.memories():
            memory.to_gates.weight.normal_(0.0, 0.5)
            memory.to_gates.bias.copy_(torch.tensor([2.0, 1.0, -5.0]))
            memory.to_out.weight.normal_(0.0, 0.3)  # and what it reads shows in the logits
    return model


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=BLOCK), VOCAB)


def masked_batches() -> list[Batch]:
    """Two batches of 2 x 100 tokens (4 pieces of 32, the last of 4), prompt tokens masked:
    the whole second piece of one row, and the whole second piece of every row of batch 2."""
    gen = torch.Generator().manual_seed(1)
    batches = []
    for b in range(2):
        x = torch.randint(0, VOCAB, (2, 100), generator=gen)
        y = torch.randint(0, VOCAB, (2, 100), generator=gen)
        y[0, 32:64] = IGNORE_INDEX
        y[1, 5:9] = IGNORE_INDEX
        if b == 1:
            y[:, 32:64] = IGNORE_INDEX
        batches.append(Batch(x, y))
    return batches


def one_call_loss(model: torch.nn.Module, batches: list[Batch]) -> float:
    """The mean loss over every counted target, each window read by one call."""
    nats, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            n = int((batch.targets != IGNORE_INDEX).sum())
            nats += float(model(batch.input_ids, batch.targets)["loss"].double()) * n
            count += n
    return nats / count


def test_streamed_eval_equals_one_call_over_each_window(titans: Titans) -> None:
    batches = masked_batches()
    token_bytes = [1] * VOCAB
    streamed = LossEvaluator(batches, token_bytes, torch.device("cpu"), piece_length=BLOCK)
    metrics = streamed.evaluate(titans)
    reference = one_call_loss(titans, batches)
    assert metrics["val_loss"] == pytest.approx(reference, rel=1e-5)
    assert set(metrics) == {"val_loss", "val_ppl", "val_bpb"}
    # the pieces do carry the memory: read each piece afresh and the loss is another one
    pieces = [
        Batch(b.input_ids[:, i : i + BLOCK], b.targets[:, i : i + BLOCK])
        for b in batches
        for i in range(0, 100, BLOCK)
        if (b.targets[:, i : i + BLOCK] != IGNORE_INDEX).any()
    ]
    forgetful = LossEvaluator(pieces, token_bytes, torch.device("cpu")).evaluate(titans)
    error = abs(metrics["val_loss"] - reference)
    assert abs(forgetful["val_loss"] - reference) > 100 * error


def test_the_builder_streams_windows_of_stream_length(titans: Titans) -> None:
    tokens = np.random.default_rng(0).integers(0, VOCAB, 2_000).astype(np.uint16)
    ctx: Any = SimpleNamespace(
        token_data=SimpleNamespace(
            val_splits=lambda: [tokens],
            tokenizer=SimpleNamespace(token_bytes=lambda: [1] * VOCAB),
        ),
        block_size=BLOCK,
        batch_size=2,
        device=torch.device("cpu"),
        precision="fp32",
    )
    cfg = LossEvaluatorConfig(stream=True, batches=2)
    evaluator = build_loss_evaluator(cfg, ctx)
    assert evaluator.piece_length == BLOCK
    assert [b.input_ids.shape for b in evaluator.batches] == [(2, 4 * BLOCK)] * 2
    expected = one_call_loss(titans, eval_batches(tokens, 2, 4 * BLOCK, 2))
    assert evaluator.evaluate(titans)["val_loss"] == pytest.approx(expected, rel=1e-5)
    longer = build_loss_evaluator(LossEvaluatorConfig(stream=True, stream_length=80), ctx)
    assert longer.batches[0].input_ids.shape[1] == 80
    plain = build_loss_evaluator(LossEvaluatorConfig(stream_length=80), ctx)
    assert plain.piece_length is None and plain.batches[0].input_ids.shape[1] == BLOCK


def test_streamed_eval_of_a_model_without_memory_is_one_clear_error() -> None:
    evaluator = LossEvaluator(masked_batches(), [1] * VOCAB, torch.device("cpu"), piece_length=32)
    model = tiny_gpt()
    model.train()
    with pytest.raises(ConfigError, match=r"evaluation\.stream.*titans") as info:
        evaluator.evaluate(model)
    assert "GPT" in str(info.value)
    assert model.training  # restored


def full_history_reference(
    model: torch.nn.Module,
    ids: torch.Tensor,
    steps: int,
    temperature: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Each step one call over the entire history, no state: what streaming must equal."""
    with torch.no_grad():
        for _ in range(steps):
            logits = model(ids)["logits"][:, -1, :].float()
            if temperature == 0.0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
                probs = torch.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            ids = torch.cat([ids, nxt], dim=1)
    return ids


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "sampled"])
def test_streamed_generation_equals_recomputing_the_whole_history(
    titans: Titans, temperature: float
) -> None:
    prompt = torch.randint(0, VOCAB, (1, 41), generator=torch.Generator().manual_seed(2))
    steps = 3 * BLOCK + 8 - prompt.shape[1]  # to 104 tokens: past 3 x block_size
    out = generate(
        titans,
        prompt,
        steps,
        block_size=BLOCK,
        temperature=temperature,
        generator=torch.Generator().manual_seed(5),
        stream=True,
    )
    reference = full_history_reference(
        titans, prompt, steps, temperature, torch.Generator().manual_seed(5)
    )
    assert out.shape[1] > 3 * BLOCK
    assert torch.equal(out, reference)
    # the history before the last block_size tokens does count (through the memory)
    with torch.no_grad():
        whole, window = (titans(ids)["logits"][0, -1] for ids in (out, out[:, -BLOCK:]))
    assert (whole - window).abs().max() > 1e-4


def test_streamed_generation_runs_each_full_segment_once(
    titans: Titans, monkeypatch: pytest.MonkeyPatch
) -> None:
    lengths: list[int] = []
    forward = Titans.forward

    def counted(self: Titans, ids: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        lengths.append(ids.shape[1])
        return forward(self, ids, *args, **kwargs)

    monkeypatch.setattr(Titans, "forward", counted)
    prompt = torch.zeros((1, 40), dtype=torch.long)
    generate(titans, prompt, 30, block_size=BLOCK, temperature=0.0, stream=True)
    # to 69 tokens: segments 0-16, 16-32, 32-48 and 48-64 committed, once each, and one call
    # per step on the rest (a whole segment when 48 and 64 tokens are there)
    assert max(lengths) == 16 and len(lengths) == 4 + 30
    assert lengths.count(16) == 4 + 2


def test_streamed_generation_needs_a_model_with_memory() -> None:
    prompt = torch.zeros((1, 3), dtype=torch.long)
    with pytest.raises(ConfigError, match=r"--stream.*titans"):
        generate(tiny_gpt(), prompt, 2, block_size=BLOCK, stream=True)


def neat(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), prog_name="neat", catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.stderr


def test_the_cli_streams_a_trained_titans_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:40_000], encoding="utf-8")
    run = tmp_path / "run"
    small = [
        f"data.path={corpus}",
        "model.n_layer=1",
        "model.n_embd=32",
        "model.block_size=32",
        "model.segment=16",
        "model.memory.chunk_size=8",
        "training.batch_size=4",
        "training.max_steps=6",
        "evaluation.interval=6",
        "evaluation.batches=1",
        "evaluation.stream=true",  # the evaluation during training streams too
        "checkpoint.interval=6",
        "monitoring.log_interval=6",
    ]
    sets = [arg for item in small for arg in ("--set", item)]
    neat("train", "-c", str(EXAMPLE), *sets, "--run-dir", str(run))
    text = neat(
        "generate", "--checkpoint", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "60",
        "--stream", "--seed", "3",
    )  # fmt: skip
    assert text.startswith("ROMEO:") and len(text) > 60
    evaluated = neat(
        "eval", "-c", str(EXAMPLE), *sets, "--checkpoint", str(run), "--json",
        "--set", "evaluation.stream_length=96",
    )  # fmt: skip
    assert "val_loss" in evaluated and "val_bpb" in evaluated


def test_the_cli_refuses_streaming_a_gpt_in_one_message(tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "gpt"
    sets = ["--set", "training.max_steps=2", "--set", "evaluation.interval=2"]
    sets += ["--set", "checkpoint.interval=2", "--set", "evaluation.batches=1"]
    streamed = ["--set", "evaluation.stream=true"]
    failed = tmp_path / "failed"
    err = neat("train", "-c", str(tiny_config), *sets, *streamed, "--run-dir", str(failed), code=2)
    assert "evaluation.stream" in err and "titans" in err and "Traceback" not in err
    neat("train", "-c", str(tiny_config), *sets, "--run-dir", str(run))
    err = neat("eval", "-c", str(tiny_config), *sets, *streamed, "--checkpoint", str(run), code=2)
    assert "evaluation.stream" in err and "titans" in err
    err = neat("generate", "--checkpoint", str(run), "--stream", code=2)
    assert "--stream" in err and "titans" in err
