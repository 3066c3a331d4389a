"""BLT entropy patching: the entropy definition, the exact boundary rules, incrementality with a
real (tiny, trained) causal entropy model, and calibration to a target patch size."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neat.config import load_config
from neat.di import build_container
from neat.models.blt.entropy import load_entropy_model
from neat.models.blt.patching import (
    EOT_ID,
    Mode,
    boundaries,
    calibrate_threshold,
    global_boundaries,
    monotonic_boundaries,
    next_byte_entropies,
    patch,
    patch_lengths,
    split_long_patches,
    word_start_fraction,
    word_starts,
)

SHAKESPEARE = Path(__file__).resolve().parents[2] / "examples" / "data" / "tinyshakespeare.txt"
MODES: tuple[Mode, ...] = ("global", "monotonic")

BYTE_CONFIG = """\
name: tiny-entropy
model: {type: gpt, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32, dropout: 0.0}
data: {type: text, path: corpus.txt, tokenizer: {type: byte}, val_fraction: 0.1}
optimization: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 10, decay_steps: 200}
training: {max_steps: 200, batch_size: 8, seed: 7, device: cpu, compile: false}
evaluation: {interval: 200, batches: 2}
monitoring: {log_interval: 100}
checkpoint: {interval: 200, keep_last: 1}
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread: two spin-wait when other processes hold a core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def train_byte_run(root: Path) -> Path:
    """A 2-layer byte GPT trained for 200 steps on 60 kB of tiny Shakespeare (seconds)."""
    text = SHAKESPEARE.read_text(encoding="utf-8")
    (root / "corpus.txt").write_text(text[:60_000], encoding="utf-8")
    (root / "tiny.yaml").write_text(BYTE_CONFIG, encoding="utf-8")
    run = root / "run"
    build_container(load_config(root / "tiny.yaml"), run_dir=run).trainer().fit()
    return run


@pytest.fixture(scope="module")
def entropy_model(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    model, block_size = load_entropy_model(train_byte_run(tmp_path_factory.mktemp("entropy")))
    assert block_size == 32
    return model


@pytest.fixture(scope="module")
def held_out() -> bytes:
    """Text the fixture model never trained on."""
    return SHAKESPEARE.read_bytes()[-4_000:]


class UniformOverContext(nn.Module):
    """Predicts uniformly over the first n outcomes, n = the ids it has read, so a position's
    entropy is exactly ln(context length): the window a prediction saw, made visible."""

    block_size = 64

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        b, t = ids.shape
        seen = torch.arange(1, t + 1).unsqueeze(1)
        logits = torch.where(torch.arange(EOT_ID + 1) < seen, 0.0, -math.inf)
        return {"logits": logits.expand(b, t, EOT_ID + 1)}


def naive_entropies(model: nn.Module, data: bytes, window: int, stride: int) -> torch.Tensor:
    """One forward per byte, straight from the definition: byte i is predicted from
    [EOT] + data, ids a(i)..i, where a(i) = 0 for i < window, else the start of chunk
    (i - window) // stride + 1, i.e. that index times `stride`."""
    ids = [EOT_ID, *data]
    out = []
    for i in range(len(data)):
        start = 0 if i < window else ((i - window) // stride + 1) * stride
        with torch.no_grad():
            logits = model(torch.tensor([ids[start : i + 1]]))["logits"][0, -1].double()
        logp = torch.log_softmax(logits, dim=-1)
        out.append(float(-(logp.exp() * logp).sum()))
    return torch.tensor(out, dtype=torch.float64)


# --- entropies -------------------------------------------------------------------------------


def test_entropies_are_in_nats_of_the_full_next_byte_distribution() -> None:
    class Uniform(nn.Module):
        block_size = 8

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*ids.shape, EOT_ID + 1)

    h = next_byte_entropies(Uniform(), list(b"hello world"), window=8)
    assert h.shape == (11,)
    assert torch.allclose(h, torch.full((11,), math.log(257.0)))


def test_each_byte_sees_at_most_window_bytes_fixed_by_its_position() -> None:
    window, stride = 16, 6
    h = next_byte_entropies(UniformOverContext(), list(range(70)), window=window, stride=stride)
    seen = [round(math.exp(x)) for x in h.tolist()]
    expected = [
        i + 1 if i < window else i - ((i - window) // stride + 1) * stride + 1 for i in range(70)
    ]
    assert seen == expected
    assert seen[:window] == list(range(1, window + 1))  # EOT + every earlier byte
    assert min(seen[window:]) == window - stride + 1 and max(seen) == window


def test_entropies_match_one_forward_per_byte(entropy_model: nn.Module, held_out: bytes) -> None:
    data = held_out[:60]
    for window, stride in [(32, 16), (12, 5), (20, 19)]:
        fast = next_byte_entropies(entropy_model, data, window=window, stride=stride)
        slow = naive_entropies(entropy_model, data, window, stride)
        assert torch.allclose(fast.double(), slow, atol=1e-5), (window, stride)


def test_short_input_is_one_forward_and_position_0_is_predicted_from_eot(
    entropy_model: nn.Module, held_out: bytes
) -> None:
    data = list(held_out[:20])
    with torch.no_grad():
        logits = entropy_model(torch.tensor([[EOT_ID, *data[:-1]]]))["logits"][0]
    logp = torch.log_softmax(logits, dim=-1)
    direct = -(logp.exp() * logp).sum(-1)
    assert torch.allclose(next_byte_entropies(entropy_model, data), direct, atol=1e-6)


def test_batches_rows_and_next_byte(entropy_model: nn.Module, held_out: bytes) -> None:
    rows = torch.tensor([list(held_out[:50]), list(held_out[50:100])])
    both = next_byte_entropies(entropy_model, rows, window=16, batch_size=3)
    assert both.shape == (2, 50)
    for row, h in zip(rows, both, strict=True):
        assert torch.allclose(h, next_byte_entropies(entropy_model, row, window=16), atol=1e-6)
    with_next = next_byte_entropies(entropy_model, rows, window=16, include_next=True)
    assert with_next.shape == (2, 51)
    assert torch.allclose(with_next[:, :50], both, atol=1e-6)
    longer = next_byte_entropies(entropy_model, torch.cat([rows, rows[:, :1]], 1), window=16)
    assert torch.allclose(with_next, longer, atol=1e-6)  # H[L] is the next byte's entropy


def test_entropy_arguments_are_checked(entropy_model: nn.Module) -> None:
    with pytest.raises(ValueError, match="block_size 32"):
        next_byte_entropies(entropy_model, [1, 2, 3], window=64)
    with pytest.raises(ValueError, match="stride"):
        next_byte_entropies(entropy_model, [1, 2, 3], window=8, stride=8)
    with pytest.raises(ValueError, match=r"0\.\.256"):
        next_byte_entropies(entropy_model, [1, 300], window=8)
    assert next_byte_entropies(entropy_model, [], window=8).shape == (0,)


# --- boundary rules --------------------------------------------------------------------------

entropy_lists = st.lists(
    st.floats(0.0, 5.5, allow_nan=False, width=32), min_size=1, max_size=60
).map(lambda xs: torch.tensor(xs, dtype=torch.float32))
thresholds = st.floats(-1.0, 6.0, allow_nan=False)


def naive_starts(h: list[float], threshold: float, mode: Mode) -> list[bool]:
    starts = [True]
    for t in range(1, len(h)):
        score = h[t] if mode == "global" else h[t] - h[t - 1]
        starts.append(score > threshold)
    return starts


@settings(deadline=None)  # a loaded CI box must not fail on timing
@given(entropy_lists, thresholds)
def test_rules_start_exactly_where_the_naive_loop_says(h: torch.Tensor, theta: float) -> None:
    assert global_boundaries(h, theta).tolist() == naive_starts(h.tolist(), theta, "global")
    assert monotonic_boundaries(h, theta).tolist() == naive_starts(h.tolist(), theta, "monotonic")


@settings(deadline=None)
@given(entropy_lists, thresholds, st.sampled_from(MODES), st.none() | st.integers(1, 7))
def test_lengths_cover_the_sequence(
    h: torch.Tensor, theta: float, mode: Mode, max_len: int | None
) -> None:
    lengths = patch_lengths(boundaries(h, theta, mode, max_patch_length=max_len))
    assert sum(lengths) == len(h) and min(lengths) >= 1
    if max_len is not None:
        assert max(lengths) <= max_len


@settings(deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=60), st.integers(1, 7))
def test_long_patches_split_into_max_length_pieces_and_a_remainder(
    flags: list[bool], max_len: int
) -> None:
    starts = torch.tensor([True, *flags[1:]])
    expected: list[int] = []
    for n in patch_lengths(starts):
        expected += [max_len] * (n // max_len) + ([n % max_len] if n % max_len else [])
    assert patch_lengths(split_long_patches(starts, max_len)) == expected


@settings(deadline=None)
@given(entropy_lists, thresholds, thresholds, st.sampled_from(MODES))
def test_a_higher_threshold_never_adds_patches(
    h: torch.Tensor, a: float, b: float, mode: Mode
) -> None:
    low, high = boundaries(h, min(a, b), mode), boundaries(h, max(a, b), mode)
    assert bool((high & ~low).sum() == 0)  # the starts at the higher θ are a subset
    assert len(patch_lengths(high)) <= len(patch_lengths(low))


def test_batched_rules_apply_per_row() -> None:
    h = torch.tensor([[0.5, 2.0, 1.0, 3.0], [3.0, 0.1, 0.2, 2.5]])
    assert global_boundaries(h, 1.5).tolist() == [
        [True, True, False, True],
        [True, False, False, True],
    ]
    assert monotonic_boundaries(h, 0.5).tolist() == [
        [True, True, False, True],
        [True, False, False, True],
    ]


# --- incremental patching (paper §2.4) --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_patching_a_prefix_is_the_prefix_of_the_patching(
    entropy_model: nn.Module, held_out: bytes, mode: Mode
) -> None:
    data = held_out[:150]
    window, stride = 16, 5  # many chunks: the sliding window matters
    full = next_byte_entropies(entropy_model, data, window=window, stride=stride)
    theta = calibrate_threshold(full, 4.0, mode)
    whole = boundaries(full, theta, mode)
    split = boundaries(full, theta, mode, max_patch_length=6)
    # every 7th length, and each length around the ends of the first chunks
    lengths = sorted({*range(1, len(data) + 1, 7), *range(14, 28), len(data)})
    for n in lengths:
        h = next_byte_entropies(entropy_model, data[:n], window=window, stride=stride)
        assert torch.allclose(h, full[:n], atol=1e-5), n
        assert torch.equal(boundaries(h, theta, mode), whole[:n]), n
        assert torch.equal(boundaries(h, theta, mode, max_patch_length=6), split[:n]), n


def test_calibrating_on_each_prefix_is_not_incremental(
    entropy_model: nn.Module, held_out: bytes
) -> None:
    """The negative control: a threshold that reads the whole text breaks the property, so the
    test above would catch patching that looks ahead."""
    data = held_out[:150]
    whole = patch(data, entropy_model, target_patch_size=4.0, window=16).starts
    prefixes = [patch(data[:n], entropy_model, target_patch_size=4.0, window=16) for n in (40, 80)]
    assert any(not torch.equal(p.starts, whole[: len(p.data)]) for p in prefixes)


# --- calibration -----------------------------------------------------------------------------


def mean_size(h: torch.Tensor, theta: float, mode: Mode) -> float:
    return h.numel() / int(boundaries(h, theta, mode).sum())


@settings(max_examples=60, deadline=None)
@given(entropy_lists, st.floats(1.0, 12.0), st.sampled_from(MODES))
def test_calibration_finds_the_closest_achievable_mean(
    h: torch.Tensor, target: float, mode: Mode
) -> None:
    theta = calibrate_threshold(h, target, mode)
    scores = h.double()[1:] if mode == "global" else h.double()[1:] - h.double()[:-1]
    candidates = [*scores.tolist(), (scores.min().item() - 1.0) if scores.numel() else 0.0]
    best = min(abs(mean_size(h, c, mode) - target) for c in candidates)
    assert abs(mean_size(h, theta, mode) - target) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", [3.0, 4.0, 6.0])
def test_calibration_hits_the_target_on_real_entropies(
    entropy_model: nn.Module, held_out: bytes, mode: Mode, target: float
) -> None:
    h = next_byte_entropies(entropy_model, held_out)
    theta = calibrate_threshold(h, target, mode)
    assert mean_size(h, theta, mode) == pytest.approx(target, rel=0.01)
    result = patch(held_out, entropy_model, threshold=theta, mode=mode)
    assert result.mean_patch_size == pytest.approx(target, rel=0.01)


def test_calibration_over_rows_pools_them(entropy_model: nn.Module, held_out: bytes) -> None:
    rows = torch.tensor([list(held_out[:2000]), list(held_out[2000:])])
    h = next_byte_entropies(entropy_model, rows)
    theta = calibrate_threshold(h, 5.0)
    assert h.numel() / int(global_boundaries(h, theta).sum()) == pytest.approx(5.0, rel=0.01)


# --- the pipeline and diagnostics ------------------------------------------------------------


def test_patch_returns_everything_that_decided_the_cuts(
    entropy_model: nn.Module, held_out: bytes
) -> None:
    text = held_out[:300].decode("utf-8")
    result = patch(text, entropy_model, target_patch_size=4.0, mode="monotonic")
    assert result.data == text.encode()
    assert b"".join(result.patches) == result.data
    assert result.lengths == [len(p) for p in result.patches]
    assert result.num_patches == int(result.starts.sum())
    assert result.mean_patch_size == pytest.approx(300 / result.num_patches)
    assert result.mode == "monotonic" and result.entropies.shape == (300,)
    again = patch(text.encode(), entropy_model, threshold=result.threshold, mode="monotonic")
    assert again.lengths == result.lengths


def test_patch_needs_exactly_one_of_threshold_and_target(entropy_model: nn.Module) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        patch("abc", entropy_model)
    with pytest.raises(ValueError, match="exactly one"):
        patch("abc", entropy_model, threshold=1.0, target_patch_size=4.0)
    with pytest.raises(ValueError, match="mode"):
        patch("abc", entropy_model, threshold=1.0, mode="topk")  # type: ignore[arg-type]


def test_word_starts() -> None:
    text = "ROMEO: 'tis\nBut é"
    assert word_starts(text).nonzero().flatten().tolist() == [0, 7, 8, 12, 16]
    starts = torch.zeros(len(text.encode()), dtype=torch.bool)
    starts[[0, 6, 12]] = True
    assert word_start_fraction(text, starts) == pytest.approx(2 / 3)


@pytest.mark.parametrize("mode", MODES)
def test_even_a_tiny_model_prefers_word_starts(
    entropy_model: nn.Module, held_out: bytes, mode: Mode
) -> None:
    result = patch(held_out, entropy_model, target_patch_size=4.0, mode=mode)
    chance = float(word_starts(held_out).float().mean())
    assert word_start_fraction(held_out, result.starts) > 2 * chance  # 0.68 and 0.61 vs 0.19
