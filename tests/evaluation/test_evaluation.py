"""Bits per byte arithmetic, the fixed-batch evaluator, and sampling."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch import nn

from neat.data.bpe import HFTokenizer, train_bpe
from neat.data.tokenizers import ByteTokenizer
from neat.errors import ConfigError
from neat.evaluation import LossEvaluator, bits_per_byte, filter_logits, generate
from neat.evaluation.generation import MAX_NEW_TOKENS, TextStream, iter_tokens
from neat.interfaces import Batch, ITokenizer


class Uniform(nn.Module):
    """Predicts every token with equal probability: loss is exactly ln(V)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        logits = torch.zeros(*x.shape, self.vocab) + self.anchor
        loss = (
            None
            if y is None
            else nn.functional.cross_entropy(logits.view(-1, self.vocab), y.view(-1))
        )
        return {"logits": logits, "loss": loss}


def test_bits_per_byte_definition() -> None:
    assert bits_per_byte(math.log(2) * 10, 10) == pytest.approx(1.0)
    assert bits_per_byte(math.log(2) * 10, 5) == pytest.approx(2.0)


def test_evaluator_on_a_uniform_model() -> None:
    vocab = 8
    token_bytes = [1, 1, 1, 1, 2, 2, 2, 2]  # ids 4..7 are two-byte characters
    x = torch.randint(0, vocab, (2, 5))
    y = torch.tensor([[0, 1, 4, 5, 2], [3, 3, 7, 1, 0]])
    evaluator = LossEvaluator([Batch(x, y)], token_bytes, torch.device("cpu"))
    metrics = evaluator.evaluate(Uniform(vocab))
    assert metrics["val_loss"] == pytest.approx(math.log(vocab))
    assert metrics["val_ppl"] == pytest.approx(vocab)
    n_bytes = sum(token_bytes[t] for t in y.flatten().tolist())
    assert metrics["val_bpb"] == pytest.approx(10 * math.log(vocab) / (math.log(2) * n_bytes))


def test_evaluator_restores_training_mode_and_is_repeatable() -> None:
    model = Uniform(4)
    model.train()
    batch = Batch(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    evaluator = LossEvaluator([batch], [1, 1, 1, 1], torch.device("cpu"))
    assert evaluator.evaluate(model) == evaluator.evaluate(model)
    assert model.training


def test_top_k_and_top_p_filtering() -> None:
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2, top_p=None)[0, 2:]).all()
    probs = torch.softmax(logits, dim=-1)[0]
    kept = filter_logits(logits, top_k=None, top_p=float(probs[0]) + 1e-3)
    assert torch.isfinite(kept[0, :2]).all() and torch.isinf(kept[0, 2:]).all()
    assert torch.isfinite(filter_logits(logits, top_k=None, top_p=1e-6)[0, 0])


class Counter(nn.Module):
    """Deterministic toy LM: the next token is (last + 1) mod V with high confidence."""

    def __init__(self, vocab: int = 5) -> None:
        super().__init__()
        self.vocab = vocab
        self.w = nn.Parameter(torch.zeros(()))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        logits = nn.functional.one_hot((x + 1) % self.vocab, self.vocab).float() * 5.0 + self.w
        return {"logits": logits, "loss": None}


def test_greedy_generation_follows_the_argmax() -> None:
    out = generate(Counter(), torch.tensor([[0]]), 6, block_size=4, temperature=0.0)
    assert out.tolist() == [[0, 1, 2, 3, 4, 0, 1]]


def test_sampling_is_reproducible_under_a_seed() -> None:
    def sample(seed: int) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        out = generate(
            Counter(), torch.tensor([[0]]), 30, block_size=4, temperature=2.0, generator=g
        )
        return out[0].tolist()

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_top_p_zero_and_top_k_one_keep_exactly_the_greedy_token() -> None:
    logits = torch.tensor(
        [[1.0, 3.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    )  # ties: argmax takes the first
    greedy = logits.argmax(dim=-1)
    for kept in [filter_logits(logits, None, 0.0), filter_logits(logits, 1, None)]:
        assert torch.isfinite(kept).sum(dim=-1).tolist() == [1, 1]
        assert kept.argmax(dim=-1).tolist() == greedy.tolist()
        assert torch.isfinite(kept[torch.arange(2), greedy]).all()


@pytest.mark.parametrize(
    ("top_p", "kept"), [(0.5, 1), (0.6, 2), (0.79, 2), (0.81, 3), (0.999, 3), (1.0, 3)]
)
def test_nucleus_is_the_smallest_set_that_reaches_top_p(top_p: float, kept: int) -> None:
    logits = torch.tensor([[0.2, 0.5, 0.3]]).log()
    out = filter_logits(logits, None, top_p)
    assert int(torch.isfinite(out).sum()) == kept
    assert torch.isfinite(out[0, 1])  # the likeliest token always stays


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"top_p": float("nan")}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
    ],
)
def test_sampling_settings_that_mean_nothing_are_refused(
    setting: dict[str, float], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        generate(Counter(), torch.tensor([[0]]), 3, block_size=4, **setting)  # type: ignore[arg-type]


def test_max_new_tokens_is_capped() -> None:
    with pytest.raises(
        ConfigError, match=f"max_new_tokens must be between 0 and {MAX_NEW_TOKENS:,}"
    ):
        generate(Counter(), torch.tensor([[0]]), 10**12, block_size=4)


def test_top_p_zero_and_a_tiny_temperature_sample_the_greedy_text() -> None:
    greedy = generate(Counter(), torch.tensor([[0]]), 12, block_size=4, temperature=0.0)
    g = torch.Generator().manual_seed(0)
    nucleus = generate(
        Counter(), torch.tensor([[0]]), 12, block_size=4, temperature=5.0, top_p=0.0, generator=g
    )
    cold = generate(Counter(), torch.tensor([[0]]), 12, block_size=4, temperature=1e-30)
    assert nucleus.tolist() == greedy.tolist() == cold.tolist()


class CountingCounter(Counter):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        self.calls += 1
        return super().forward(x, y)


def test_iter_tokens_yields_each_token_as_it_is_sampled() -> None:
    model = CountingCounter()
    model.train()
    tokens = iter_tokens(model, torch.tensor([[0]]), MAX_NEW_TOKENS, block_size=4, temperature=0)
    assert [int(next(tokens)) for _ in range(3)] == [1, 2, 3]
    assert model.calls == 3 and not model.training
    tokens.close()
    assert model.training  # restored when the consumer stops early


def _pieces(tokenizer: ITokenizer, ids: list[int]) -> list[str]:
    stream = TextStream(tokenizer)
    return [stream.push([i]) for i in ids] + [stream.finish()]


def test_text_stream_holds_back_a_split_character() -> None:
    ids = list("a€😀".encode())
    assert _pieces(ByteTokenizer(), ids) == ["a", "", "", "€", "", "", "", "😀", ""]
    cut = list("a€".encode())[:-1]  # generation stopped inside a character
    assert "".join(_pieces(ByteTokenizer(), cut)) == ByteTokenizer().decode(cut) == "a\ufffd"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 256), max_size=40))
def test_text_stream_of_any_byte_ids_joins_to_the_whole_decode(ids: list[int]) -> None:
    assert "".join(_pieces(ByteTokenizer(), ids)) == ByteTokenizer().decode(ids)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_text_stream_of_valid_text_never_shows_a_broken_character(text: str) -> None:
    tokenizers: list[ITokenizer] = [ByteTokenizer(), _bpe_for_hypothesis()]
    for tokenizer in tokenizers:
        pieces = _pieces(tokenizer, tokenizer.encode(text))
        assert "".join(pieces) == tokenizer.decode(tokenizer.encode(text))
        assert not any("\ufffd" in piece for piece in pieces) or "\ufffd" in text


_BPE: list[HFTokenizer] = []


def _bpe_for_hypothesis() -> HFTokenizer:
    """Hypothesis forbids function-scoped fixtures; train the tokenizer once."""
    if not _BPE:
        _BPE.append(train_bpe(["Wherefore art thou Römeo? ünd 😀 € naïve " * 20], 300))
    return _BPE[0]


def test_text_stream_keeps_the_spaces_a_metaspace_decoder_strips_at_the_start() -> None:
    vocab = {"<unk>": 0, "▁hello": 1, "▁world": 2, "▁again": 3}
    inner = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    inner.pre_tokenizer = pre_tokenizers.Metaspace()
    inner.decoder = decoders.Metaspace()
    tokenizer = HFTokenizer(inner)
    ids = tokenizer.encode("hello world again")
    assert _pieces(tokenizer, ids) == ["hello", " world", " again", ""]
