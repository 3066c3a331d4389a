"""Block strategies: causality of every mixer (with a negative control), RoPE's relative
positions, GQA against MHA, every combination training, and invalid combinations refused."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import neat.models.attention as attention_module
from neat.cli import cli
from neat.config import load_config
from neat.errors import ConfigError
from neat.models import GPT
from neat.models.attention import apply_rope, rope_cos_sin
from neat.models.gpt import GPTConfig

VOCAB = 23
LLAMA_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama_char_cpu.yaml"


def tiny(**overrides: Any) -> GPT:
    torch.manual_seed(0)
    fields = {"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16, **overrides}
    return GPT(GPTConfig(**fields), vocab_size=VOCAB)


def future_changes_past(model: GPT, cut: int = 9) -> bool:
    """Perturb tokens from `cut` on (float64): do the logits before `cut` move (beyond the
    1e-16-scale round-off of Hyena's FFT, which mixes all positions' rounding)?"""
    model = model.double().eval()
    torch.manual_seed(1)
    x = torch.randint(0, VOCAB, (2, 16))
    changed = x.clone()
    changed[:, cut:] = (changed[:, cut:] + 1) % VOCAB
    a, b = model(x)["logits"], model(changed)["logits"]
    assert not torch.allclose(a[:, cut:], b[:, cut:])  # the perturbation does reach the model
    return not torch.allclose(a[:, :cut], b[:, :cut], rtol=0, atol=1e-12)


MIXERS = [
    {"attention": "mha"},
    {"attention": "mha", "position": "rope", "qk_norm": True},
    {"attention": "gqa", "n_kv_head": 2},
    {"attention": "gqa", "n_kv_head": 1, "position": "rope", "qk_norm": True},
    {"attention": "gqa", "position": "none"},
    {"attention": "hyena", "hyena": {"filter_order": 16}},
    {"attention": "hyena", "position": "none", "hyena": {"order": 3, "filter_order": 8}},
]


@pytest.mark.parametrize("fields", MIXERS, ids=lambda f: "-".join(map(str, f.values())))
def test_every_mixer_is_causal(fields: dict[str, Any]) -> None:
    assert not future_changes_past(tiny(**fields))


@pytest.mark.parametrize("attention", ["mha", "gqa"])
def test_the_causality_check_detects_attention_without_a_mask(
    attention: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdpa = F.scaled_dot_product_attention

    def unmasked(*args: Any, **kwargs: Any) -> torch.Tensor:
        kwargs.update(is_causal=False, attn_mask=None)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", unmasked)
    assert future_changes_past(tiny(attention=attention, position="rope"))


def test_rope_scores_depend_only_on_the_offset() -> None:
    torch.manual_seed(0)
    hd = 16
    q, k = torch.randn(2, 1, 1, hd, dtype=torch.float64).unbind(0)
    cos, sin = rope_cos_sin(hd, 0, 64, 10000.0, q)

    def score(i: int, j: int) -> float:
        qi = apply_rope(q, cos[i], sin[i])
        kj = apply_rope(k, cos[j], sin[j])
        return float((qi * kj).sum())

    for i, j, shift in [(3, 1, 7), (10, 10, 40), (5, 20, 13), (0, 0, 63)]:
        assert score(i, j) == pytest.approx(score(i + shift, j + shift), abs=1e-12)
    assert abs(score(5, 1) - score(5, 2)) > 1e-3  # it does depend on the offset
    # position 0 is the identity, and the rotation keeps norms
    assert torch.allclose(apply_rope(q, cos[0], sin[0]), q)
    assert float(apply_rope(q, cos[9], sin[9]).norm()) == pytest.approx(float(q.norm()))


def test_rope_offset_matches_a_longer_table() -> None:
    x = torch.zeros(1, dtype=torch.float64)
    cos, sin = rope_cos_sin(8, 0, 20, 500.0, x)
    cos5, sin5 = rope_cos_sin(8, 5, 15, 500.0, x)
    assert torch.equal(cos[5:], cos5) and torch.equal(sin[5:], sin5)


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_gqa_with_one_kv_head_per_query_head_equals_mha(position: str) -> None:
    mha = tiny(attention="mha", position=position, qk_norm=True).double()
    gqa = tiny(attention="gqa", position=position, qk_norm=True).double()
    state = dict(mha.state_dict())
    for i in range(2):
        q, k, v = state.pop(f"blocks.{i}.attn.c_attn.weight").chunk(3, dim=0)
        qb, kb, vb = state.pop(f"blocks.{i}.attn.c_attn.bias").chunk(3, dim=0)
        for name, w, b in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
            state[f"blocks.{i}.attn.{name}_proj.weight"] = w
            state[f"blocks.{i}.attn.{name}_proj.bias"] = b
    gqa.load_state_dict(state)
    x = torch.randint(0, VOCAB, (2, 16))
    torch.testing.assert_close(gqa(x)["logits"], mha(x)["logits"], rtol=0, atol=1e-12)


def test_default_model_keeps_its_state_dict_keys() -> None:
    model = tiny(n_layer=1, bias=False)
    assert list(model.state_dict()) == [
        "wte.weight",
        "pos.wpe.weight",
        "blocks.0.ln_1.weight",
        "blocks.0.attn.c_attn.weight",
        "blocks.0.attn.c_proj.weight",
        "blocks.0.ln_2.weight",
        "blocks.0.mlp.c_fc.weight",
        "blocks.0.mlp.c_proj.weight",
        "ln_f.weight",
        "lm_head.weight",
    ]
    assert model.lm_head.weight is model.wte.weight


def test_llama_shaped_model_has_the_contract_names() -> None:
    model = tiny(
        n_layer=1,
        bias=False,
        attention="gqa",
        n_kv_head=2,
        qk_norm=True,
        position="rope",
        norm="rmsnorm",
        mlp="swiglu",
        tie_embeddings=False,
    )
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "wte.weight": (VOCAB, 32),
        "blocks.0.ln_1.weight": (32,),
        "blocks.0.attn.q_norm.weight": (8,),
        "blocks.0.attn.k_norm.weight": (8,),
        "blocks.0.attn.q_proj.weight": (32, 32),
        "blocks.0.attn.k_proj.weight": (16, 32),
        "blocks.0.attn.v_proj.weight": (16, 32),
        "blocks.0.attn.c_proj.weight": (32, 32),
        "blocks.0.ln_2.weight": (32,),
        "blocks.0.mlp.gate_proj.weight": (128, 32),  # int(8 * 32 / 3) = 85 -> 128
        "blocks.0.mlp.up_proj.weight": (128, 32),
        "blocks.0.mlp.c_proj.weight": (32, 128),
        "ln_f.weight": (32,),
        "lm_head.weight": (VOCAB, 32),
    }
    assert model.lm_head.weight is not model.wte.weight


@pytest.mark.parametrize(
    ("mlp", "fields", "hidden"),
    [
        ("gelu", {}, 128),
        ("relu2", {}, 128),
        ("swiglu", {"mlp_multiple_of": 16}, 96),
        ("swiglu", {"mlp_hidden": 40}, 40),
        ("gelu", {"mlp_hidden": 50}, 50),
    ],
)
def test_mlp_hidden_size_rules(mlp: str, fields: dict[str, Any], hidden: int) -> None:
    assert GPTConfig(n_embd=32, mlp=mlp, **fields).mlp_hidden_size(32) == hidden


COMBINATIONS = list(
    itertools.product(
        ["mha", "gqa"], ["learned", "rope", "none"], ["layernorm", "rmsnorm"],
        ["gelu", "swiglu", "relu2"], [True, False],
    )
)  # fmt: skip


@pytest.mark.parametrize(
    ("attention", "position", "norm", "mlp", "tie"), COMBINATIONS, ids=lambda v: str(v)
)
def test_every_combination_trains(
    attention: str, position: str, norm: str, mlp: str, tie: bool
) -> None:
    extra = {"n_kv_head": 2} if attention == "gqa" else {}
    model = tiny(
        n_layer=1,
        n_embd=16,
        attention=attention,
        position=position,
        norm=norm,
        mlp=mlp,
        tie_embeddings=tie,
        mlp_hidden=32,
        **extra,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, VOCAB, (4, 16))
    losses = []
    for _ in range(6):
        loss = model(x, x.roll(-1, dims=1))["loss"]
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


@pytest.fixture
def raw_config(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "corpus.txt").write_text("to be or not to be\n" * 20, encoding="utf-8")
    return {"data": {"type": "text", "path": str(tmp_path / "corpus.txt")}}


INVALID = [
    ({"attention": "gqa", "n_head": 4, "n_kv_head": 3}, ["n_kv_head", "n_head"]),
    ({"n_kv_head": 2}, ["n_kv_head", "attention: gqa"]),
    ({"position": "rope", "n_embd": 36, "n_head": 4}, ["rope", "n_embd", "n_head"]),
    (
        {"type": "blt", "attention": "gqa", "n_kv_head": 3, "local_heads": 3},
        ["n_kv_head", "global_heads"],
    ),
    ({"attention": "hyena", "qk_norm": True}, ["hyena", "qk_norm: false"]),
    ({"attention": "hyena", "position": "rope"}, ["hyena", "position: learned or none"]),
    ({"attention": "hyena", "n_kv_head": 2}, ["hyena", "remove n_kv_head"]),
]


@pytest.mark.parametrize(("fields", "words"), INVALID, ids=lambda v: str(v))
def test_invalid_combination_is_one_error_naming_the_keys(
    raw_config: dict[str, Any], fields: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(raw={**raw_config, "model": {"type": "gpt", **fields}})
    message = str(info.value)
    assert "(1 error)" in message
    for word in words:
        assert word in message


def test_llama_example_trains_resumes_and_generates_through_the_cli(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    small = [
        f"data.path={corpus}",
        "model.n_layer=2",
        "model.n_embd=64",
        "training.batch_size=4",
        "evaluation.interval=10",
        "evaluation.batches=1",
        "checkpoint.interval=10",
        "monitoring.log_interval=10",
    ]
    sets = [arg for item in small for arg in ("--set", item)]

    def neat(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), prog_name="neat", catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    train = ["train", "-c", str(LLAMA_EXAMPLE), *sets, "--run-dir", str(run)]
    neat(*train, "--set", "training.max_steps=10")
    neat(*train, "--set", "training.max_steps=20", "--resume", "auto")
    assert (run / "checkpoints" / "step_20").is_dir()
    sample = ["generate", "--checkpoint", str(run), "--prompt", "ROMEO:", "--max-new-tokens"]
    made = []
    make_cache = GPT.make_cache
    monkeypatch.setattr(GPT, "make_cache", lambda self: made.append(1) or make_cache(self))
    cached = neat(*sample, "80", "--seed", "3")  # 86 characters: past block_size 64 too
    assert made == [1]
    monkeypatch.setattr(GPT, "make_cache", lambda self: None)
    assert neat(*sample, "80", "--seed", "3") == cached
    assert cached.startswith("ROMEO:") and len(cached) > 80
