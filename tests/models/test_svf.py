"""SVF (Transformer², arXiv 2501.06252): identity at z = 1, only z trains, the saved SVD and
experts are tied to their base, simplex projection, CEM search and expert mixing."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from neat.models.adapters.svf import (
    SVFLinear,
    apply_svf,
    base_fingerprint,
    cem_search,
    check_svd,
    load_expert,
    load_svf_z,
    mix_experts,
    project_to_simplex,
    save_expert,
    svf_parameters,
    svf_z,
)
from neat.models.gpt import GPT, GPTConfig

TARGETS = ["*.attn.c_attn", "*.mlp.*", "lm_head"]
ADAPTED = [
    "blocks.0.attn.c_attn",
    "blocks.0.mlp.c_fc",
    "blocks.0.mlp.c_proj",
    "blocks.1.attn.c_attn",
    "blocks.1.mlp.c_fc",
    "blocks.1.mlp.c_proj",
    "lm_head",
]


def tiny(seed: int = 0, dtype: torch.dtype = torch.float32) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8)
    return GPT(cfg, vocab_size=32).to(dtype).eval()


def layer(model: torch.nn.Module, name: str) -> SVFLinear:
    module = model.get_submodule(name)
    assert isinstance(module, SVFLinear), name
    return module


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 32, (3, 8), generator=torch.Generator().manual_seed(seed))


def random_expert(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        n: 1 + 0.3 * torch.randn(z.shape, generator=gen, dtype=torch.float64).to(z.dtype)
        for n, z in svf_z(model).items()
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_at_z_one_is_bit_exact(dtype: torch.dtype) -> None:
    model = tiny(dtype=dtype)
    x = tokens()
    before = model(x)["logits"]
    assert apply_svf(model, targets=TARGETS) == ADAPTED
    assert layer(model, "lm_head").svd_u.dtype == dtype
    assert layer(model, "lm_head").weight is model.wte.weight  # still tied
    assert model.num_params() > 0  # GPT's bookkeeping still reads lm_head.weight
    after = model(x)["logits"]
    assert torch.equal(before, after)
    # a non-trivial z does change the output, so the equality above is not vacuous
    load_svf_z(model, random_expert(model, 0))
    assert not torch.allclose(model(x)["logits"], before)


def test_target_errors_name_the_value_and_the_fix() -> None:
    model = tiny()
    with pytest.raises(ValueError, match=r"'\*\.nope'.*blocks\.0\.attn\.c_attn"):
        apply_svf(model, targets=["*.nope"])
    with pytest.raises(ValueError, match=r"CausalSelfAttention.*not nn\.Linear"):
        apply_svf(model, targets=["blocks.0.attn"])
    # a plain name matches the last component
    assert apply_svf(model, targets=["c_fc"]) == ["blocks.0.mlp.c_fc", "blocks.1.mlp.c_fc"]


def test_only_z_is_trained_and_the_base_is_untouched() -> None:
    model = tiny()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    apply_svf(model, targets=TARGETS)
    model.train()
    x, y = tokens(1), tokens(2)
    model(x, y)["loss"].backward()
    zs = dict(zip(ADAPTED, svf_parameters(model), strict=True))
    for name, param in model.named_parameters():
        if name.endswith(".z"):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    for name, buf in model.named_buffers():
        assert not buf.requires_grad, name

    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    held = opt.param_groups[0]["params"]
    assert len(held) == len(ADAPTED)
    assert {id(p) for p in held} == {id(z) for z in zs.values()}
    assert sum(p.numel() for p in held) == sum(
        min(layer(model, n).base.weight.shape) for n in ADAPTED
    )

    model.eval()
    start = model(x)["logits"].detach()
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(x, y)["loss"].backward()
        opt.step()
    model.eval()
    assert not torch.allclose(model(x)["logits"], start)
    assert layer(model, "lm_head").base.weight is model.wte.weight  # tying survives
    after = dict(model.named_parameters())
    renamed = {n.replace(".base.", "."): p for n, p in after.items()}
    for name, value in base.items():
        assert torch.equal(renamed[name], value), name


def test_saved_svd_reloads_and_is_tied_to_its_base() -> None:
    model = tiny(seed=0)
    fingerprint = base_fingerprint(model)
    apply_svf(model, targets=TARGETS)
    assert base_fingerprint(model) == fingerprint  # wrapping does not change the base
    load_svf_z(model, random_expert(model, 3))
    assert base_fingerprint(model) == fingerprint  # z is not part of it
    state = model.state_dict()
    assert "lm_head.svd_u" in state and "blocks.0.mlp.c_fc.svd_v" in state

    fresh = tiny(seed=5)
    assert base_fingerprint(fresh) != fingerprint
    apply_svf(fresh, targets=TARGETS)
    assert not torch.equal(layer(fresh, "lm_head").svd_u, layer(model, "lm_head").svd_u)
    fresh.load_state_dict(state)
    for name in ADAPTED:
        a, b = layer(model, name), layer(fresh, name)
        for buf in ("svd_u", "svd_s", "svd_v", "z"):
            assert torch.equal(getattr(a, buf), getattr(b, buf)), (name, buf)
    assert base_fingerprint(fresh) == fingerprint
    check_svd(fresh)
    assert torch.equal(fresh(tokens())["logits"], model(tokens())["logits"])

    other = tiny(seed=7)
    with torch.no_grad():
        layer(fresh, "blocks.1.mlp.c_fc").base.weight.copy_(
            other.get_parameter("blocks.1.mlp.c_fc.weight")
        )
    with pytest.raises(ValueError, match=r"'blocks\.1\.mlp\.c_fc'.*max error"):
        check_svd(fresh)
    assert base_fingerprint(fresh) != fingerprint


def test_check_svd_passes_in_other_precisions() -> None:
    model = tiny()
    apply_svf(model, targets=TARGETS)
    check_svd(model.to(torch.float64))  # float32-accurate factors of float32-exact weights
    check_svd(model.to(torch.bfloat16))
    x = tokens()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)["logits"]
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_expert_roundtrip_and_fingerprint_refusal(tmp_path: Path) -> None:
    model = tiny()
    apply_svf(model, targets=TARGETS)
    fingerprint = base_fingerprint(model)
    expert = random_expert(model, 4)
    path = tmp_path / "math.safetensors"
    save_expert(path, expert, fingerprint=fingerprint, task="math")
    loaded = load_expert(path, fingerprint=fingerprint)
    assert loaded.keys() == expert.keys()
    for name, z in expert.items():
        assert torch.equal(loaded[name], z), name
    load_svf_z(model, loaded)
    assert torch.equal(svf_z(model)["lm_head"], expert["lm_head"])

    wrong = base_fingerprint(tiny(seed=9))
    with pytest.raises(ValueError, match=rf"math\.safetensors.*{fingerprint}.*{wrong}"):
        load_expert(path, fingerprint=wrong)


def test_load_svf_z_names_missing_extra_and_misshaped_keys() -> None:
    model = tiny()
    apply_svf(model, targets=TARGETS)
    zs = svf_z(model)
    del zs["lm_head"]
    zs["blocks.9.mlp.c_fc"] = torch.ones(16)
    zs["blocks.0.mlp.c_fc"] = torch.ones(3)
    with pytest.raises(ValueError, match=r"missing 'lm_head'.*extra 'blocks\.9.*mis-shaped") as err:
        load_svf_z(model, zs)
    assert "blocks.0.mlp.c_fc" in str(err.value)


def brute_force_projection(v: list[float]) -> torch.Tensor:
    """Closest point of the simplex: the best over every support set of the unconstrained
    projection onto that face (exact for small n)."""
    t = torch.tensor(v, dtype=torch.float64)
    n = len(v)
    best, best_dist = None, float("inf")
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            idx = list(support)
            w = torch.zeros(n, dtype=torch.float64)
            w[idx] = t[idx] - (t[idx].sum() - 1) / size
            if (w >= 0).all():
                dist = float(((w - t) ** 2).sum())
                if dist < best_dist:
                    best, best_dist = w, dist
    assert best is not None
    return best


def test_project_to_simplex() -> None:
    gen = torch.Generator().manual_seed(0)
    v = 3 * torch.randn(50, 5, generator=gen, dtype=torch.float64)
    w = project_to_simplex(v)
    assert (w >= 0).all()
    assert torch.allclose(w.sum(-1), torch.ones(50, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(project_to_simplex(w), w, atol=1e-12)
    for row in v[:10]:
        assert torch.allclose(
            project_to_simplex(row), brute_force_projection(row.tolist()), atol=1e-12
        )
    half = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert torch.allclose(project_to_simplex(torch.tensor([1.0, 1.0], dtype=torch.float64)), half)
    corner = project_to_simplex(torch.tensor([0.5, 0.5, 2.0], dtype=torch.float64))
    assert torch.equal(corner, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.equal(brute_force_projection([0.5, 0.5, 2.0]), corner)


def test_cem_search_finds_a_known_optimum_deterministically() -> None:
    target = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def score(w: torch.Tensor) -> float:
        seen.append(w)
        return -float(((w - target) ** 2).sum())

    w, best = cem_search(score, 3, seed=0)
    assert len(seen) == 10 * 16
    for sample in [*seen, w]:
        assert (sample >= 0).all()
        assert abs(float(sample.sum()) - 1) < 1e-9
    assert float((w - target).abs().max()) < 0.05
    assert best == pytest.approx(score(w))
    again, again_best = cem_search(score, 3, seed=0)
    assert torch.equal(again, w) and again_best == best
    other, _ = cem_search(score, 3, seed=1)
    assert not torch.equal(other, w)  # the seed is actually used


def test_one_hot_mixture_is_that_expert() -> None:
    model = tiny(dtype=torch.float64)
    apply_svf(model, targets=TARGETS)
    experts = [random_expert(model, s) for s in (10, 11, 12)]
    one_hot = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    mixed = mix_experts(experts, one_hot)
    for name, z in experts[1].items():
        assert torch.equal(mixed[name], z), name
    x = tokens()
    load_svf_z(model, experts[1])
    expected = model(x)["logits"]
    load_svf_z(model, mixed)
    assert torch.equal(model(x)["logits"], expected)
    load_svf_z(model, mix_experts(experts, torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)))
    assert not torch.allclose(model(x)["logits"], expected)

    halves = mix_experts(experts[:2], torch.tensor([0.25, 0.75], dtype=torch.float64))
    for name in halves:
        assert torch.allclose(halves[name], 0.25 * experts[0][name] + 0.75 * experts[1][name])
    with pytest.raises(ValueError, match="1-D tensor of 3 weights"):
        mix_experts(experts, torch.ones(2))
    with pytest.raises(ValueError, match="1-D tensor of 3 weights"):
        mix_experts(experts, torch.ones(1, 3))
