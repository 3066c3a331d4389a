"""Config sections of the subword tokenizers (registered under `data.tokenizer.type`)."""

from __future__ import annotations
