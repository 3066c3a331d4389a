"""Titans' three architectures (§4) on one decoder skeleton, and the builder of `titans`.

    mac  memory as context: each segment first retrieves from the memory with its queries,
         attends over [persistent | retrieved | segment], then writes its attention output
         into the memory and gates that output with a read of the updated memory (eqs. 21-25)
    mag  memory as gate: segment attention and the memory side by side, the attention output
         gated by the memory's (eqs. 26-28)
    mal  memory as layer: the memory first, segment attention over its output (eqs. 29-31)

Each block keeps the pre-norm residual layout of GPT and an MLP from the block tables. The
model takes sequences of any length; `state` carries each block's memory from one call to
the next, so a long sequence can be read segment by segment (streaming).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neat.config import register_component
from neat.interfaces.contexts import ModelContext
from neat.models.blocks import MLPS, NORMS, gpt2_init
from neat.models.gpt import IGNORE_INDEX
from neat.models.titans.attention import SegmentAttention
from neat.models.titans.config import TitansConfig
from neat.models.titans.memory import MemoryState, NeuralMemory

__all__ = ["Titans", "TitansBlock", "TitansState", "build_titans"]

TitansState = tuple[MemoryState, ...]


class TitansBlock(nn.Module):
    def __init__(self, cfg: TitansConfig) -> None:
        super().__init__()
        self.variant = cfg.variant
        self.segment = cfg.segment
        self.ln_1 = NORMS[cfg.norm](cfg.n_embd, cfg)
        self.attn = SegmentAttention(cfg)
        self.memory = NeuralMemory(cfg.n_embd, cfg.memory, cfg.norm_eps)
        self.ln_2 = NORMS[cfg.norm](cfg.n_embd, cfg)
        self.mlp = MLPS[cfg.mlp](cfg.n_embd, cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def mix(self, h: torch.Tensor, state: MemoryState | None) -> tuple[torch.Tensor, MemoryState]:
        if self.variant == "mal":
            remembered, state = self.memory(h, state)
            return self.attn(remembered), state
        if self.variant == "mag":
            attended = self.attn(h)
            remembered, state = self.memory(h, state)
            return attended * torch.sigmoid(remembered), state
        outs = []
        for start in range(0, h.shape[1], self.segment):  # mac: segment after segment
            seg = h[:, start : start + self.segment]
            attended = self.attn(seg, retrieved=self.memory.read(seg, state))
            remembered, state = self.memory(attended, state)
            outs.append(attended * torch.sigmoid(remembered))
        assert state is not None
        return torch.cat(outs, dim=1), state

    def forward(
        self, x: torch.Tensor, state: MemoryState | None = None
    ) -> tuple[torch.Tensor, MemoryState]:
        mixed, state = self.mix(self.ln_1(x), state)
        x = x + self.drop(mixed)
        out: torch.Tensor = x + self.mlp(self.ln_2(x))
        return out, state


class Titans(nn.Module):
    """Token embedding -> N Titans blocks -> final norm -> LM head (tied, as in GPT)."""

    def __init__(self, cfg: TitansConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        padded = -(-vocab_size // cfg.pad_vocab_multiple) * cfg.pad_vocab_multiple
        self.wte = nn.Embedding(padded, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TitansBlock(cfg) for _ in range(cfg.n_layer))
        self.ln_f = NORMS[cfg.norm](cfg.n_embd, cfg)
        self.lm_head = nn.Linear(cfg.n_embd, padded, bias=False)
        gpt2_init(self, cfg.n_layer)  # Linear and Embedding only: each M_0 keeps its init
        for memory in self.memories():
            memory.reset_gates()  # gpt2_init zeroed the gate biases
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight

    @property
    def block_size(self) -> int:
        return self.cfg.block_size

    def memories(self) -> list[NeuralMemory]:
        return [m for m in self.modules() if isinstance(m, NeuralMemory)]

    @property
    def segment(self) -> int:
        return self.cfg.segment

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        state: TitansState | None = None,
    ) -> dict[str, torch.Tensor | TitansState | None]:
        """Any length; `state` continues the memories of an earlier call whose length was a
        multiple of `segment` (as a training window always is)."""
        x = self.drop(self.wte(input_ids))
        states = []
        for i, block in enumerate(self.blocks):
            x, block_state = block(x, None if state is None else state[i])
            states.append(block_state)
        logits: torch.Tensor = self.lm_head(self.ln_f(x))
        if logits.shape[-1] != self.vocab_size:
            logits = logits[..., : self.vocab_size]
        loss = None
        if targets is not None:
            flat = logits if torch.is_autocast_enabled() else logits.float()
            loss = F.cross_entropy(
                flat.reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return {"logits": logits, "loss": loss, "state": tuple(states)}

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, by GPT's convention (an untied embedding is a lookup, not counted)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.lm_head.weight is not self.wte.weight:
            n -= self.wte.weight.numel()
        return n

    def memory_params(self) -> int:
        """Weights of one block's memory MLP (its M_0): what each token's inner step touches."""
        return sum(p.numel() for p in self.memories()[0].init_weights)

    def flops_per_token(self, seq_len: int) -> float:
        """6N, plus attention over a segment and the persistent tokens (12·L·D·keys, as
        PaLM counts it), plus the memory's inner loop: per token a read (2P), a forward and
        backward for its gradient (6P) and its share of the update (2P), all three times
        over in training (forward and backward of the outer loss): 30·P per block."""
        cfg = self.cfg
        keys = min(seq_len, cfg.segment) + cfg.persistent_tokens
        if cfg.variant == "mac":
            keys += min(seq_len, cfg.segment)  # the retrieved tokens
        attention = 12.0 * cfg.n_layer * cfg.n_embd * keys
        memory = 30.0 * cfg.n_layer * self.memory_params()
        return 6.0 * self.num_params() + attention + memory


def build_titans(cfg: TitansConfig, ctx: ModelContext) -> Titans:
    return Titans(cfg, ctx.vocab_size)


register_component("model", TitansConfig, build_titans)
