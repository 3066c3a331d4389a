"""LoRA adapters on a real GPT: identity at init, gradient isolation, merging, targeting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neat.models.adapters.lora import (
    LoRALinear,
    apply_lora,
    lora_parameters,
    lora_state_dict,
    merge_lora,
)
from neat.models.gpt import GPT, GPTConfig

VOCAB = 32
CFG = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8)
ATTN = ["blocks.0.attn.c_attn", "blocks.1.attn.c_attn"]


def gpt(dtype: torch.dtype = torch.float32, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CFG, vocab_size=VOCAB).to(dtype).eval()


def tokens(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (3, CFG.block_size), generator=g)


def logits(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = model(idx)["logits"]
    return out


def train(model: GPT, steps: int = 5, lr: float = 1e-2) -> None:
    """A few AdamW steps on the trainable (LoRA) parameters, so B moves off zero."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        idx = tokens(seed=10 + step)
        loss = model(idx, idx.roll(-1, dims=1))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


# 1. identity at init


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_b_is_bit_identical_to_base(dtype: torch.dtype) -> None:
    model, idx = gpt(dtype), tokens()
    expected = logits(model, idx)
    names = apply_lora(model, rank=4, alpha=8, dropout=0.0, targets=["*"])
    assert "lm_head" in names and len(names) == 4 * CFG.n_layer + 1
    with torch.no_grad():
        for p in lora_parameters(model):
            if p.shape[0] != 4:  # leave A random: only B = 0 must give the identity
                assert torch.count_nonzero(p) == 0
    assert torch.equal(logits(model, idx), expected)


def test_zero_b_is_bit_identical_under_autocast() -> None:
    model, idx = gpt(), tokens()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = logits(model, idx)
    apply_lora(model, rank=2, alpha=4, dropout=0.0, targets=["c_attn", "c_fc"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = logits(model, idx)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expected)


def test_fp32_adapter_on_bf16_base_follows_input_dtype() -> None:
    """Adapters kept in fp32 beside a bf16 base: the low-rank path is cast to x's dtype."""
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 4).to(torch.bfloat16), rank=2, alpha=2)
    layer.lora_a.data = layer.lora_a.data.float()
    layer.lora_b.data = torch.randn(4, 2)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    out = layer(x)
    assert out.dtype == torch.bfloat16
    assert not torch.equal(out, layer.base(x))


# 2. only the LoRA matrices train


def test_gradients_reach_only_lora_matrices() -> None:
    model, idx = gpt(), tokens()
    names = apply_lora(model, rank=4, alpha=4, dropout=0.0, targets=["c_attn", "*.mlp.*"])
    assert len(names) == 3 * CFG.n_layer
    train_params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(train_params, lr=1e-3)
    held = [p for group in opt.param_groups for p in group["params"]]
    assert len(held) == 2 * len(names)
    assert {id(p) for p in held} == {id(p) for p in lora_parameters(model)}

    model(idx, idx)["loss"].backward()
    for name, p in model.named_parameters():
        if name.endswith((".lora_a", ".lora_b")):
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    # B = 0 at init, so A's gradient is zero but B's is not.
    lora = model.get_submodule("blocks.0.attn.c_attn")
    assert isinstance(lora, LoRALinear)
    assert lora.lora_b.grad is not None and lora.lora_b.grad.abs().sum() > 0


def test_tied_lm_head_can_be_targeted_and_stays_frozen() -> None:
    model, idx = gpt(torch.float64), tokens()
    wte = model.wte.weight.detach().clone()
    assert apply_lora(model, rank=2, alpha=2, dropout=0.0, targets=["lm_head"]) == ["lm_head"]
    assert model.lm_head.weight is model.wte.weight  # the tie survives wrapping
    assert not model.wte.weight.requires_grad
    assert model.num_params() > 0  # GPT code that reads lm_head.weight still works
    train(model, steps=3)
    assert torch.equal(model.wte.weight, wte)
    adapted = logits(model, idx)
    with pytest.warns(UserWarning, match="wte"):
        merge_lora(model)
    assert torch.equal(model.wte.weight, wte)  # merging unties, it does not edit the embedding
    assert model.lm_head.weight is not model.wte.weight
    torch.testing.assert_close(logits(model, idx), adapted, atol=1e-10, rtol=0)


# 3. merging


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-6), (torch.float64, 1e-10)])
def test_merge_matches_adapter_and_loads_into_base_gpt(dtype: torch.dtype, atol: float) -> None:
    model, idx = gpt(dtype), tokens()
    before = logits(model, idx)
    apply_lora(model, rank=4, alpha=8, dropout=0.0, targets=["c_attn", "c_proj", "c_fc"])
    train(model)
    assert all(
        torch.count_nonzero(m.lora_b) > 0 for m in model.modules() if isinstance(m, LoRALinear)
    )
    adapted = logits(model, idx)
    assert not torch.allclose(adapted, before, atol=1e-3)

    assert merge_lora(model) is model
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    c_attn = model.get_submodule("blocks.0.attn.c_attn")
    assert type(c_attn) is nn.Linear and c_attn.weight.dtype == dtype
    merged = logits(model, idx)
    torch.testing.assert_close(merged, adapted, atol=atol, rtol=0)

    state = model.state_dict()
    assert "blocks.0.attn.c_attn.weight" in state and "blocks.0.attn.c_attn.bias" in state
    assert not any("lora" in k or ".base." in k for k in state)
    fresh = gpt(dtype, seed=123)
    fresh.load_state_dict(state, strict=True)
    assert torch.equal(logits(fresh, idx), merged)


def test_lora_state_dict_holds_only_lora_and_round_trips() -> None:
    model, idx = gpt(torch.float64), tokens()
    names = apply_lora(model, rank=2, alpha=4, dropout=0.0, targets=["c_attn"])
    train(model, steps=2)
    sd = lora_state_dict(model)
    assert sorted(sd) == sorted(f"{n}.{p}" for n in names for p in ("lora_a", "lora_b"))
    other = gpt(torch.float64)
    apply_lora(other, rank=2, alpha=4, dropout=0.0, targets=["c_attn"])
    assert not torch.equal(logits(other, idx), logits(model, idx))
    result = other.load_state_dict(sd, strict=False)
    assert not result.unexpected_keys
    assert torch.equal(logits(other, idx), logits(model, idx))


# 4. targeting and errors


def test_plain_name_matches_last_component() -> None:
    assert apply_lora(gpt(), rank=2, alpha=2, dropout=0.0, targets=["c_attn"]) == ATTN


def test_glob_selects_mlp_linears_only() -> None:
    model = gpt()
    names = apply_lora(model, rank=2, alpha=2, dropout=0.0, targets=["*.mlp.*"])
    assert names == [f"blocks.{i}.mlp.{n}" for i in range(2) for n in ("c_fc", "c_proj")]
    assert isinstance(model.get_submodule("blocks.0.attn.c_proj"), nn.Linear)
    assert not isinstance(model.get_submodule("blocks.0.attn.c_proj"), LoRALinear)


def test_full_name_pattern_and_reapplying_does_not_nest() -> None:
    model = gpt()
    assert apply_lora(model, rank=2, alpha=2, dropout=0.0, targets=["*.attn.c_attn"]) == ATTN
    assert apply_lora(model, rank=2, alpha=2, dropout=0.0, targets=["*.c_fc"]) == [
        "blocks.0.mlp.c_fc",
        "blocks.1.mlp.c_fc",
    ]
    assert len(lora_parameters(model)) == 8  # the first adapters stay trainable
    with pytest.raises(ValueError, match=r"matches no nn\.Linear"):
        apply_lora(model, rank=2, alpha=2, dropout=0.0, targets=["*.attn.c_attn"])


def test_unmatched_pattern_names_itself_and_available_layers() -> None:
    with pytest.raises(ValueError, match="c_atn") as info:
        apply_lora(gpt(), rank=2, alpha=2, dropout=0.0, targets=["c_attn", "c_atn"])
    assert "blocks.0.attn.c_attn" in str(info.value)


def test_failed_apply_leaves_model_untouched() -> None:
    model = gpt()
    with pytest.raises(ValueError):
        apply_lora(model, rank=2, alpha=2, dropout=0.0, targets=["c_attn", "nope"])
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "rank"),
        ({"rank": -1}, "rank"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"targets": []}, "targets"),
        ({"targets": "c_attn"}, "list"),
        ({"targets": ["blocks.0.attn"]}, r"not an nn\.Linear"),
        ({"targets": ["*.ln_1"]}, "non-Linear"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"rank": 2, "alpha": 2.0, "dropout": 0.0, "targets": ["c_attn"]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        apply_lora(gpt(), **args)  # type: ignore[arg-type]


# 5. dropout


def test_dropout_is_random_in_train_and_off_in_eval() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 8), rank=4, alpha=4, dropout=0.5)
    with torch.no_grad():
        layer.lora_b.normal_()
    x = torch.randn(5, 16)
    layer.train()
    assert not torch.equal(layer(x), layer(x))
    layer.eval()
    first = layer(x)
    assert torch.equal(first, layer(x))
    expected = layer.base(x) + x @ layer.lora_a.T @ layer.lora_b.T * layer.scaling
    torch.testing.assert_close(first, expected)


def test_zero_dropout_is_identity_module() -> None:
    assert isinstance(LoRALinear(nn.Linear(4, 4), rank=1, alpha=1).dropout, nn.Identity)


# 6. scaling


def test_output_is_base_plus_scaled_low_rank_update() -> None:
    torch.manual_seed(0)
    base = nn.Linear(6, 5).double()
    layer = LoRALinear(base, rank=3, alpha=12.0)
    assert layer.scaling == 4.0
    a = torch.randn(3, 6, dtype=torch.float64)
    b = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        layer.lora_a.copy_(a)
        layer.lora_b.copy_(b)
    x = torch.randn(7, 6, dtype=torch.float64)
    expected = base(x) + 12.0 / 3 * (x @ a.T @ b.T)
    torch.testing.assert_close(layer(x), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(layer.delta_weight(), 4.0 * b @ a, atol=1e-12, rtol=0)
    assert not base.weight.requires_grad


def test_bf16_merge_rounds_once_and_keeps_dtype() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32).to(torch.bfloat16))
    apply_lora(model, rank=4, alpha=4, dropout=0.0, targets=["0"])
    lora = model[0]
    assert isinstance(lora, LoRALinear)
    with torch.no_grad():
        lora.lora_b.normal_(std=1e-2)
    expected = (lora.base.weight.float() + lora.lora_b.float() @ lora.lora_a.float()).bfloat16()
    merge_lora(model)
    merged = model[0]
    assert type(merged) is nn.Linear and merged.weight.dtype == torch.bfloat16
    assert torch.equal(merged.weight, expected)
