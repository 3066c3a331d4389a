"""Byte Latent Transformer (Pagnoni et al., "Byte Latent Transformer: Patches Scale Better Than
Tokens", arXiv 2412.09871), at CPU scale with dense boolean masks.

    bytes -> byte + hash n-gram embeddings -> local encoder (causal byte attention)
          -> per patch: max-pooled query cross-attends to its own bytes      -> patch states
          -> global transformer (causal over patches)                        -> patch outputs
          -> local decoder: byte i cross-attends to the output of the patch before the patch
             of byte i+1, then causal byte attention                         -> next-byte logits

The mechanisms follow the paper and facebookresearch/blt (`bytelatent/model/blt.py`,
`local_models.py`, `latent_transformer.py`); the code is our own. Differences: learned
absolute positions and GPT-2 blocks from `neat.models.blocks` instead of RoPE/SwiGLU, dense
causal byte attention instead of a sliding window, one residual around each cross-attention
(paper eqs. 6/10; the reference adds its input twice), one hash function per n-gram size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from neat.config import register_component
from neat.interfaces.contexts import ModelContext
from neat.models.blocks import ATTENTION, MLPS, NORMS, POSITIONS, Block, gpt2_init
from neat.models.blt.config import BLTConfig
from neat.models.gpt import IGNORE_INDEX

__all__ = [
    "BLT",
    "HashNgramEmbedding",
    "Patcher",
    "StaticPatcher",
    "decoder_cross_mask",
    "decoder_patch_ids",
    "encoder_cross_mask",
    "max_pool_patches",
    "ngram_hashes",
    "patch_ids_from_starts",
]

# (B, L) byte ids -> (B, L) or (B, L + 1) bool patch starts; see `BLT.forward`.
Patcher = Callable[[torch.Tensor], torch.Tensor]

# The first prime of `rolling_polynomial_hash` in bytelatent/model/blt.py (one hash function
# per n-gram size, as in the paper's §4.8).
HASH_PRIME = 1_000_000_007


def _as_int64(value: int) -> int:
    """`value` wrapped to a signed 64-bit integer, as int64 tensor arithmetic wraps."""
    value %= 1 << 64
    return value - (1 << 64) if value >= 1 << 63 else value


def ngram_hashes(ids: torch.Tensor, n: int, buckets: int) -> torch.Tensor:
    """(B, L) -> (B, L): the bucket of the n-gram ending at each byte.

    Rolling polynomial hash Σ_j b_{i−n+1+j}·prime^j in wrapping int64, then mod `buckets`
    (paper eqs. 2–4; `byte_group_hash_function` in bytelatent/model/blt.py). Windows that
    reach before the sequence start are left-padded with zeros, as the reference does.
    """
    padded = torch.cat([ids.new_zeros(ids.shape[0], n - 1), ids.long()], dim=1)
    windows = padded.unfold(1, n, 1)  # (B, L, n), oldest byte first
    powers = torch.tensor(
        [_as_int64(HASH_PRIME**j) for j in range(n)], dtype=torch.long, device=ids.device
    )
    return (windows * powers).sum(-1) % buckets


class HashNgramEmbedding(nn.Module):
    """Byte embedding plus one hashed embedding per n-gram size: e_i = x_i + Σ_n E_n[hash].

    The n-grams give each byte its local context before any attention (paper §3.2.1). The sum
    is not normalised, as in the reference code (the paper divides by the number of terms).
    """

    def __init__(self, vocab_size: int, dim: int, sizes: Sequence[int], buckets: int) -> None:
        super().__init__()
        self.sizes = tuple(sizes)
        self.buckets = buckets
        self.byte = nn.Embedding(vocab_size, dim)
        self.tables = nn.ModuleList(nn.Embedding(buckets, dim) for _ in self.sizes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = self.byte(ids)
        for n, table in zip(self.sizes, self.tables, strict=True):
            x = x + table(ngram_hashes(ids, n, self.buckets))
        return x


# -- patch bookkeeping -----------------------------------------------------------------------------


def patch_ids_from_starts(starts: torch.Tensor) -> torch.Tensor:
    """(B, L) bool patch starts -> (B, L) int64 index of each byte's patch."""
    return starts.long().cumsum(1) - 1


def decoder_patch_ids(starts: torch.Tensor) -> torch.Tensor:
    """(B, L + 1) bool patch starts, the last column for the byte after the input -> (B, L):
    the patch whose global output byte i decodes from; −1 is the learned start state.

    Byte i predicts byte i+1, so it may read only patches whose bytes all lie at ≤ i: the one
    before byte i+1's patch. This is the reference's `decoder_patch_ids_from_lengths` applied
    to `patch_lengths[:, 1:]` (bytelatent/model/blt.py), and it keeps the whole model causal.
    Patch lengths [1, 3, 2] give encoder ids [0, 1, 1, 1, 2] and decoder ids [0, 0, 0, 1, 1].
    """
    return starts.long().cumsum(1)[:, 1:] - 2


def encoder_cross_mask(
    patch_ids: torch.Tensor, num_patches: torch.Tensor, max_patches: int, k: int
) -> torch.Tensor:
    """(B, 1, P·k, L) bool: query slot j·k + s (of patch j) may attend to byte l iff l is in
    patch j (`cross_attn_mask` in bytelatent/model/blt.py). Padding patches (j ≥ the row's
    patch count) see every byte, so no softmax row is empty; their outputs are zeroed."""
    slot_patch = torch.arange(max_patches * k, device=patch_ids.device) // k
    own = patch_ids[:, None, :] == slot_patch[None, :, None]
    padding = slot_patch[None, :] >= num_patches[:, None]
    return (own | padding[:, :, None]).unsqueeze(1)


def decoder_cross_mask(dec_ids: torch.Tensor, max_patches: int, k: int) -> torch.Tensor:
    """(B, 1, L, (P+1)·k) bool: byte i attends to the k slots of patch `dec_ids[:, i]`; the
    first k slots hold the start state (patch −1)."""
    slot_patch = torch.arange((max_patches + 1) * k, device=dec_ids.device) // k - 1
    return (dec_ids[:, :, None] == slot_patch[None, None, :]).unsqueeze(1)


def max_pool_patches(h: torch.Tensor, patch_ids: torch.Tensor, max_patches: int) -> torch.Tensor:
    """(B, L, D) byte states -> (B, P, D) elementwise max over each patch's bytes (the paper's
    pooling init of the patch queries, §4.8; `patch_reduce` with "amax" in bytelatent/model/
    utils.py). Padding patches have no bytes and stay zero."""
    b, _, d = h.shape
    index = patch_ids.unsqueeze(-1).expand(-1, -1, d)
    return h.new_zeros(b, max_patches, d).scatter_reduce(
        1, index, h, reduce="amax", include_self=False
    )


class StaticPatcher:
    """The paper's static ("strided") patching (§2.1): a patch starts every `size` bytes.

    Returns (B, L + 1): the last column says whether the byte after the input starts a patch,
    which the decoder's one-patch shift needs at the last position.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        b, t = input_ids.shape
        positions = torch.arange(t + 1, device=input_ids.device)
        return (positions % self.size == 0).expand(b, t + 1)


# -- layers ----------------------------------------------------------------------------------------


def _block(dim: int, heads: int, cfg: BLTConfig) -> Block:
    return Block(
        ATTENTION[cfg.attention](dim, heads, cfg),
        MLPS[cfg.mlp](dim, cfg),
        NORMS[cfg.norm](dim, cfg),
        NORMS[cfg.norm](dim, cfg),
    )


def _run_blocks(blocks: Iterable[nn.Module], x: torch.Tensor, checkpointed: bool) -> torch.Tensor:
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False) if checkpointed else block(x)
    out: torch.Tensor = x
    return out


class CrossAttention(nn.Module):
    """Multi-head attention of queries over keys/values under a boolean mask (True = may
    attend), pre-normed on both sides (`CrossAttention` in bytelatent/model/
    latent_transformer.py). Returns the update; the caller adds the one residual."""

    def __init__(self, dim: int, n_head: int, cfg: BLTConfig) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = cfg.dropout
        self.norm_q = NORMS[cfg.norm](dim, cfg)
        self.norm_kv = NORMS[cfg.norm](dim, cfg)
        self.q = nn.Linear(dim, dim, bias=cfg.bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=cfg.bias)
        self.c_proj = nn.Linear(dim, dim, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, nq, c = x.shape
        nk = kv.shape[1]
        h = self.n_head
        q = self.q(self.norm_q(x)).view(b, nq, h, c // h).transpose(1, 2)
        k, v = self.kv(self.norm_kv(kv)).split(c, dim=2)
        k = k.view(b, nk, h, c // h).transpose(1, 2)
        v = v.view(b, nk, h, c // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        out: torch.Tensor = self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(b, nq, c)))
        return out


class LocalEncoder(nn.Module):
    """Bytes -> byte states (causal) and patch states (paper §3.2, eqs. 5–8)."""

    def __init__(self, cfg: BLTConfig, vocab_size: int) -> None:
        super().__init__()
        d = cfg.local_dim
        self.k = cfg.cross_attn_k
        self.embed = HashNgramEmbedding(vocab_size, d, cfg.hash_ngram_sizes, cfg.hash_buckets)
        self.pos = POSITIONS[cfg.position](cfg.block_size, d, cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            _block(d, cfg.local_heads, cfg) for _ in range(cfg.encoder_layers)
        )
        # the pooled state becomes k query slots of width d: k·d = the global width (§3.2.2)
        self.patch_query = nn.Linear(d, self.k * d, bias=cfg.bias)
        self.cross = CrossAttention(d, cfg.local_heads, cfg)

    def byte_states(self, input_ids: torch.Tensor, checkpointed: bool = False) -> torch.Tensor:
        x = self.drop(self.pos(self.embed(input_ids)))
        return _run_blocks(self.blocks, x, checkpointed)

    def patch_states(
        self,
        h: torch.Tensor,
        patch_ids: torch.Tensor,
        num_patches: torch.Tensor,
        max_patches: int,
    ) -> torch.Tensor:
        """(B, L, d) byte states -> (B, P, k·d): max-pooled queries, then cross-attention to
        the patch's own bytes only, with a residual. Padding patches come out as zeros."""
        b, _, d = h.shape
        pooled = max_pool_patches(h, patch_ids, max_patches)
        queries: torch.Tensor = self.patch_query(pooled).view(b, max_patches * self.k, d)
        mask = encoder_cross_mask(patch_ids, num_patches, max_patches, self.k)
        out: torch.Tensor = queries + self.cross(queries, h, mask)
        valid = torch.arange(max_patches, device=h.device)[None, :] < num_patches[:, None]
        return out.view(b, max_patches, self.k * d) * valid[..., None]


class GlobalTransformer(nn.Module):
    """The latent transformer: causal over patch states (paper §3.1); most of the FLOPs.

    `make_block()` builds each of its blocks, attention by default; another causal
    (B, P, D) -> (B, P, D) mixer fits (the unified model puts Titans' memory here)."""

    def __init__(self, cfg: BLTConfig, make_block: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        d_in = cfg.cross_attn_k * cfg.local_dim
        d = cfg.global_dim
        self.in_proj: nn.Module = nn.Linear(d_in, d, bias=cfg.bias) if d_in != d else nn.Identity()
        self.pos = POSITIONS[cfg.position](cfg.block_size, d, cfg)  # at most one patch per byte
        self.drop = nn.Dropout(cfg.dropout)
        build = make_block or (lambda: _block(d, cfg.global_heads, cfg))
        self.blocks = nn.ModuleList(build() for _ in range(cfg.global_layers))
        self.ln_f = NORMS[cfg.norm](d, cfg)

    def forward(self, patches: torch.Tensor, checkpointed: bool = False) -> torch.Tensor:
        x = self.drop(self.pos(self.in_proj(patches)))
        out: torch.Tensor = self.ln_f(_run_blocks(self.blocks, x, checkpointed))
        return out


class LocalDecoder(nn.Module):
    """Byte states + patch outputs -> next-byte logits (paper §3.3, eqs. 9–12): each layer
    cross-attends from the bytes to their decoder patch's k slots, then runs a causal block.

    Bytes before the end of the first patch have no earlier patch to read; they read a
    learned start state, which stands in for the reference's BOS patch.
    """

    def __init__(self, cfg: BLTConfig, vocab_size: int) -> None:
        super().__init__()
        d = cfg.local_dim
        self.k = cfg.cross_attn_k
        self.start = nn.Parameter(torch.zeros(cfg.global_dim))
        self.patch_proj = nn.Linear(cfg.global_dim, self.k * d, bias=cfg.bias)
        self.cross = nn.ModuleList(
            CrossAttention(d, cfg.local_heads, cfg) for _ in range(cfg.decoder_layers)
        )
        self.blocks = nn.ModuleList(
            _block(d, cfg.local_heads, cfg) for _ in range(cfg.decoder_layers)
        )
        self.ln_f = NORMS[cfg.norm](d, cfg)
        self.lm_head = nn.Linear(d, vocab_size, bias=False)

    def forward(
        self,
        h: torch.Tensor,
        latent: torch.Tensor,
        dec_ids: torch.Tensor,
        checkpointed: bool = False,
    ) -> torch.Tensor:
        b, p, _ = latent.shape
        d = h.shape[-1]
        slots = torch.cat([self.start.expand(b, 1, -1), latent], dim=1)
        kv = self.patch_proj(slots).view(b, (p + 1) * self.k, d)
        mask = decoder_cross_mask(dec_ids, p, self.k)
        for cross, block in zip(self.cross, self.blocks, strict=True):
            h = h + cross(h, kv, mask)
            h = _run_blocks([block], h, checkpointed)
        logits: torch.Tensor = self.lm_head(self.ln_f(h))
        return logits


# -- the model -------------------------------------------------------------------------------------


class BLT(nn.Module):
    """Local encoder -> global transformer over patches -> local decoder; GPT's contract.

    `forward(input_ids, targets=None, *, patch_starts=None)`: `patch_starts` is a bool mask,
    True where a patch starts, of shape (B, L) or, better, (B, L + 1) whose last column says
    whether the byte after the input starts a patch (the decoder's shift needs it at the last
    position; with (B, L) that byte is taken to continue the last patch). Position 0 always
    starts a patch. Without it `self.patcher(input_ids)` decides: the static patcher by
    default, an entropy patcher when `model.entropy_model` names one (`build_blt`).
    """

    def __init__(
        self,
        cfg: BLTConfig,
        vocab_size: int,
        global_block: Callable[[], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        padded = -(-vocab_size // cfg.pad_vocab_multiple) * cfg.pad_vocab_multiple
        self.encoder = LocalEncoder(cfg, padded)
        self.global_model = GlobalTransformer(cfg, global_block)
        self.decoder = LocalDecoder(cfg, padded)
        gpt2_init(self, cfg.encoder_layers + cfg.global_layers + cfg.decoder_layers)
        for module in self.modules():  # gates that must not start at zero (Titans' memory)
            reset = getattr(module, "reset_gates", None)
            if callable(reset):
                reset()
        nn.init.normal_(self.decoder.start, mean=0.0, std=0.02)
        # a plain callable, not a submodule: a frozen entropy model stays out of the
        # parameters, the optimizer and the checkpoint
        self.patcher: Patcher = StaticPatcher(cfg.fallback_patch_size)
        # set by training.activation_checkpointing: recompute block activations in backward
        self.activation_checkpointing = False

    @property
    def block_size(self) -> int:
        return self.cfg.block_size

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        patch_starts: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        t = input_ids.shape[1]
        if t > self.cfg.block_size:
            raise ValueError(f"sequence length {t} exceeds model.block_size {self.cfg.block_size}")
        starts = self._starts(input_ids, patch_starts)
        patch_ids = patch_ids_from_starts(starts[:, :t])
        num_patches = patch_ids[:, -1] + 1
        max_patches = int(num_patches.max())  # one host sync: the padded patch dimension
        ckpt = self.activation_checkpointing and self.training

        h = self.encoder.byte_states(input_ids, ckpt)
        patches = self.encoder.patch_states(h, patch_ids, num_patches, max_patches)
        latent = self.global_model(patches, ckpt)
        logits = self.decoder(h, latent, decoder_patch_ids(starts), ckpt)
        if logits.shape[-1] != self.vocab_size:
            logits = logits[..., : self.vocab_size]
        loss = None
        if targets is not None:
            flat = logits if torch.is_autocast_enabled() else logits.float()
            loss = F.cross_entropy(
                flat.reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=IGNORE_INDEX
            )
        # patches over the batch, for evaluation's mean patch size (bytes per patch)
        return {"logits": logits, "loss": loss, "num_patches": num_patches.sum()}

    def _starts(self, input_ids: torch.Tensor, patch_starts: torch.Tensor | None) -> torch.Tensor:
        """(B, L + 1) bool starts with position 0 set."""
        b, t = input_ids.shape
        if patch_starts is None:
            with torch.no_grad():
                patch_starts = self.patcher(input_ids)
        if patch_starts.shape not in {(b, t), (b, t + 1)}:
            raise ValueError(
                f"patch_starts has shape {tuple(patch_starts.shape)}; expected ({b}, {t}) or "
                f"({b}, {t + 1}) for input_ids of shape ({b}, {t})"
            )
        starts = patch_starts.to(device=input_ids.device, dtype=torch.bool)
        first = torch.ones(b, 1, dtype=torch.bool, device=input_ids.device)
        parts = [first, starts[:, 1:]]
        if starts.shape[1] == t:
            parts.append(torch.zeros_like(first))
        return torch.cat(parts, dim=1)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (GPT's convention). The
        hash n-gram tables count: they are most of a small BLT's parameters."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(
                p.numel()
                for name, p in self.named_parameters()
                if name.startswith(("encoder.pos.", "global_model.pos."))
            )
        return n

    def flops_breakdown(self, seq_len: int, mean_patch_size: float) -> dict[str, float]:
        """Training FLOPs per byte of each part: 6·(matmul params applied per byte) plus
        attention (PaLM appendix B, as GPT.flops_per_token). Work per patch counts 1/m per
        byte, per query slot k/m. Embedding lookups are free; the cross-attention scores
        count only the unmasked keys (the dense masks compute more, wastefully).

        `global` is comparable with a byte GPT's 6N + 12·L·d·T: 6·N_global/m plus the
        attention over T/m patches, per patch, over m.
        """
        cfg = self.cfg
        m = float(mean_patch_size)
        k = cfg.cross_attn_k
        d, d_g = cfg.local_dim, cfg.global_dim
        enc, glob, dec = self.encoder, self.global_model, self.decoder

        def n(*modules: nn.Module) -> float:
            return float(sum(p.numel() for mod in modules for p in mod.parameters()))

        crosses = [c for c in dec.cross if isinstance(c, CrossAttention)]
        per_slot = k / m
        encoder = (
            6 * n(enc.blocks, enc.cross.norm_kv, enc.cross.kv)
            + 6 * n(enc.patch_query) / m
            + 6 * n(enc.cross.norm_q, enc.cross.q, enc.cross.c_proj) * per_slot
            + 12 * cfg.encoder_layers * d * seq_len  # causal byte self-attention
            + 12 * d * m * per_slot  # each slot attends to its patch's ~m bytes
        )
        patches = seq_len / m
        global_ = (
            6 * n(glob.in_proj, glob.blocks, glob.ln_f) + 12 * cfg.global_layers * d_g * patches
        ) / m
        decoder = (
            6 * n(dec.blocks, dec.ln_f, dec.lm_head)
            + 6 * sum(n(c.norm_q, c.q, c.c_proj) for c in crosses)
            + 6 * n(dec.patch_proj) / m
            + 6 * sum(n(c.norm_kv, c.kv) for c in crosses) * per_slot
            + 12 * cfg.decoder_layers * d * seq_len  # causal byte self-attention
            + 12 * cfg.decoder_layers * d * k  # each byte attends to k slots
        )
        return {"encoder": encoder, "global": global_, "decoder": decoder}

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per byte of the whole model at the expected mean patch size."""
        return sum(self.flops_breakdown(seq_len, self.cfg.expected_patch_size).values())


def build_blt(cfg: BLTConfig, ctx: ModelContext) -> BLT:
    """A BLT with static patching, or entropy patching when `cfg.entropy_model` is set."""
    from neat.models.blt.entropy import entropy_patcher  # loads checkpoints: only when asked

    model = BLT(cfg, ctx.vocab_size)
    if cfg.entropy_model is not None:
        model.patcher = entropy_patcher(cfg)
    return model


register_component("model", BLTConfig, build_blt)
