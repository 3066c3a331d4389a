"""GPT: shapes, causality, parameter count, FLOPs and GPT-2 initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from neat.models import GPT, IGNORE_INDEX
from neat.models.gpt import GPTConfig


def tiny(**overrides: object) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(**{"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, **overrides})  # type: ignore[arg-type]
    return GPT(cfg, vocab_size=50)


def test_forward_returns_logits_and_loss() -> None:
    model = tiny()
    x = torch.randint(0, 50, (3, 16))
    out = model(x, x)
    assert out["logits"].shape == (3, 16, 50)
    assert out["loss"].ndim == 0
    assert model(x)["loss"] is None


def test_initial_loss_is_near_uniform() -> None:
    model = tiny()
    x = torch.randint(0, 50, (8, 16))
    y = torch.randint(0, 50, (8, 16))
    assert model(x, y)["loss"].item() == pytest.approx(math.log(50), abs=0.3)


def test_model_is_causal() -> None:
    model = tiny().double().eval()
    x = torch.randint(0, 50, (1, 16))
    changed = x.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 50
    a = model(x)["logits"]
    b = model(changed)["logits"]
    assert torch.equal(a[0, :10], b[0, :10])
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_parameter_count_matches_nanogpt_shakespeare_char() -> None:
    cfg = GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, bias=False)
    model = GPT(cfg, vocab_size=65)
    assert model.num_params() == 10_646_784  # nanoGPT's figure for this setting
    head_dim = 384 // 6
    assert model.flops_per_token(256) == 6 * 10_646_784 + 12 * 6 * 6 * head_dim * 256


def test_embeddings_are_tied_and_counted_once() -> None:
    model = tiny()
    assert model.lm_head.weight is model.wte.weight
    unique = {id(p) for p in model.parameters()}
    assert len(unique) == len(list(model.parameters()))


def test_gpt2_init_scales_residual_projections() -> None:
    model = tiny(n_layer=4, n_embd=256, n_head=4)
    proj = model.blocks[0].attn.c_proj.weight
    fc = model.blocks[0].mlp.c_fc.weight
    assert fc.std().item() == pytest.approx(0.02, rel=0.1)
    assert proj.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.1)


def test_ignored_targets_do_not_count() -> None:
    model = tiny()
    x = torch.randint(0, 50, (2, 8))
    y = x.clone()
    y[:, :4] = IGNORE_INDEX
    full = torch.nn.functional.cross_entropy(
        model(x)["logits"][:, 4:].reshape(-1, 50), y[:, 4:].reshape(-1)
    )
    assert model(x, y)["loss"].item() == pytest.approx(full.item(), rel=1e-6)


def test_padded_vocab_is_hidden_from_the_logits() -> None:
    model = tiny(pad_vocab_multiple=64)
    assert model.lm_head.weight.shape[0] == 64
    assert model(torch.zeros(1, 4, dtype=torch.long))["logits"].shape[-1] == 50


def test_too_long_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"exceeds model\.block_size 16"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))


def test_untied_embeddings_count_the_output_layer_not_the_lookup() -> None:
    tied = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8), 40)
    untied = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, tie_embeddings=False), 40)
    everything = sum(p.numel() for p in untied.parameters())
    assert everything == sum(p.numel() for p in tied.parameters()) + 40 * 16
    assert untied.num_params() == tied.num_params()  # 6N counts one vocab x width matmul
    assert untied.num_params(non_embedding=False) == everything
