"""BLT: hash n-grams, patch bookkeeping, masks, causality (with negative controls), padding,
loss, training, and a run through the real container and `neat eval`."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from pydantic import ValidationError

import neat.models.blt.model as blt_model
from neat.cli import cli
from neat.config import build, load_config
from neat.di.container import build_container
from neat.interfaces.contexts import ModelContext
from neat.models import IGNORE_INDEX
from neat.models.blt import BLTConfig, build_blt
from neat.models.blt.entropy import EntropyPatcher, _calibration_rows
from neat.models.blt.model import (
    BLT,
    HASH_PRIME,
    HashNgramEmbedding,
    StaticPatcher,
    decoder_patch_ids,
    encoder_cross_mask,
    ngram_hashes,
    patch_ids_from_starts,
)
from neat.monitoring import read_metrics

REPO = Path(__file__).resolve().parents[2]
VOCAB = 257


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: a second thread only adds synchronisation (and on a busy
    machine, spinning that makes a step ten times slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny(**overrides: object) -> BLT:
    torch.manual_seed(0)
    fields: dict[str, object] = {
        "block_size": 32,
        "local_dim": 16,
        "local_heads": 2,
        "global_dim": 32,
        "global_heads": 2,
        "global_layers": 2,
        "hash_buckets": 64,
        **overrides,
    }
    return BLT(BLTConfig(**fields), VOCAB)  # type: ignore[arg-type]


def random_starts(b: int, t: int, p: float = 0.4, seed: int = 0) -> torch.Tensor:
    """(B, L + 1) random patch starts with position 0 set: many length-1 patches."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.rand(b, t + 1, generator=g) < p
    starts[:, 0] = True
    return starts


# -- hash n-gram embeddings -----------------------------------------------------------------------


def naive_hash(window: list[int], buckets: int) -> int:
    """Σ_j w_j·prime^j wrapped to int64 (as the reference's int64 tensors wrap), mod buckets."""
    value = int(sum(w * HASH_PRIME**j for j, w in enumerate(window))) % (1 << 64)
    if value >= 1 << 63:
        value -= 1 << 64
    return value % buckets


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
def test_ngram_hash_matches_naive_with_left_padding(n: int) -> None:
    ids = torch.randint(0, 257, (2, 12), generator=torch.Generator().manual_seed(n))
    buckets = 1009
    got = ngram_hashes(ids, n, buckets)
    for row in range(2):
        padded = [0] * (n - 1) + ids[row].tolist()  # zeros before the start
        for i in range(12):
            window = padded[i : i + n]  # the n bytes ending at byte i
            if i < n - 1:
                assert window[: n - 1 - i] == [0] * (n - 1 - i)
            assert int(got[row, i]) == naive_hash(window, buckets), (row, i)
    assert got.min() >= 0 and got.max() < buckets


def test_hash_embedding_sums_byte_and_ngram_rows() -> None:
    torch.manual_seed(0)
    emb = HashNgramEmbedding(VOCAB, 8, [3, 5], buckets=31)
    ids = torch.randint(0, 256, (1, 7))
    expected = emb.byte.weight[ids[0]].clone()
    for n, table in zip([3, 5], emb.tables, strict=True):
        padded = [0] * (n - 1) + ids[0].tolist()
        rows = [naive_hash(padded[i : i + n], 31) for i in range(7)]
        expected += table.weight[rows]  # type: ignore[index]
    torch.testing.assert_close(emb(ids)[0], expected)


# -- patch bookkeeping and masks ------------------------------------------------------------------


def test_patch_and_decoder_ids_of_the_worked_example() -> None:
    # patch lengths [1, 3, 2] over 5 input bytes and the next byte (research notes §1.1)
    starts = torch.tensor([[True, True, False, False, True, False]])
    assert patch_ids_from_starts(starts[:, :5]).tolist() == [[0, 1, 1, 1, 2]]
    assert decoder_patch_ids(starts).tolist() == [[0, 0, 0, 1, 1]]


def test_decoder_reads_only_patches_that_end_at_or_before_the_byte() -> None:
    starts = random_starts(4, 40, seed=3)
    patch_ids = patch_ids_from_starts(starts)  # over the 41 positions, the next byte included
    dec = decoder_patch_ids(starts)
    for b in range(4):
        for i in range(40):
            j = int(dec[b, i])
            assert j == int(patch_ids[b, i + 1]) - 1  # the patch before byte i+1's patch
            if j >= 0:
                assert int((patch_ids[b] == j).nonzero().max()) <= i


def test_static_patcher_starts_every_k_bytes() -> None:
    starts = StaticPatcher(4)(torch.zeros(2, 9, dtype=torch.long))
    assert starts.shape == (2, 10)
    assert starts[0].nonzero().flatten().tolist() == [0, 4, 8]


def test_encoder_mask_lets_a_slot_see_only_its_patch() -> None:
    starts = torch.tensor([[True, False, True, True, False], [True, False, False, False, False]])
    patch_ids = patch_ids_from_starts(starts)
    mask = encoder_cross_mask(patch_ids, patch_ids[:, -1] + 1, max_patches=3, k=2)
    assert mask.shape == (2, 1, 6, 5)
    own = mask[0, 0, ::2]  # slot 0 of each patch
    assert own.tolist() == [
        [True, True, False, False, False],
        [False, False, True, False, False],
        [False, False, False, True, True],
    ]
    assert torch.equal(mask[0, 0, ::2], mask[0, 0, 1::2])  # both slots alike
    assert mask[1, 0, :2].all() and mask[1, 0, 2:].all()  # row 1: one patch, then padding


def test_patch_state_depends_only_on_its_own_bytes() -> None:
    model = tiny().double()
    torch.manual_seed(1)
    h = torch.randn(1, 20, 16, dtype=torch.float64)
    starts = random_starts(1, 20, p=0.3, seed=5)[:, :20]
    patch_ids = patch_ids_from_starts(starts)
    count = int(patch_ids.max()) + 1
    num = torch.tensor([count])
    base = model.encoder.patch_states(h, patch_ids, num, count)
    for k in range(count):
        changed = h.clone()
        changed[patch_ids == k] += torch.randn_like(changed[patch_ids == k])
        out = model.encoder.patch_states(changed, patch_ids, num, count)
        for j in range(count):
            same = torch.equal(out[0, j], base[0, j])
            assert same == (j != k), (j, k)


# -- causality ------------------------------------------------------------------------------------


@torch.no_grad()
def future_leak(model: BLT, x: torch.Tensor, starts: torch.Tensor | None) -> float:
    """Largest change of the logits at positions <= i when bytes i+1.. change, over all i."""
    t = x.shape[1]
    base = model(x, patch_starts=starts)["logits"]
    worst = 0.0
    g = torch.Generator().manual_seed(0)
    for i in range(t - 1):
        changed = x.clone()
        changed[:, i + 1 :] = torch.randint(0, 256, (x.shape[0], t - i - 1), generator=g)
        out = model(changed, patch_starts=starts)["logits"]
        worst = max(worst, float((out[:, : i + 1] - base[:, : i + 1]).abs().max()))
    return worst


def causal_patcher(x: torch.Tensor) -> torch.Tensor:
    """A data-dependent incremental patcher: byte p starts a patch iff byte p−1 is 0 mod 3
    (as entropy patching, the start at p reads only x_<p); (B, L + 1)."""
    after = x % 3 == 0
    return torch.cat([torch.ones_like(after[:, :1]), after], dim=1)


@pytest.fixture
def causal_model() -> BLT:
    return tiny(block_size=24).double().eval()


def test_blt_is_causal_under_random_patchings(causal_model: BLT) -> None:
    x = torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(2))
    for seed in range(3):
        starts = random_starts(3, 24, seed=seed)
        assert future_leak(causal_model, x, starts) < 1e-12
        assert future_leak(causal_model, x, starts[:, :24]) < 1e-12  # (B, L) form


def test_blt_is_causal_with_its_patchers(causal_model: BLT) -> None:
    x = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(4))
    assert future_leak(causal_model, x, None) < 1e-12  # static patcher
    causal_model.patcher = causal_patcher  # patch counts now change with the perturbation
    assert future_leak(causal_model, x, None) < 1e-12


def leak_with(
    monkeypatch: pytest.MonkeyPatch,
    causal_model: BLT,
    name: str,
    leaky: Callable[..., torch.Tensor],
) -> float:
    monkeypatch.setattr(blt_model, name, leaky)
    x = torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(2))
    return future_leak(causal_model, x, random_starts(3, 24, seed=0))


def test_negative_control_without_the_decoder_shift_leaks(
    monkeypatch: pytest.MonkeyPatch, causal_model: BLT
) -> None:
    def own_patch(starts: torch.Tensor) -> torch.Tensor:  # byte i reads its own patch
        return patch_ids_from_starts(starts[:, :-1])

    assert leak_with(monkeypatch, causal_model, "decoder_patch_ids", own_patch) > 1e-6


def test_negative_control_with_cross_patch_queries_leaks(
    monkeypatch: pytest.MonkeyPatch, causal_model: BLT
) -> None:
    def every_byte(
        patch_ids: torch.Tensor, num_patches: torch.Tensor, max_patches: int, k: int
    ) -> torch.Tensor:
        return torch.ones(patch_ids.shape[0], 1, max_patches * k, patch_ids.shape[1]).bool()

    assert leak_with(monkeypatch, causal_model, "encoder_cross_mask", every_byte) > 1e-6


# -- batching, loss, training ---------------------------------------------------------------------


def test_variable_patch_counts_in_a_batch_match_each_sequence_alone() -> None:
    model = tiny().double().eval()
    x = torch.randint(0, 256, (3, 32), generator=torch.Generator().manual_seed(6))
    starts = torch.stack([random_starts(1, 32, p, seed=7)[0] for p in (0.1, 0.5, 0.9)])
    counts = patch_ids_from_starts(starts[:, :32])[:, -1] + 1
    assert len(set(counts.tolist())) == 3
    batched = model(x, patch_starts=starts)["logits"]
    for b in range(3):
        alone = model(x[b : b + 1], patch_starts=starts[b : b + 1])["logits"]
        torch.testing.assert_close(batched[b : b + 1], alone, rtol=0, atol=1e-10)


def test_forward_shapes_and_ignored_targets() -> None:
    model = tiny()
    x = torch.randint(0, 256, (2, 32))
    out = model(x, x)
    assert out["logits"].shape == (2, 32, VOCAB)
    assert out["loss"] is not None and out["loss"].item() == pytest.approx(math.log(VOCAB), abs=0.3)
    assert model(x)["loss"] is None
    y = x.clone()
    y[:, :10] = IGNORE_INDEX
    logits = model(x)["logits"]
    expected = torch.nn.functional.cross_entropy(
        logits[:, 10:].reshape(-1, VOCAB), x[:, 10:].reshape(-1)
    )
    assert model(x, y)["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="patch_starts"):
        model(x, patch_starts=torch.ones(2, 5, dtype=torch.bool))


def test_overfits_a_repeated_string() -> None:
    model = tiny(pad_vocab_multiple=64)
    data = torch.tensor(list(b"the quick brown fox jumps over the lazy dog. " * 3))
    x, y = data[:32].unsqueeze(0).repeat(4, 1), data[1:33].unsqueeze(0).repeat(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = model(x, y)["loss"]
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    x = torch.randint(0, 256, (2, 32))
    grads = []
    for flag in (False, True):
        model = tiny()
        model.activation_checkpointing = flag
        model(x, x)["loss"].backward()
        grads.append(
            torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        )
    torch.testing.assert_close(grads[0], grads[1])


# -- counting -------------------------------------------------------------------------------------


def test_flops_breakdown_global_part_is_a_gpt_over_patches() -> None:
    model = tiny()
    cfg = model.cfg
    n_global = sum(
        p.numel()
        for name, p in model.global_model.named_parameters()
        if not name.startswith("pos.")
    )
    parts = model.flops_breakdown(32, 4.0)
    assert set(parts) == {"encoder", "global", "decoder"}
    attention = 12 * cfg.global_layers * cfg.global_dim * (32 / 4)
    assert parts["global"] == pytest.approx((6 * n_global + attention) / 4)
    assert model.flops_per_token(32) == pytest.approx(sum(parts.values()))  # static size 4
    assert model.flops_breakdown(32, 8.0)["global"] < parts["global"] / 2  # patches cost less


def test_num_params_leaves_out_position_embeddings() -> None:
    model = tiny()
    positions = sum(
        p.numel() for m in (model.encoder.pos, model.global_model.pos) for p in m.parameters()
    )
    assert model.num_params(non_embedding=False) - model.num_params() == positions


# -- config ---------------------------------------------------------------------------------------


def test_config_checks() -> None:
    with pytest.raises(ValidationError, match="divisible"):
        BLTConfig(local_dim=30, local_heads=4)
    with pytest.raises(ValidationError, match="threshold"):
        BLTConfig(entropy_model="somewhere")
    with pytest.raises(ValidationError, match="one of"):
        BLTConfig(patching={"threshold": 1.0, "target_patch_size": 4.0})  # type: ignore[arg-type]
    assert BLTConfig(entropy_model="x", patching={"threshold": 1.0}).expected_patch_size == 4.0  # type: ignore[arg-type]


def test_examples_have_matching_parameter_counts() -> None:
    blt_config = load_config(REPO / "examples" / "blt.yaml")
    gpt_config = load_config(REPO / "examples" / "byte_gpt_cpu.yaml")
    assert Path(blt_config.data.sources[0].path).is_file()  # type: ignore[attr-defined]
    static = blt_config.model.model_copy(update={"entropy_model": None})  # no trained run in CI
    blt = build("model", static, ModelContext(VOCAB))
    gpt = build("model", gpt_config.model, ModelContext(VOCAB))
    assert isinstance(blt, BLT)
    assert abs(blt.num_params() - gpt.num_params()) / gpt.num_params() < 0.02
    assert blt_config.training == gpt_config.training
    assert blt_config.optimization == gpt_config.optimization
    assert blt_config.model.block_size == gpt_config.model.block_size  # type: ignore[attr-defined]


# -- through the container and the CLI ------------------------------------------------------------


def test_trains_through_the_container_and_neat_eval_reports_bpb(
    corpus: Path, tmp_path: Path
) -> None:
    overrides = [
        f"data.path={corpus}",
        "model.entropy_model=null",
        "model.block_size=32",
        "model.local_dim=16",
        "model.global_dim=32",
        "model.global_layers=1",
        "model.hash_buckets=64",
        "training.max_steps=4",
        "training.batch_size=4",
        "evaluation.interval=4",
        "evaluation.batches=2",
        "checkpoint.interval=4",
        "monitoring.log_interval=1",
        "monitoring.monitors=[metrics]",
    ]
    config_path = REPO / "examples" / "blt.yaml"
    run = tmp_path / "run"
    state = build_container(load_config(config_path, overrides), run_dir=run).trainer().fit()
    assert state.step == 4
    evals = [r for r in read_metrics(run / "metrics.jsonl") if r["event"] == "eval"]
    assert evals and "val_bpb" in evals[-1]
    assert evals[-1]["mean_patch_size"] == pytest.approx(4.0)  # static patches of 4 bytes

    sets = [arg for value in overrides for arg in ("--set", value)]
    result = CliRunner().invoke(
        cli, ["eval", "-c", str(config_path), *sets, "--checkpoint", str(run), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["val_bpb"] == pytest.approx(evals[-1]["val_bpb"], rel=1e-6)
    assert 0 < metrics["val_bpb"] < 9


def test_entropy_patcher_is_attached_calibrated_and_causal(
    tiny_config: Path, tmp_path: Path
) -> None:
    run = tmp_path / "entropy"
    steps = ["training.max_steps=10", "evaluation.interval=10", "checkpoint.interval=10"]
    config = load_config(tiny_config, ["data.tokenizer.type=byte", *steps])
    build_container(config, run_dir=run).trainer().fit()

    fields: dict[str, object] = {
        "block_size": 24,
        "local_dim": 16,
        "global_dim": 32,
        "hash_buckets": 64,
        "entropy_model": str(run),
    }
    model = build_blt(BLTConfig(**fields, patching={"target_patch_size": 3.0}), ModelContext(VOCAB))  # type: ignore[arg-type]
    assert isinstance(model, BLT)
    patcher = model.patcher
    assert isinstance(patcher, EntropyPatcher)
    plain = BLT(BLTConfig(**{**fields, "entropy_model": None}), VOCAB)  # type: ignore[arg-type]
    assert model.state_dict().keys() == plain.state_dict().keys()  # no entropy model weights
    rows = _calibration_rows(run, 24)
    starts = patcher(rows)
    assert starts.shape == (rows.shape[0], 25)
    assert rows.numel() / int(starts[:, :24].sum()) == pytest.approx(3.0, abs=0.3)

    model.double().eval()
    assert future_leak(model, rows[:2], None) < 1e-12
    fixed = build_blt(
        BLTConfig(**fields, patching={"threshold": patcher.threshold}), ModelContext(VOCAB)
    )  # type: ignore[arg-type]
    assert isinstance(fixed, BLT) and isinstance(fixed.patcher, EntropyPatcher)
    assert torch.equal(fixed.patcher(rows), starts)
