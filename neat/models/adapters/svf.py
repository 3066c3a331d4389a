"""Singular-value fine-tuning (SVF) and expert mixing, after Transformer² (Sun, Cetin & Tang
2025, "Transformer²: Self-adaptive LLMs", arXiv 2501.06252).

Each adapted weight W = U diag(σ) Vᵀ is used as W' = U diag(σ ⊙ z) Vᵀ with one trainable vector z
(length min(out, in), initialised to ones): full rank with only r parameters per matrix. All
experts of one base share each matrix's singular basis, so their z-vectors can be mixed
linearly (`mix_experts`), with the mixing weights searched by the cross-entropy method
(`cem_search`, the paper's few-shot adaptation).

Choices (see docs/research/components.md §3):
- W' is computed as the residual W + U diag(σ ⊙ (z − 1)) Vᵀ, so z = 1 is an exact zero
  correction and gives the base model bit for bit; direct reconstruction U diag(σ) Vᵀ is off by
  rounding (~6e-8 in fp32, ~1e-3 in bf16).
- z is used as is: no sigmoid parameterisation and no renormalisation of Σσ (both are choices
  of the reference code, not of the paper).
- The SVD is computed once, in float64, stored in W's dtype as persistent buffers and saved
  with the checkpoint; `check_svd` and `base_fingerprint` refuse factors or z-vectors that
  belong to a different base.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

__all__ = [
    "SVFLinear",
    "apply_svf",
    "base_fingerprint",
    "cem_search",
    "check_svd",
    "load_expert",
    "load_svf_z",
    "mix_experts",
    "project_to_simplex",
    "save_expert",
    "svf_parameters",
    "svf_z",
]

_SHOWN_NAMES = 12  # how many available Linear names an error message lists


class SVFLinear(nn.Module):
    """A frozen `nn.Linear` whose singular values are rescaled by a trainable vector `z`.

    Buffers `svd_u` (out × r), `svd_s` (r) and `svd_v` (in × r, the right singular vectors as
    columns, so W = U diag(s) Vᵀ) are persistent: the SVD is computed once and saved with the
    checkpoint, and a loaded state_dict restores exactly the factors it was trained with.
    """

    svd_u: Tensor
    svd_s: Tensor
    svd_v: Tensor

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        base.requires_grad_(False)
        weight = base.weight.detach()
        with torch.no_grad():
            u, s, vh = torch.linalg.svd(weight.to(torch.float64), full_matrices=False)
        self.register_buffer("svd_u", u.to(weight.dtype).contiguous())
        self.register_buffer("svd_s", s.to(weight.dtype).contiguous())
        self.register_buffer("svd_v", vh.mT.to(weight.dtype).contiguous())
        self.z = nn.Parameter(torch.ones(s.shape[0], dtype=weight.dtype, device=weight.device))
        self.enabled = True  # False: the base layer alone (`adapters_disabled`)

    @property
    def weight(self) -> Tensor:
        """The frozen base weight, for code that inspects a Linear's weight (GPT's tying check
        in `num_params`); the weight the forward pass uses is `effective_weight()`."""
        return self.base.weight

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def rank(self) -> int:
        """r = min(out_features, in_features): the length of z."""
        return int(self.svd_s.shape[0])

    def effective_weight(self) -> Tensor:
        """W + U diag(s ⊙ (z − 1)) Vᵀ: the residual form, exactly W at z = 1."""
        scale = self.svd_s * (self.z - 1)
        delta = (self.svd_u * scale) @ self.svd_v.mT
        return self.base.weight + delta

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return F.linear(x, self.base.weight, self.base.bias)
        return F.linear(x, self.effective_weight(), self.base.bias)

    def set_z(self, z: Tensor) -> None:
        """Evaluate with a z from outside (an expert or a mixture): copied into the parameter,
        so an optimizer holding `self.z` keeps working."""
        if z.shape != self.z.shape:
            raise ValueError(
                f"z of shape {tuple(z.shape)} does not fit this layer: it needs "
                f"{tuple(self.z.shape)} (min(out, in) of its {tuple(self.base.weight.shape)} "
                "weight); pass the z-vector saved for this layer"
            )
        with torch.no_grad():
            self.z.copy_(z)

    def extra_repr(self) -> str:
        return f"rank={self.rank}"


def _matches(name: str, pattern: str) -> bool:
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return "." not in pattern and fnmatch.fnmatchcase(name.rsplit(".", 1)[-1], pattern)


def _svf_modules(model: nn.Module) -> dict[str, SVFLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, SVFLinear)}


def _plain_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Linear layers not already inside an SVFLinear (those are bases, not targets)."""
    inner = {id(m.base) for m in _svf_modules(model).values()}
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and id(m) not in inner and n
    }


def _name_list(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return shown + (f", … ({more} more)" if more > 0 else "") if names else "none"


def apply_svf(model: nn.Module, *, targets: Sequence[str]) -> list[str]:
    """Wrap the model's `nn.Linear` layers named by `targets` in `SVFLinear`, in place, and
    freeze everything but the z-vectors; returns the sorted wrapped names.

    A target is an fnmatch glob over qualified module names ("*.attn.c_attn", "*.mlp.*"; `*`
    also crosses dots). A target without a dot is also tried against the last name component,
    so "c_fc" matches every "….mlp.c_fc" and "c_proj" both attention and MLP projections.
    Non-Linear modules a glob also matches (dropouts under "*.mlp.*") are skipped, but every
    target must match at least one Linear. A tied `lm_head` (GPT: lm_head.weight is
    wte.weight) is decomposed from the shared weight; the embedding stays frozen and untouched.
    """
    if isinstance(targets, str):
        raise ValueError(
            f"targets={targets!r} is a string; pass a list of patterns, e.g. [{targets!r}]"
        )
    if not targets:
        raise ValueError("targets is empty; name the Linear layers to adapt, e.g. ['*.mlp.*']")
    linears = _plain_linears(model)
    available = sorted(linears)
    chosen: set[str] = set()
    for pattern in targets:
        hits = {n for n in linears if _matches(n, pattern)}
        if not hits:
            others = [
                f"{n!r} ({type(m).__name__})"
                for n, m in model.named_modules()
                if n and _matches(n, pattern)
            ]
            found = (
                f"it matches {', '.join(others[:_SHOWN_NAMES])}, not nn.Linear; " if others else ""
            )
            raise ValueError(
                f"SVF target {pattern!r} matches no nn.Linear: {found}"
                f"target Linear layers by name or glob, e.g. one of {_name_list(available)}"
            )
        chosen |= hits
    model.requires_grad_(False)
    for name in sorted(chosen):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SVFLinear(linears[name]))
    for module in _svf_modules(model).values():
        module.z.requires_grad_(True)
    return sorted(chosen)


def svf_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The z-vectors, in module order: what the optimizer should hold."""
    return [m.z for m in _svf_modules(model).values()]


def svf_z(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of every z-vector by module name: an expert, ready for `save_expert`."""
    return {n: m.z.detach().clone() for n, m in _svf_modules(model).items()}


def load_svf_z(model: nn.Module, zs: Mapping[str, Tensor]) -> None:
    """Copy z-vectors (an expert or a mixture) into the model's SVF layers; every layer must
    get exactly one of the right shape, so a partial or foreign expert is refused."""
    modules = _svf_modules(model)
    missing = sorted(set(modules) - set(zs))
    extra = sorted(set(zs) - set(modules))
    shaped = sorted(
        f"{n!r}: got {tuple(zs[n].shape)}, needs {tuple(m.z.shape)}"
        for n, m in modules.items()
        if n in zs and zs[n].shape != m.z.shape
    )
    problems = []
    if missing:
        problems.append(f"missing {_name_list(missing)}")
    if extra:
        problems.append(f"extra {_name_list(extra)}")
    if shaped:
        problems.append("mis-shaped " + "; ".join(shaped))
    if problems:
        raise ValueError(
            "z-vectors do not fit this model's SVF layers: "
            + "; ".join(problems)
            + " — load an expert trained with the same apply_svf targets on this base"
        )
    for name, module in modules.items():
        module.set_z(zs[name])


def base_fingerprint(model: nn.Module) -> str:
    """A short sha256 of the frozen base parameters (names, shapes, dtypes, bytes; not z),
    equal before and after `apply_svf`: it ties experts and SVD factors to their base."""
    svf = _svf_modules(model)
    z_ids = {id(m.z) for m in svf.values()}
    renames = {f"{n}.base.": f"{n}." for n in svf}  # "lm_head.base.weight" -> "lm_head.weight"
    entries: list[tuple[str, Tensor]] = []
    for name, param in model.named_parameters():  # tied weights come once, under one name
        if id(param) in z_ids:
            continue
        for old, new in renames.items():
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        entries.append((name, param))
    digest = hashlib.sha256()
    for key, tensor in sorted(entries, key=lambda e: e[0]):
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def check_svd(model: nn.Module) -> None:
    """Check every SVF layer's stored factors reconstruct its base weight.

    Rounding the float64 factors to their dtype moves each entry of U diag(s) Vᵀ by at most
    ~1.5·eps·s_max (the rows of U and V have norm ≤ 1), so the tolerance is 4·eps·s_max, with
    eps never below float32's (a model cast to float64 after `apply_svf` keeps float32-accurate
    factors): a base weight from another checkpoint misses it by orders of magnitude.
    """
    for name, m in _svf_modules(model).items():
        w = m.base.weight.detach()
        if m.svd_u.shape[0] != w.shape[0] or m.svd_v.shape[0] != w.shape[1]:
            raise ValueError(
                f"SVD factors of {name!r} are for a {m.svd_u.shape[0]}×{m.svd_v.shape[0]} "
                f"weight, but its base weight is {w.shape[0]}×{w.shape[1]}"
            )
        u, s, v = (t.detach().to(torch.float64) for t in (m.svd_u, m.svd_s, m.svd_v))
        error = ((u * s) @ v.mT - w.to(torch.float64)).abs().max().item()
        eps = max(torch.finfo(dt).eps for dt in (m.svd_u.dtype, w.dtype, torch.float32))
        tolerance = 4 * eps * (s.abs().max().item() if s.numel() else 0.0)
        if not error <= tolerance:
            raise ValueError(
                f"SVD factors of {name!r} do not reconstruct its base weight: max error "
                f"{error:.3g} > tolerance {tolerance:.3g}; the base weights and the saved "
                "SVD come from different models — load the checkpoint onto the base it was "
                "trained from"
            )


def save_expert(path: str | Path, zs: Mapping[str, Tensor], *, fingerprint: str, task: str) -> None:
    """Write one expert's z-vectors as safetensors, tagged with its base's fingerprint and
    its task, so `load_expert` can refuse it on another base."""
    tensors = {n: z.detach().to("cpu").contiguous().clone() for n, z in zs.items()}
    save_file(tensors, str(path), metadata={"fingerprint": fingerprint, "task": task})


def load_expert(path: str | Path, *, fingerprint: str) -> dict[str, Tensor]:
    """Read an expert written by `save_expert`, refusing one trained on another base (z only
    means something in the singular basis of the weights it was trained on)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    found = metadata.get("fingerprint")
    if found != fingerprint:
        raise ValueError(
            f"expert {str(path)!r} was trained on base {found!r}, but this model's base "
            f"fingerprint is {fingerprint!r}; use an expert trained on this base"
        )
    tensors: dict[str, Tensor] = load_file(str(path))
    return tensors


def mix_experts(experts: Sequence[Mapping[str, Tensor]], weights: Tensor) -> dict[str, Tensor]:
    """Σ_k w_k z_k per module: the paper's linear interpolation of z-vectors, meaningful
    because all experts share each matrix's singular basis."""
    if not experts:
        raise ValueError("mix_experts needs at least one expert")
    if weights.ndim != 1 or weights.shape[0] != len(experts):
        raise ValueError(
            f"weights of shape {tuple(weights.shape)} do not fit {len(experts)} experts: "
            f"pass a 1-D tensor of {len(experts)} weights"
        )
    names = set(experts[0])
    for k, expert in enumerate(experts[1:], start=1):
        if set(expert) != names:
            diff = sorted(names ^ set(expert))
            raise ValueError(
                f"expert {k} covers other modules than expert 0 (differ: {_name_list(diff)}); "
                "mix experts trained with the same apply_svf targets"
            )
    mixed: dict[str, Tensor] = {}
    for name in experts[0]:
        shape = experts[0][name].shape
        for k, expert in enumerate(experts):
            if expert[name].shape != shape:
                raise ValueError(
                    f"expert {k}'s z for {name!r} has shape {tuple(expert[name].shape)}, "
                    f"expert 0's has {tuple(shape)}"
                )
        z0 = experts[0][name]
        total = weights[0].to(z0.dtype) * z0
        for k in range(1, len(experts)):
            z = experts[k][name]
            total = total + weights[k].to(z.dtype) * z
        mixed[name] = total
    return mixed


def project_to_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of v (or each row of a batch, along the last dim) onto the
    probability simplex {w ≥ 0, Σw = 1}: the sort-based algorithm of Duchi, Shalev-Shwartz,
    Singer & Chandra 2008 ("Efficient projections onto the l1-ball", Fig. 1)."""
    if v.ndim == 0 or v.shape[-1] == 0:
        raise ValueError(f"project_to_simplex needs a non-empty last dimension, got {v.shape}")
    u = torch.sort(v, dim=-1, descending=True).values
    css = torch.cumsum(u, dim=-1) - 1
    j = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    support = u - css / j > 0  # true for a prefix of the sorted entries
    rho = support.sum(dim=-1, keepdim=True)  # ≥ 1: the largest entry always qualifies
    theta = torch.gather(css, -1, rho - 1) / rho.to(v.dtype)
    return torch.clamp(v - theta, min=0)


def cem_search(
    score: Callable[[Tensor], float],
    n_experts: int,
    *,
    iterations: int = 10,
    population: int = 16,
    elite: int = 4,
    seed: int = 0,
) -> tuple[Tensor, float]:
    """Cross-entropy method over mixing weights (the paper's few-shot adaptation): sample a
    Gaussian, project each sample onto the simplex, keep the `elite` best by `score` (higher
    is better), refit mean and std to them, repeat. Returns the best weights ever scored
    (float64, on the simplex) and their score.

    Each iteration also scores the current mean (the first iteration: the uniform mix), so the
    result is never worse than the distribution's centre. Deterministic given `seed`.
    """
    if n_experts < 1:
        raise ValueError(f"n_experts={n_experts}; need at least 1 expert to mix")
    if iterations < 1:
        raise ValueError(f"iterations={iterations}; need at least 1")
    if not 1 <= elite <= population:
        raise ValueError(f"elite={elite}, population={population}: need 1 ≤ elite ≤ population")
    gen = torch.Generator().manual_seed(seed)
    mean = torch.full((n_experts,), 1.0 / n_experts, dtype=torch.float64)
    std = torch.full((n_experts,), 0.5, dtype=torch.float64)
    best_w = mean.clone()
    best_score = -math.inf
    for _ in range(iterations):
        noise = torch.randn(population - 1, n_experts, generator=gen, dtype=torch.float64)
        samples = torch.cat([mean[None], project_to_simplex(mean + std * noise)])
        scores = []
        for w in samples:
            value = float(score(w.clone()))
            if math.isnan(value):
                raise ValueError(f"score returned NaN for weights {w.tolist()}")
            scores.append(value)
        values = torch.tensor(scores, dtype=torch.float64)
        order = torch.sort(values, descending=True, stable=True).indices
        if values[order[0]].item() > best_score:
            best_score = values[order[0]].item()
            best_w = samples[order[0]].clone()
        elites = samples[order[:elite]]
        mean = project_to_simplex(elites.mean(dim=0))  # on the simplex already, up to rounding
        std = elites.std(dim=0, correction=0)
    return best_w, best_score
