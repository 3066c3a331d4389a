"""KV-cache decoding: the same logits as recomputing the window at every position (float64),
and the same tokens from `generate` with and without the cache, also past block_size."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from neat.evaluation.generation import generate
from neat.models import GPT
from neat.models.gpt import GPTConfig

VOCAB = 29
VARIANTS = [
    {"attention": "mha"},
    {"attention": "mha", "position": "rope"},
    {"attention": "gqa", "n_kv_head": 2},
    {"attention": "gqa", "n_kv_head": 1, "position": "rope", "qk_norm": True},
    {"attention": "gqa", "position": "none", "norm": "rmsnorm", "mlp": "swiglu"},
]
# Hyena keeps no cache: generate recomputes its window either way (same tokens, tested too).
SAMPLED = [*VARIANTS, {"attention": "hyena", "hyena": {"filter_order": 8}}]


def model_of(**fields: Any) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(**{"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 24, **fields})
    return GPT(cfg, vocab_size=VOCAB).eval()


@pytest.mark.parametrize("fields", VARIANTS, ids=lambda f: "-".join(map(str, f.values())))
def test_cached_logits_equal_the_full_forward_at_every_position(fields: dict[str, Any]) -> None:
    model = model_of(**fields).double()
    x = torch.randint(0, VOCAB, (2, 24))
    full = model(x)["logits"]
    cache = model.make_cache()
    assert cache is not None
    # a prompt of 5, a chunk of 3 (queries over cached keys need the offset mask), then 1 by 1
    pieces = [model(x[:, :5], cache=cache)["logits"], model(x[:, 5:8], cache=cache)["logits"]]
    pieces += [model(x[:, t : t + 1], cache=cache)["logits"] for t in range(8, 24)]
    assert cache.offset == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="block_size"):
        model(x[:, :1], cache=cache)


@pytest.mark.parametrize("fields", SAMPLED, ids=lambda f: "-".join(map(str, f.values())))
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generate_gives_the_same_tokens_with_and_without_the_cache(
    fields: dict[str, Any], temperature: float
) -> None:
    model = model_of(**fields)
    prompt = torch.randint(0, VOCAB, (2, 3))
    out = {}
    for use_cache in (True, False):
        # 40 new tokens overflow block_size 24: the cached run falls back to the window
        out[use_cache] = generate(
            model,
            prompt,
            40,
            block_size=24,
            temperature=temperature,
            generator=torch.Generator().manual_seed(5),
            use_cache=use_cache,
        )
    assert torch.equal(out[True], out[False])


def test_generation_uses_the_cache_and_training_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_of()
    calls: list[int] = []
    forward = GPT.forward

    def counting(self: GPT, ids: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(ids.shape[1] if kwargs.get("cache") is not None else -ids.shape[1])
        return forward(self, ids, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", counting)
    generate(model, torch.zeros(1, 4, dtype=torch.long), 22, block_size=24, temperature=0.0)
    assert calls == [4] + [1] * 20 + [-24]  # the prompt, one token per step, then the window
    assert model_of(attention="hyena").make_cache() is None


@pytest.mark.parametrize("fields", VARIANTS, ids=lambda f: "-".join(map(str, f.values())))
def test_static_cache_steps_equal_the_full_forward(fields: dict[str, Any]) -> None:
    """The fixed-shape form CUDA graphs replay: position a tensor, the whole buffer masked."""
    model = model_of(**fields).double()
    x = torch.randint(0, VOCAB, (2, 24))
    full = model(x)["logits"]
    cache = model.make_cache()
    assert cache is not None
    pieces = [model(x[:, :6], cache=cache)["logits"]]
    position = cache.make_static()
    assert cache.static and cache.offset is position
    with pytest.raises(ValueError, match="one position a step"):
        model(x[:, 6:8], cache=cache)
    for t in range(6, 24):
        pieces.append(model(x[:, t : t + 1], cache=cache)["logits"])
        position += 1
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-10)


def test_a_static_cache_needs_a_prompt_first() -> None:
    cache = model_of().make_cache()
    assert cache is not None
    with pytest.raises(ValueError, match="needs a prompt"):
        cache.make_static()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("fields", VARIANTS[:4], ids=lambda f: "-".join(map(str, f.values())))
def test_cuda_graph_decoding_gives_the_uncached_tokens(fields: dict[str, Any]) -> None:
    model = model_of(**fields).double().cuda()
    prompt = torch.randint(0, VOCAB, (2, 3), device="cuda")
    out = {
        graph: generate(model, prompt, 40, block_size=24, temperature=0.0, cuda_graph=graph)
        for graph in (True, False)
    }
    plain = generate(model, prompt, 40, block_size=24, temperature=0.0, use_cache=False)
    assert torch.equal(out[True], plain) and torch.equal(out[False], plain)
