"""LoRA: a trainable low-rank update beside each frozen linear layer.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models" (arXiv:2106.09685):
a frozen weight W gets an update ΔW = (alpha / rank) · B A with A (rank × in) and
B (out × rank). B starts at zero, so an adapter fresh from `apply_lora` is the base model bit
for bit; after training, `merge_lora` folds ΔW into W and the model is the base architecture
again, with no extra cost at inference.

Targets are chosen by qualified module name (as `model.named_modules()` spells it) with
`fnmatch`-style, case-sensitive patterns: a pattern matches a name when it matches the whole
name (``"*.attn.c_attn"``, ``"blocks.0.mlp.*"``; ``*`` also crosses dots), or, if it has no dot,
when it matches the name's last component (``"c_attn"`` or ``"c_*"``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from fnmatch import fnmatchcase

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LoRALinear",
    "apply_lora",
    "lora_parameters",
    "lora_state_dict",
    "matches_target",
    "merge_lora",
]


def _check_hyperparameters(rank: int, alpha: float, dropout: float) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be an integer >= 1, got {rank!r}; pass e.g. rank=8")
    if not alpha > 0:  # also rejects NaN
        raise ValueError(
            f"LoRA alpha must be > 0, got {alpha!r}; alpha = rank gives scaling 1 (e.g. alpha=16)"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}; use 0.0 for none")


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank path:
    ``y = base(x) + (dropout(x) Aᵀ Bᵀ) · alpha / rank``.

    The base stays a submodule named `base`, so its weights keep their place in the
    state dict (``<name>.base.weight``) and can be shared (tied) with other modules.
    """

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        _check_hyperparameters(rank, alpha, dropout)
        self.base = base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        w = base.weight
        self.lora_a = nn.Parameter(
            torch.empty(rank, base.in_features, device=w.device, dtype=w.dtype)
        )
        self.lora_b = nn.Parameter(
            torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype)
        )
        # nn.Linear's own init for A (the paper's "random Gaussian" works too; this keeps
        # A's scale tied to fan-in); B = 0 makes the initial update exactly zero.
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.enabled = True  # False: the base layer alone (`adapters_disabled`)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight, for code that inspects `.weight` (e.g. tie checks)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def delta_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """ΔW = scaling · B A, computed in at least fp32 and returned in `dtype` (default:
        the base weight's), so merging a bf16 model does not round B A twice."""
        w = self.base.weight
        compute = torch.promote_types(w.dtype, torch.float32)
        delta = (self.lora_b.to(compute) @ self.lora_a.to(compute)) * self.scaling
        return delta.to(w.dtype if dtype is None else dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x)
        if not self.enabled:
            return out
        h = self.dropout(x)
        a: torch.Tensor = self.lora_a
        b: torch.Tensor = self.lora_b
        if not torch.is_autocast_enabled(h.device.type) and a.dtype != h.dtype:
            # Outside autocast F.linear needs matching dtypes; inside, it casts on its own.
            a, b = a.to(h.dtype), b.to(h.dtype)
        low_rank = F.linear(F.linear(h, a), b) * self.scaling
        # Adding the update to base(x) (rather than fusing into one matmul) keeps the output
        # bit-identical to the base layer while B is zero.
        return out + low_rank.to(out.dtype)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}"


def matches_target(name: str, pattern: str) -> bool:
    """Whether module `name` is selected by `pattern` (rule in the module docstring)."""
    if fnmatchcase(name, pattern):
        return True
    return "." not in pattern and fnmatchcase(name.rpartition(".")[2], pattern)


def _is_wrappable(module: nn.Module) -> bool:
    # nn.MultiheadAttention reads its out_proj's weight directly instead of calling it, so a
    # wrapper there would be bypassed (or break the attribute access); it is not a target.
    return isinstance(module, nn.Linear) and not isinstance(
        module, nn.modules.linear.NonDynamicallyQuantizableLinear
    )


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def apply_lora(
    model: nn.Module,
    *,
    rank: int,
    alpha: float,
    dropout: float,
    targets: Sequence[str],
) -> list[str]:
    """Wrap every `nn.Linear` whose name matches a pattern in `targets` with `LoRALinear`,
    in place, and freeze everything but the LoRA matrices; returns the wrapped names, sorted.

    Every pattern must select at least one linear layer (a typo fails loudly instead of
    training nothing). A pattern without wildcards that names a non-linear module is an
    error; glob patterns skip non-linear matches (``"*.mlp.*"`` also matches the MLP's
    dropout). Weights shared with other modules (tied embeddings) stay shared and frozen.
    Linears already inside a `LoRALinear` are never wrapped again.
    """
    _check_hyperparameters(rank, alpha, dropout)
    if isinstance(targets, str):
        raise ValueError(
            f"targets must be a list of patterns, got the string {targets!r}; pass [{targets!r}]"
        )
    if not targets:
        raise ValueError("targets is empty; pass module name patterns, e.g. ['c_attn', '*.mlp.*']")

    # All names of each module (a module registered twice is replaced at both places).
    names: dict[int, list[str]] = {}
    modules: dict[int, nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if not name or _inside_lora(model, name) or isinstance(module, LoRALinear):
            continue
        names.setdefault(id(module), []).append(name)
        modules[id(module)] = module
    linear_names = sorted(n for k, ns in names.items() if _is_wrappable(modules[k]) for n in ns)

    selected: set[int] = set()
    for pattern in targets:
        hits = [(k, n) for k, ns in names.items() for n in ns if matches_target(n, pattern)]
        linear_hits = [k for k, _ in hits if _is_wrappable(modules[k])]
        if not any(c in pattern for c in "*?["):
            bad = sorted({n for k, n in hits if not _is_wrappable(modules[k])})
            if bad:
                raise ValueError(
                    f"LoRA target {pattern!r} names {bad[:5]}, which is not an nn.Linear; "
                    f"name its Linear layers instead (e.g. {linear_names[:4]})"
                )
        if not linear_hits:
            others = sorted({n for _, n in hits})
            found = f" it matches only non-Linear modules {others[:5]};" if others else ""
            raise ValueError(
                f"LoRA target {pattern!r} matches no nn.Linear;{found} available Linear "
                f"names include {linear_names[:8]} (patterns are fnmatch globs on the full "
                f"name, or on the last component when they have no dot)"
            )
        selected.update(linear_hits)

    replaced: list[str] = []
    for key in selected:
        base = modules[key]
        assert isinstance(base, nn.Linear)
        wrapper = LoRALinear(base, rank=rank, alpha=alpha, dropout=dropout)
        for name in names[key]:
            _replace(model, name, wrapper)
            replaced.append(name)

    model.requires_grad_(False)
    for p in lora_parameters(model):
        p.requires_grad_(True)
    return sorted(replaced)


def _inside_lora(model: nn.Module, name: str) -> bool:
    """Whether some strict ancestor of module `name` is a LoRALinear."""
    parts = name.split(".")
    module = model
    for part in parts[:-1]:
        module = module.get_submodule(part)
        if isinstance(module, LoRALinear):
            return True
    return False


def _lora_modules(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [
        (name, m)
        for name, m in model.named_modules(remove_duplicate=False)
        if isinstance(m, LoRALinear)
    ]


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA matrices (A and B of every adapted layer, each once): what the optimizer
    should train."""
    params: list[nn.Parameter] = []
    seen: set[int] = set()
    for _, m in _lora_modules(model):
        for p in (m.lora_a, m.lora_b):
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the LoRA matrices, keyed as in `model.state_dict()`: an adapter checkpoint is a
    few MB and loads back with ``model.load_state_dict(sd, strict=False)``."""
    keys = {f"{name}.{p}" for name, _ in _lora_modules(model) for p in ("lora_a", "lora_b")}
    return {k: v for k, v in model.state_dict().items() if k in keys}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold each `LoRALinear` into a plain `nn.Linear` with weight W + scaling · B A, in
    place; the state dict then has the base architecture's keys (``<name>.weight``).

    The merged weight is a new tensor, so a weight tied to another module (GPT's lm_head and
    wte) is untied rather than changed under the other module; a warning says so, since
    such a state dict loads only into the architecture with that tie turned off.
    """
    owners: dict[int, set[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), set()).add(pname.rpartition(".")[0])
    adapted = _lora_modules(model)
    merged: dict[int, nn.Linear] = {}
    for name, lora in adapted:
        if id(lora) not in merged:
            base = lora.base
            w = base.weight
            with torch.no_grad():
                compute = torch.promote_types(w.dtype, torch.float32)
                weight = (w.to(compute) + lora.delta_weight(compute)).to(w.dtype)
            linear = nn.Linear(
                base.in_features, base.out_features, bias=base.bias is not None, device="meta"
            )
            linear.weight = nn.Parameter(weight, requires_grad=w.requires_grad)
            linear.bias = base.bias
            merged[id(lora)] = linear
            lora_names = {n for n, m in adapted if m is lora}
            tied = sorted(o for o in owners[id(w)] if not any(o == f"{n}.base" for n in lora_names))
            if tied:
                warnings.warn(
                    f"merge_lora: {name}'s weight was shared with {tied}; the merged layer has "
                    f"its own weight, so load its state dict into a model without that tie "
                    f"(e.g. GPTConfig(tie_embeddings=False))",
                    stacklevel=2,
                )
        _replace(model, name, merged[id(lora)])
    return model
