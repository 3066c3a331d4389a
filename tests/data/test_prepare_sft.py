"""Supervised fine-tuning data: loss only on response tokens, end to end.

prompt_response JSONL -> masked shards -> targets IGNORE_INDEX at prompt positions -> no
gradient from prompt tokens -> a tiny GPT fine-tuned through the container learns a toy task.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neat.config import load_config
from neat.data import IGNORE_INDEX, BatchSampler, ByteTokenizer, JsonlSource, prepare_token_data
from neat.di import build_container
from neat.interfaces import Batch
from neat.models import GPT
from neat.models.gpt import IGNORE_INDEX as MODEL_IGNORE_INDEX
from neat.models.gpt import GPTConfig

EQUALS = ord("=")


def _addition_jsonl(
    path: Path,
    repeats: int = 3,
    seed: int = 0,
    answer: Callable[[int, int], int] = lambda a, b: (a + b) % 10,
) -> list[tuple[str, str]]:
    """Single-digit pairs: prompt "a+b=", response `answer(a, b)` (addition mod 10 unless
    told otherwise); every pair `repeats` times."""
    pairs = [(f"{a}+{b}=", str(answer(a, b))) for a in range(10) for b in range(10)] * repeats
    random.Random(seed).shuffle(pairs)
    lines = [json.dumps({"prompt": p, "response": r}) for p, r in pairs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return pairs


@pytest.fixture
def sft_batch(tmp_path: Path) -> Batch:
    path = tmp_path / "add.jsonl"
    _addition_jsonl(path)
    source = JsonlSource([str(path)], format="prompt_response")
    data = prepare_token_data(source, ByteTokenizer(), tmp_path / "cache", 0.1)
    assert data.has_mask
    return BatchSampler(data.weighted_train(), batch_size=8, block_size=20, seed=3).next_batch()


def test_targets_are_ignored_exactly_at_prompt_positions(sft_batch: Batch) -> None:
    # Documents are "a+b=" "c" <eot>: only the answer (after "=") and the end-of-text token
    # (after the answer) are targets; every prompt token, as a target, is IGNORE_INDEX.
    assert IGNORE_INDEX == MODEL_IGNORE_INDEX == -100
    x, y = sft_batch.input_ids, sft_batch.targets
    after_equals = x == EQUALS
    after_answer = torch.zeros_like(after_equals)
    after_answer[:, 1:] = x[:, :-1] == EQUALS
    trained = after_equals | after_answer
    assert bool((y[after_equals] >= ord("0")).all() and (y[after_equals] <= ord("9")).all())
    assert bool((y[after_answer] == ByteTokenizer.EOT).all())
    # Position 0's previous token is outside the window, so check the rest exactly.
    assert torch.equal((y != IGNORE_INDEX)[:, 1:], trained[:, 1:])
    assert bool((y[:, 1:][~trained[:, 1:]] == IGNORE_INDEX).all())


def test_prompt_tokens_receive_no_gradient(sft_batch: Batch) -> None:
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=20), ByteTokenizer().vocab_size
    )
    x, y = sft_batch.input_ids, sft_batch.targets
    trained = y != IGNORE_INDEX
    prompt = ~trained
    assert bool(prompt.any()) and bool(trained.any())

    def loss_and_grads(
        targets: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        model.zero_grad(set_to_none=True)
        out = model(x, targets)
        logits = out["logits"]
        logits.retain_grad()
        out["loss"].backward()
        return out["loss"].detach(), [p.grad.clone() for p in model.parameters()], logits

    loss, grads, logits = loss_and_grads(y)
    # The loss is the mean cross-entropy over the response positions alone.
    by_hand = F.cross_entropy(logits.detach()[trained].float(), y[trained])
    assert torch.allclose(loss, by_hand)
    # No gradient reaches the logits at prompt positions; it does at response positions.
    assert logits.grad is not None
    assert bool((logits.grad[prompt] == 0).all())
    assert bool((logits.grad[trained].abs().sum(-1) > 0).all())
    # Whatever token the data has at a prompt position, masked it changes nothing.
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):
        raw = torch.randint(0, 257, y.shape, generator=generator)
        raw[trained] = y[trained]  # the same responses, other prompt tokens
        changed = torch.where(trained, raw, torch.full_like(raw, IGNORE_INDEX))
        other_loss, other_grads, _ = loss_and_grads(changed)
        assert torch.equal(other_loss, loss)
        assert all(torch.equal(a, b) for a, b in zip(grads, other_grads, strict=True))
    # Without the mask the same batch trains on prompts too: a different loss.
    assert not torch.allclose(loss_and_grads(torch.where(trained, y, raw))[0], loss)


SFT_CONFIG = """\
name: sft
model: {type: gpt, n_layer: 1, n_head: 4, n_embd: 64, block_size: 20, dropout: 0.0}
data: {type: jsonl, path: add.jsonl, format: prompt_response, tokenizer: {type: char},
       val_fraction: 0.1}
optimization: {lr: 2.0e-3, min_lr: 2.0e-4, warmup_steps: 20, weight_decay: 0.0}
training: {max_steps: 500, batch_size: 32, seed: 1, device: cpu, precision: fp32}
evaluation: {interval: 500, batches: 4}
monitoring: {log_interval: 100, monitors: []}
checkpoint: {interval: 10000, save_final: false}
"""


@pytest.fixture
def one_thread() -> Iterator[None]:
    """A model this small trains fastest on one thread (and does not stall when another
    process holds a core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_tiny_model_fine_tuned_on_a_toy_task_learns_it(tmp_path: Path) -> None:
    # The larger of two digits: with an end-of-text id after every record (as there must be),
    # this one-layer model learns it in 500 steps (accuracy 1.00), where addition mod 10
    # stays at chance for over 1000 steps (measured; without separators it had learned that).
    pairs = _addition_jsonl(tmp_path / "add.jsonl", answer=max)
    (tmp_path / "sft.yaml").write_text(SFT_CONFIG, encoding="utf-8")
    container = build_container(load_config(tmp_path / "sft.yaml"), run_dir=tmp_path / "run")
    data = container.token_data()
    assert data.has_mask
    tokenizer = container.tokenizer()
    model = container.model()

    def accuracy() -> float:
        prompts = sorted(set(pairs[: int(len(pairs) * 0.9)]))  # held in: from the train split
        # as in training, where every record follows the end-of-text id of the one before
        start = [tokenizer.eot_id] if tokenizer.eot_id is not None else []
        ids = torch.tensor([start + tokenizer.encode(p) for p, _ in prompts])
        with torch.no_grad():
            model.eval()
            guesses = model(ids)["logits"][:, -1].argmax(-1).tolist()
        answers = [tokenizer.encode(r)[0] for _, r in prompts]
        return float(np.mean([g == a for g, a in zip(guesses, answers, strict=True)]))

    before = accuracy()
    state = container.trainer().fit()
    after = accuracy()
    assert state.step == 500
    assert before < 0.3 and after >= 0.9, (before, after)
    # The evaluator counts only response characters (the answer digit): a small val loss.
    evaluator = container.evaluator()
    assert sum(evaluator.counts) < sum(b.targets.numel() for b in evaluator.batches) / 3
    assert state.metrics["val_loss"] < 1.0


def test_loss_evaluator_counts_only_trained_targets(sft_batch: Batch) -> None:
    from neat.evaluation import LossEvaluator

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=20), 257)
    token_bytes = [1] * 256 + [0]
    x, y = sft_batch.input_ids, sft_batch.targets
    # Two batches with different numbers of trained targets: each weighs by its count.
    batches = [Batch(x[:3], y[:3]), Batch(x[3:], y[3:])]
    metrics = LossEvaluator(batches, token_bytes, torch.device("cpu")).evaluate(model)
    with torch.no_grad():
        logits = model(x)["logits"]
    trained = y != IGNORE_INDEX
    nats = F.cross_entropy(logits[trained].double(), y[trained], reduction="sum")
    assert metrics["val_loss"] == pytest.approx(float(nats) / int(trained.sum()), rel=1e-6)
    answer_bytes = int((y[trained] < 256).sum())  # the end-of-text token has no bytes
    assert metrics["val_bpb"] == pytest.approx(float(nats) / (np.log(2) * answer_bytes), rel=1e-6)
    # Without ignored targets it is exactly the plain LossEvaluator.
    plain = [Batch(x, torch.where(trained, y, x))]
    assert LossEvaluator(plain, token_bytes, torch.device("cpu")).evaluate(model) == LossEvaluator(
        plain, token_bytes, torch.device("cpu")
    ).evaluate(model)
