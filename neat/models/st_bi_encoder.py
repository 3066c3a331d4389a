"""A local sentence-transformers model as a neat bi-encoder (`model.type: bi_encoder`,
`sentence_transformer: DIR`), fine-tuned with the same in-batch + hard-negative InfoNCE as
neat's own.

The batches come padded with neat's pad id (the vocabulary size) and without the model's
special tokens (neat's `hf` tokenizer encodes plain text); `encode` adds the model's [CLS]
and [SEP] (or <s> and </s>), swaps padding for its pad token and masks it, so a text embeds
exactly as `SentenceTransformer.encode` embeds it. The checkpoint holds the fine-tuned
weights; the folder gives the architecture, so it must stay where `sentence_transformer`
names it.
`save_pretrained` writes the result as a sentence-transformers folder of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from neat.errors import ConfigError
from neat.models.contrastive import contrastive_forward

if TYPE_CHECKING:
    from neat.models.bi_encoder import BiEncoderConfig

__all__ = ["SentenceTransformerBiEncoder", "load_sentence_transformer"]


def load_sentence_transformer(path: Path, key: str = "model.sentence_transformer") -> Any:
    """The model in `path`, offline; one ConfigError naming `key` for a missing or broken one."""
    if not (path / "modules.json").is_file():
        raise ConfigError(
            f"{key}: {path} is not a sentence-transformers folder (no modules.json): name a "
            "folder saved with SentenceTransformer.save()"
        )
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(
            f"{key} needs sentence-transformers: python -m pip install sentence-transformers"
        ) from exc
    try:
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except Exception as exc:  # a damaged folder raises anything from json to safetensors
        raise ConfigError(f"{key}: cannot load the model in {path}: {exc}") from exc


class SentenceTransformerBiEncoder(nn.Module):
    """`forward(queries, passages)` as `BiEncoder.forward`; `st` is the wrapped model."""

    def __init__(self, cfg: BiEncoderConfig, vocab_size: int) -> None:
        super().__init__()
        if cfg.sentence_transformer is None:
            raise ValueError("model.sentence_transformer names no sentence-transformers folder")
        self.config = cfg
        self.pad_id = vocab_size
        self.temperature = cfg.temperature
        self.st = load_sentence_transformer(Path(cfg.sentence_transformer))
        tokenizer = self.st.tokenizer
        self.begin = _first_id(tokenizer, "cls_token_id", "bos_token_id")
        self.end = _first_id(tokenizer, "sep_token_id", "eos_token_id")
        self.model_pad = _first_id(tokenizer, "pad_token_id") or 0
        specials = (self.begin is not None) + (self.end is not None)
        # the saved folder then cuts texts where training did
        self.st.max_seq_length = min(cfg.block_size, int(self.st.max_seq_length))
        self.max_text_tokens = self.st.max_seq_length - specials
        # sentence-transformers 6 renamed the accessor (and warns on the old name)
        width = getattr(self.st, "get_embedding_dimension", None)
        self.embedding_dim = int((width or self.st.get_sentence_embedding_dimension)())
        self.token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, T) ids padded with `pad_id` -> (N, D) unit vectors."""
        ids = ids[:, : self.max_text_tokens]
        real = ids != self.pad_id
        lengths = real.sum(1)
        rows = torch.arange(ids.shape[0], device=ids.device)
        parts = [ids.masked_fill(~real, self.model_pad)]
        mask_parts = [real]
        if self.begin is not None:
            parts.insert(0, torch.full_like(ids[:, :1], self.begin))
            mask_parts.insert(0, torch.ones_like(real[:, :1]))
        if self.end is not None:
            parts.append(torch.full_like(ids[:, :1], self.model_pad))
            mask_parts.append(torch.zeros_like(real[:, :1]))
        input_ids = torch.cat(parts, 1)
        mask = torch.cat(mask_parts, 1)
        if self.end is not None:  # right after each row's last real token
            at = lengths + (self.begin is not None)
            input_ids[rows, at] = self.end
            mask[rows, at] = True
        features = {"input_ids": input_ids, "attention_mask": mask.long()}
        if self.token_types:
            features["token_type_ids"] = torch.zeros_like(input_ids)
        return F.normalize(self.st(features)["sentence_embedding"], dim=-1)

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, Any]:
        return contrastive_forward(self.encode, input_ids, targets, self.pad_id, self.temperature)

    def save_pretrained(self, path: Path) -> None:
        """The fine-tuned model as a sentence-transformers folder (any ST tool loads it)."""
        self.st.save(str(path))


def _first_id(tokenizer: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return None
