"""Hugging Face `transformers` folders to and from neat, with safetensors and JSON alone.

Two layouts are understood: GPT-2 (`GPT2LMHeadModel`: learned positions, LayerNorm, GELU MLP,
fused q/k/v) and Llama (`LlamaForCausalLM`: RoPE, RMSNorm, SwiGLU, grouped-query attention).
Each is a table of (neat tensor name, HF tensor name, how to convert), read in both directions,
so import and export cannot drift apart. `transformers` itself is never imported: a folder is
`config.json` + `model.safetensors` (or shards with `model.safetensors.index.json`) +
optionally `tokenizer.json`.

Both commands write into a hidden temporary folder beside `--out` and rename it at the end, so
a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
import torch
import yaml
from safetensors.torch import load_file, save_file

from neat.config import build, validate_config
from neat.data.tokenizers import load_tokenizer
from neat.errors import CheckpointError, ConfigError
from neat.interfaces.contexts import ModelContext
from neat.interfaces.records import TrainState
from neat.models.gpt import GPT, GPTConfig
from neat.models.load import load_trained_model
from neat.persistence import Checkpointer, resolve_checkpoint
from neat.persistence.files import check_out_free, staged_folder
from neat.persistence.manifest import CHECKPOINTS_DIR, CONFIG_FILE, TOKENIZER_FILE

__all__ = [
    "HF_CONFIG",
    "HF_INDEX",
    "HF_WEIGHTS",
    "ConversionReport",
    "export_hf",
    "hf_model_fields",
    "import_hf",
]

log = structlog.get_logger(__name__)

HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
# The data section an imported run needs to validate: a path the user replaces before training.
DATA_PLACEHOLDER = "CHANGE_ME"

Layout = Literal["gpt2", "llama"]
# plain: copied as is; conv1d: HF GPT-2's Conv1D stores (in, out), nn.Linear (out, in);
# bias: a GPT-2 bias neat may not have (model.bias: false), exported as zeros
Kind = Literal["plain", "conv1d", "bias"]

# The defaults of the contract's block fields: a model field this neat lacks is fine as long
# as the HF config asks for its default value.
_FIELD_DEFAULTS: dict[str, Any] = {
    "attention": "mha",
    "n_kv_head": None,
    "qk_norm": False,
    "position": "learned",
    "rope_theta": 10000.0,
    "norm": "layernorm",
    "norm_eps": 1e-5,
    "mlp": "gelu",
    "mlp_hidden": None,
    "tie_embeddings": True,
}
_GELU_EXACT = {"gelu"}  # HF's ACT2FN["gelu"] is the exact erf GELU, as neat's F.gelu
_GELU_TANH = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast"}
# HF buffers with no neat counterpart (masks and RoPE frequencies older versions saved)
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


@dataclass
class ConversionReport:
    """What a conversion wrote, and what a user should know about it."""

    out: Path
    layout: Layout
    tensors: int
    tokenizer: bool
    notes: list[str] = field(default_factory=list)


# -- the tensor tables -----------------------------------------------------------------------------


def _gpt2_table(n_layer: int, tied: bool) -> list[tuple[str, str, Kind]]:
    rows: list[tuple[str, str, Kind]] = [
        ("wte.weight", "transformer.wte.weight", "plain"),
        ("pos.wpe.weight", "transformer.wpe.weight", "plain"),
    ]
    for i in range(n_layer):
        n, h = f"blocks.{i}.", f"transformer.h.{i}."
        for part in ("ln_1", "ln_2"):
            rows += [(f"{n}{part}.weight", f"{h}{part}.weight", "plain")]
            rows += [(f"{n}{part}.bias", f"{h}{part}.bias", "bias")]
        for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            rows += [(f"{n}{part}.weight", f"{h}{part}.weight", "conv1d")]
            rows += [(f"{n}{part}.bias", f"{h}{part}.bias", "bias")]
    rows += [("ln_f.weight", "transformer.ln_f.weight", "plain")]
    rows += [("ln_f.bias", "transformer.ln_f.bias", "bias")]
    if not tied:
        rows += [("lm_head.weight", "lm_head.weight", "plain")]
    return rows


def _llama_table(n_layer: int, tied: bool, bias: bool) -> list[tuple[str, str, Kind]]:
    rows: list[tuple[str, str, Kind]] = [("wte.weight", "model.embed_tokens.weight", "plain")]
    linears = {
        "attn.q_proj": "self_attn.q_proj",
        "attn.k_proj": "self_attn.k_proj",
        "attn.v_proj": "self_attn.v_proj",
        "attn.c_proj": "self_attn.o_proj",
        "mlp.gate_proj": "mlp.gate_proj",
        "mlp.up_proj": "mlp.up_proj",
        "mlp.c_proj": "mlp.down_proj",
    }
    for i in range(n_layer):
        n, h = f"blocks.{i}.", f"model.layers.{i}."
        rows += [(f"{n}ln_1.weight", f"{h}input_layernorm.weight", "plain")]
        rows += [(f"{n}ln_2.weight", f"{h}post_attention_layernorm.weight", "plain")]
        for ours, theirs in linears.items():
            rows += [(f"{n}{ours}.weight", f"{h}{theirs}.weight", "plain")]
            if bias:
                rows += [(f"{n}{ours}.bias", f"{h}{theirs}.bias", "plain")]
    rows += [("ln_f.weight", "model.norm.weight", "plain")]
    if not tied:
        rows += [("lm_head.weight", "lm_head.weight", "plain")]
    return rows


def _table(layout: Layout, cfg: GPTConfig) -> list[tuple[str, str, Kind]]:
    tied = bool(getattr(cfg, "tie_embeddings", True))
    if layout == "gpt2":
        return _gpt2_table(cfg.n_layer, tied)
    return _llama_table(cfg.n_layer, tied, cfg.bias)


# -- config.json -> neat ---------------------------------------------------------------------------


def _layout_of(hf: Mapping[str, Any], source: str) -> Layout:
    model_type = hf.get("model_type")
    architectures = hf.get("architectures") or []
    if model_type == "gpt2":
        return "gpt2"
    if model_type == "llama":
        return "llama"
    named = f"model_type {model_type!r}"
    if architectures:
        named += f" ({', '.join(map(str, architectures))})"
    raise ConfigError(
        f"{source}: {named} is not an architecture neat converts; import-hf reads GPT-2 "
        "(model_type gpt2, GPT2LMHeadModel) and Llama (model_type llama, LlamaForCausalLM) "
        "folders"
    )


def _need(hf: Mapping[str, Any], key: str, source: str) -> Any:
    if key not in hf:
        raise ConfigError(f"{source}: the key {key!r} is missing; it is needed to build the model")
    return hf[key]


def _require(ok: bool, source: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {what}; neat has no equivalent, so it cannot be imported")


def _gpt2_fields(hf: Mapping[str, Any], source: str, notes: list[str]) -> dict[str, Any]:
    act = hf.get("activation_function", "gelu_new")
    _require(act in _GELU_EXACT | _GELU_TANH, source, f"activation_function {act!r} is not a GELU")
    _require(hf.get("scale_attn_weights", True), source, "scale_attn_weights: false")
    _require(
        not hf.get("scale_attn_by_inverse_layer_idx", False),
        source,
        "scale_attn_by_inverse_layer_idx: true",
    )
    _require(not hf.get("add_cross_attention", False), source, "add_cross_attention: true")
    n_embd = int(_need(hf, "n_embd", source))
    n_inner = hf.get("n_inner")
    return {
        "n_layer": int(_need(hf, "n_layer", source)),
        "n_head": int(_need(hf, "n_head", source)),
        "n_embd": n_embd,
        "block_size": int(_need(hf, "n_positions", source)),
        "vocab_size": int(_need(hf, "vocab_size", source)),
        "bias": True,
        "norm_eps": float(hf.get("layer_norm_epsilon", 1e-5)),
        "mlp_hidden": None if n_inner in (None, 4 * n_embd) else int(n_inner),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", True)),
        "mlp": "gelu_tanh" if act in _GELU_TANH else "gelu",
    }


def _rope_theta(hf: Mapping[str, Any], source: str) -> float:
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    for name, section in (("rope_parameters", params), ("rope_scaling", scaling)):
        kind = section.get("rope_type", section.get("type", "default"))
        _require(kind == "default", source, f"{name}.rope_type {kind!r} (scaled RoPE)")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _llama_fields(hf: Mapping[str, Any], source: str) -> dict[str, Any]:
    act = hf.get("hidden_act", "silu")
    _require(act == "silu", source, f"hidden_act {act!r} (neat's swiglu uses SiLU)")
    hidden = int(_need(hf, "hidden_size", source))
    heads = int(_need(hf, "num_attention_heads", source))
    head_dim = hf.get("head_dim")
    _require(
        head_dim in (None, hidden // heads),
        source,
        f"head_dim {head_dim} differs from hidden_size / num_attention_heads ({hidden // heads})",
    )
    attention_bias = bool(hf.get("attention_bias", False))
    mlp_bias = bool(hf.get("mlp_bias", False))
    _require(
        attention_bias == mlp_bias,
        source,
        f"attention_bias {attention_bias} with mlp_bias {mlp_bias} (neat's model.bias sets both)",
    )
    return {
        "n_layer": int(_need(hf, "num_hidden_layers", source)),
        "n_head": heads,
        "n_embd": hidden,
        "block_size": int(_need(hf, "max_position_embeddings", source)),
        "vocab_size": int(_need(hf, "vocab_size", source)),
        "bias": attention_bias,
        "attention": "gqa",
        "n_kv_head": int(hf.get("num_key_value_heads") or heads),
        "position": "rope",
        "rope_theta": _rope_theta(hf, source),
        "norm": "rmsnorm",
        "norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
        "mlp": "swiglu",
        "mlp_hidden": int(_need(hf, "intermediate_size", source)),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
    }


def hf_model_fields(
    hf: Mapping[str, Any], source: str = HF_CONFIG
) -> tuple[Layout, dict[str, Any], list[str]]:
    """The layout, neat `model:` section and notes for an HF config.json's content.

    Block fields this neat does not have yet are left out when the HF model wants their
    default, and refused (naming the key) when it does not."""
    layout = _layout_of(hf, source)
    notes: list[str] = []
    fields = _gpt2_fields(hf, source, notes) if layout == "gpt2" else _llama_fields(hf, source)
    known = GPTConfig.model_fields
    section: dict[str, Any] = {"type": "gpt", "dropout": 0.0}
    for key, value in fields.items():
        if key in known:
            section[key] = value
        elif value != _FIELD_DEFAULTS.get(key):
            raise ConfigError(
                f"{source}: this model needs model.{key}: {value}, which this version of neat "
                f"does not have (its GPT blocks lack it), so the {layout} model cannot be built"
            )
    return layout, section, notes


# -- reading an HF folder --------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(
            f"{path} does not exist; pass a Hugging Face model folder that holds {what}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return data


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError derives from Exception only
        raise CheckpointError(f"{path} cannot be read as safetensors ({exc})") from None


def _read_hf_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of `folder`: one model.safetensors, or the shards its index names."""
    if (folder / HF_WEIGHTS).is_file():
        return _load_safetensors(folder / HF_WEIGHTS)
    if not (folder / HF_INDEX).is_file():
        raise CheckpointError(
            f"{folder} holds neither {HF_WEIGHTS} nor {HF_INDEX}; save the model with "
            "save_pretrained(..., safe_serialization=True) (pytorch_model.bin is not read: "
            "it is a pickle)"
        )
    weight_map = _read_json(folder / HF_INDEX, "its shard index").get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{folder / HF_INDEX} has no 'weight_map' object")
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(map(str, weight_map.values()))):
        if Path(shard).name != shard:
            raise CheckpointError(f"{folder / HF_INDEX} names a shard outside the folder: {shard}")
        tensors.update(_load_safetensors(folder / shard))
    return tensors


def _hf_name(name: str, layout: Layout) -> str:
    """Checkpoints saved from a bare GPT2Model lack the `transformer.` prefix."""
    if layout == "gpt2" and not name.startswith(("transformer.", "lm_head.")):
        return f"transformer.{name}"
    return name


# -- import ----------------------------------------------------------------------------------------


def _neat_state(
    layout: Layout, model: GPT, hf_tensors: Mapping[str, torch.Tensor], source: Path
) -> dict[str, torch.Tensor]:
    """The HF tensors under neat's names, every shape checked against the built model."""
    hf = {_hf_name(k, layout): v for k, v in hf_tensors.items()}
    state = model.state_dict()
    used: set[str] = set()
    for ours, theirs, kind in _table(layout, model.cfg):
        if ours not in state:
            if kind == "bias":
                continue
            raise CheckpointError(f"neat's model has no tensor {ours} for {theirs}")
        if theirs not in hf:
            raise CheckpointError(
                f"{source}: tensor {theirs} is missing; the weights do not match {HF_CONFIG}"
            )
        tensor = hf[theirs].t() if kind == "conv1d" else hf[theirs]
        expected = tuple(state[ours].shape)
        if tuple(tensor.shape) != expected:
            want = expected[::-1] if kind == "conv1d" else expected
            raise CheckpointError(
                f"{source}: tensor {theirs} has shape {tuple(hf[theirs].shape)} but "
                f"{HF_CONFIG} implies {want}; the weights and the config do not belong together"
            )
        state[ours] = tensor.to(state[ours].dtype).contiguous()
        used.add(theirs)
    tied = getattr(model.cfg, "tie_embeddings", True)
    if tied:
        state["lm_head.weight"] = state["wte.weight"]
        used.add("lm_head.weight")
    extra = sorted(k for k in hf if k not in used and not k.endswith(_IGNORED_SUFFIXES))
    if extra:
        raise CheckpointError(
            f"{source}: tensor {extra[0]} (and {len(extra) - 1} more) has no place in the model "
            f"{HF_CONFIG} describes; the weights and the config do not belong together"
        )
    return state


def _run_config(section: Mapping[str, Any], tokenizer: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "text", "path": DATA_PLACEHOLDER}
    if tokenizer:
        data["tokenizer"] = {"type": "hf", "path": TOKENIZER_FILE}
    return {"name": "imported", "model": dict(section), "data": data}


_CONFIG_HEADER = """\
# Imported from a Hugging Face folder by `neat checkpoints import-hf`.
# Before training, set data.path (now a placeholder) to your corpus; model.init_from: .
# starts from the imported weights (checkpoints/step_0), e.g.
#   neat train -c {config} --set data.path=corpus.txt
"""


def import_hf(hf_dir: Path, out: Path) -> ConversionReport:
    """Convert the HF folder `hf_dir` into a new neat run directory `out` holding one
    weights-only checkpoint (`checkpoints/step_0`) that `neat generate --checkpoint` and
    `model.init_from` read."""
    hf_dir, out = Path(hf_dir), Path(out)
    check_out_free(out)
    if not hf_dir.is_dir():
        raise CheckpointError(f"{hf_dir} does not exist or is not a folder")
    hf_config = _read_json(hf_dir / HF_CONFIG, HF_CONFIG)
    layout, section, notes = hf_model_fields(hf_config, str(hf_dir / HF_CONFIG))
    tensors = _read_hf_tensors(hf_dir)
    tokenizer_file = hf_dir / TOKENIZER_FILE
    has_tokenizer = tokenizer_file.is_file()
    raw = _run_config(section, has_tokenizer)
    final = out.resolve()
    config = validate_config(raw, base_dir=final, source=str(hf_dir / HF_CONFIG))
    tokenizer = load_tokenizer(tokenizer_file) if has_tokenizer else None
    if tokenizer is not None and tokenizer.vocab_size > section["vocab_size"]:
        raise CheckpointError(
            f"{tokenizer_file} has {tokenizer.vocab_size} tokens but {HF_CONFIG} has vocab_size "
            f"{section['vocab_size']}; they do not belong together"
        )
    if tokenizer is None:
        notes.append(
            f"{hf_dir} has no {TOKENIZER_FILE}: the run holds the weights for "
            "model.init_from (with a data.tokenizer of the same ids), but `neat generate` "
            f"needs a tokenizer; put the model's {TOKENIZER_FILE} in {hf_dir} and import again"
        )
    model = build("model", config.model, ModelContext(vocab_size=section["vocab_size"]))
    if not isinstance(model, GPT):  # model.type is gpt: only a replaced registry entry
        raise ConfigError(f"model.type gpt built a {type(model).__name__}, not neat's GPT")
    model.load_state_dict(_neat_state(layout, model, tensors, hf_dir / HF_WEIGHTS))
    with staged_folder(out) as tmp:
        text = yaml.safe_dump({**raw, "model": {**raw["model"], "init_from": "."}}, sort_keys=False)
        (tmp / CONFIG_FILE).write_text(
            _CONFIG_HEADER.format(config=out / CONFIG_FILE) + text, encoding="utf-8"
        )
        extra = {CONFIG_FILE: tmp / CONFIG_FILE}
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_FILE)  # as neat saves it: init_from's check passes
            extra[TOKENIZER_FILE] = tmp / TOKENIZER_FILE
        checkpointer = Checkpointer(tmp / CHECKPOINTS_DIR, metadata=config.model_dump(mode="json"))
        checkpointer.save(TrainState(), model, None, extra)
    log.info("hf_imported", source=str(hf_dir), out=str(out), layout=layout)
    return ConversionReport(out, layout, len(tensors), has_tokenizer, notes)


# -- export ----------------------------------------------------------------------------------------


def _export_layout(cfg: GPTConfig) -> Layout:
    """Which HF architecture expresses `cfg` exactly; ConfigError naming the key otherwise."""
    parts = {key: getattr(cfg, key, default) for key, default in _FIELD_DEFAULTS.items()}
    if parts["qk_norm"]:
        raise ConfigError(
            "model.qk_norm: true has no equivalent in GPT-2 or Llama folders; export a model "
            "trained with qk_norm: false"
        )
    gpt2 = {"attention": "mha", "position": "learned", "norm": "layernorm", "mlp": "gelu"}
    llama = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu"}
    if parts["mlp"] == "gelu_tanh":  # GPT-2's own activation (gelu_new)
        gpt2["mlp"] = "gelu_tanh"
    if all(parts[k] == v for k, v in gpt2.items()):
        return "gpt2"  # an explicit mlp_hidden is GPT-2's n_inner
    if all(parts[k] == v for k, v in llama.items()) and parts["attention"] in ("mha", "gqa"):
        return "llama"
    target = gpt2 if parts["position"] == "learned" else llama
    wrong = next(k for k, v in target.items() if parts[k] != v)
    layout = "GPT-2" if target is gpt2 else "Llama"
    raise ConfigError(
        f"model.{wrong}: {parts[wrong]} cannot be expressed as a Hugging Face folder: GPT-2 "
        "needs attention mha, position learned, norm layernorm, mlp gelu or gelu_tanh; Llama "
        f"needs position rope, norm rmsnorm, mlp swiglu, attention gqa or mha (closest here: "
        f"{layout})"
    )


def _hf_config(
    layout: Layout, cfg: GPTConfig, vocab: int, eot: int | None, dtype: torch.dtype
) -> dict[str, Any]:
    tied = bool(getattr(cfg, "tie_embeddings", True))
    eps = float(getattr(cfg, "norm_eps", 1e-5))
    size = getattr(cfg, "mlp_hidden_size", None)
    mlp_hidden = size(cfg.n_embd) if callable(size) else 4 * cfg.n_embd
    common = {
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": None,
        "dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
    }
    if layout == "gpt2":
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_embd": cfg.n_embd,
            "n_positions": cfg.block_size,
            "n_ctx": cfg.block_size,
            "n_inner": None if mlp_hidden == 4 * cfg.n_embd else mlp_hidden,
            # exact, as neat's gelu; gelu_new is the tanh approximation (mlp: gelu_tanh)
            "activation_function": "gelu_new" if cfg.mlp == "gelu_tanh" else "gelu",
            "layer_norm_epsilon": eps,
            "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.dropout,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False,
            "initializer_range": 0.02,
            **common,
        }
    theta = float(getattr(cfg, "rope_theta", 10000.0))
    heads = cfg.n_head
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.n_embd,
        "intermediate_size": mlp_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": heads,
        "num_key_value_heads": getattr(cfg, "n_kv_head", None) or heads,
        "head_dim": cfg.n_embd // heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": eps,
        "rope_theta": theta,  # transformers < 5 reads this; 5 reads rope_parameters
        "rope_parameters": {"rope_type": "default", "rope_theta": theta},
        "attention_bias": cfg.bias,
        "attention_dropout": cfg.dropout,
        "mlp_bias": cfg.bias,
        "initializer_range": 0.02,
        **common,
    }


def _hf_state(layout: Layout, model: GPT) -> dict[str, torch.Tensor]:
    """The model's tensors under HF names: vocabulary padding cut off, Conv1D transposed,
    zero biases where GPT-2 has them and neat's model.bias: false has not."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    vocab = model.vocab_size
    for name in ("wte.weight", "lm_head.weight"):
        state[name] = state[name][:vocab]
    if layout == "llama" and any(k.endswith("attn.c_attn.weight") for k in state):
        state = _split_fused_qkv(state, model.cfg.n_embd)
    out: dict[str, torch.Tensor] = {}
    for ours, theirs, kind in _table(layout, model.cfg):
        if ours not in state:
            if kind != "bias":
                raise CheckpointError(f"the model has no tensor {ours} (for {theirs})")
            weight = state[ours.removesuffix("bias") + "weight"]
            size = weight.shape[0]  # LayerNorm weight (C,), Linear weight (out, in)
            out[theirs] = torch.zeros(size, dtype=weight.dtype)
            continue
        tensor = state[ours].t() if kind == "conv1d" else state[ours]
        out[theirs] = tensor.contiguous().clone()
    return out


def _split_fused_qkv(state: dict[str, torch.Tensor], n_embd: int) -> dict[str, torch.Tensor]:
    """neat's mha keeps q, k, v in one c_attn; Llama has three projections."""
    split: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        prefix, _, param = key.rpartition("c_attn.")
        if not prefix:
            split[key] = tensor
            continue
        for part, chunk in zip(
            ("q_proj", "k_proj", "v_proj"), torch.split(tensor, n_embd), strict=True
        ):
            split[f"{prefix}{part}.{param}"] = chunk
    return split


def export_hf(checkpoint: Path, out: Path) -> ConversionReport:
    """Write the neat checkpoint (or a run's newest one) as an HF folder `out` that
    `AutoModelForCausalLM.from_pretrained(out)` loads."""
    out = Path(out)
    check_out_free(out)
    path = resolve_checkpoint(Path(checkpoint))
    model, tokenizer, config = load_trained_model(path)
    if not isinstance(model, GPT):
        raise ConfigError(
            f"checkpoint {path}: model.type {config.model.type!r} has no Hugging Face "
            "equivalent; export-hf converts model.type gpt"
        )
    layout = _export_layout(model.cfg)
    tensors = _hf_state(layout, model)
    dtype = model.wte.weight.dtype
    hf_config = _hf_config(layout, model.cfg, model.vocab_size, tokenizer.eot_id, dtype)
    source = path / TOKENIZER_FILE
    spec = json.loads(source.read_text(encoding="utf-8"))
    is_hf = isinstance(spec, dict) and "model" in spec and "neat_tokenizer" not in spec
    notes = []
    if not is_hf:
        notes.append(
            f"the run's tokenizer ({spec.get('neat_tokenizer', '?')}) is neat's own, not a "
            f"Hugging Face {TOKENIZER_FILE}: the folder holds the model only; encode text "
            "with neat's tokenizer from the checkpoint"
        )
    with staged_folder(out) as tmp:
        save_file(tensors, str(tmp / HF_WEIGHTS), metadata={"format": "pt"})
        (tmp / HF_CONFIG).write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        if is_hf:
            shutil.copyfile(source, tmp / TOKENIZER_FILE)
            eot = getattr(tokenizer, "eot_token", None)
            tok_config = {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": config.model.block_size,
                **({"eos_token": eot, "bos_token": eot} if eot else {}),
            }
            (tmp / HF_TOKENIZER_CONFIG).write_text(
                json.dumps(tok_config, indent=2) + "\n", encoding="utf-8"
            )
    log.info("hf_exported", checkpoint=str(path), out=str(out), layout=layout)
    return ConversionReport(out, layout, len(tensors), is_hf, notes)
