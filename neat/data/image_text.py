"""A vocabulary of UTF-8 bytes and image codes, for interleaved text-and-image sequences.

MVoT (Li et al. 2025, arXiv 2501.07542) has one model read and write text tokens and the
codes of a frozen image tokenizer, each image between begin- and end-of-image markers. Here
an image travels inside an ordinary document string: marker and code k are characters of
Unicode's Private Use Area (BOI U+F0000, EOI U+F0001, code k U+F0002+k), which this tokenizer
maps to their own ids and every other character to its UTF-8 bytes. The data pipeline (token
cache, sampler, loss masks) therefore handles interleaved documents unchanged, and decoding
gives back the very string, images included.

Ids: 0..255 bytes, 256 end-of-text, 257 begin-of-image, 258 end-of-image, 259.. the codes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from neat.config import ComponentConfig, register_component
from neat.errors import ConfigError, DataError
from neat.files import write_text_atomic
from neat.interfaces import IMixtureSource
from neat.interfaces.contexts import TokenizerContext

__all__ = [
    "ImageTextTokenizer",
    "ImageTextTokenizerConfig",
    "image_segment",
    "split_images",
]

EOT, BOI, EOI, FIRST_CODE = 256, 257, 258, 259
_BOI_CHAR, _EOI_CHAR = "\U000f0000", "\U000f0001"
_BOI_CHAR_POINT = ord(_BOI_CHAR)
_FIRST_CODE_CHAR = 0xF0002  # code k is chr(_FIRST_CODE_CHAR + k)
MAX_CODES = 0xFFFFD - _FIRST_CODE_CHAR + 1  # the plane's last assignable character


def image_segment(codes: Sequence[int]) -> str:
    """An image as document text: BOI, one character per code, EOI."""
    return _BOI_CHAR + "".join(chr(_FIRST_CODE_CHAR + int(c)) for c in codes) + _EOI_CHAR


def split_images(text: str) -> list[str | list[int]]:
    """A document back into its parts: strings of text and lists of image codes, in order.
    An image cut off before its EOI (a generation that stopped) comes back as far as it got."""
    parts: list[str | list[int]] = []
    rest = text
    while rest:
        before, boi, after = rest.partition(_BOI_CHAR)
        if before:
            parts.append(before)
        if not boi:
            break
        inside, _, rest = after.partition(_EOI_CHAR)
        parts.append([ord(ch) - _FIRST_CODE_CHAR for ch in inside if ord(ch) >= _FIRST_CODE_CHAR])
    return parts


class ImageTextTokenizer:
    """Implements ITokenizer over bytes plus `num_codes` image codes (see the module doc)."""

    def __init__(self, num_codes: int) -> None:
        if not 1 <= num_codes <= MAX_CODES:
            raise ValueError(f"num_codes={num_codes}: an image vocabulary needs 1..{MAX_CODES}")
        self.num_codes = num_codes

    @property
    def vocab_size(self) -> int:
        return FIRST_CODE + self.num_codes

    @property
    def eot_id(self) -> int | None:
        return EOT

    @property
    def code_ids(self) -> list[int]:
        """The vocabulary id of each image code, in code order."""
        return list(range(FIRST_CODE, FIRST_CODE + self.num_codes))

    def _char_id(self, ch: str) -> int | None:
        point = ord(ch)
        if point < _BOI_CHAR_POINT or point >= _FIRST_CODE_CHAR + MAX_CODES:
            return None
        if point >= _FIRST_CODE_CHAR + self.num_codes:  # bytes of it would be a silent loss
            raise DataError(
                f"image code {point - _FIRST_CODE_CHAR} is outside data.tokenizer.codes="
                f"{self.num_codes}: set codes to the image tokenizer's codebook size"
            )
        if ch == _BOI_CHAR:
            return BOI
        if ch == _EOI_CHAR:
            return EOI
        return FIRST_CODE + point - _FIRST_CODE_CHAR

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        start = 0  # bytes of the text run since the last special character
        for i, ch in enumerate(text):
            special = self._char_id(ch)
            if special is not None:
                ids += text[start:i].encode("utf-8")
                ids.append(special)
                start = i + 1
        ids += text[start:].encode("utf-8")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        out: list[str] = []
        run = bytearray()
        for i in (int(t) for t in ids):
            if 0 <= i < EOT:
                run.append(i)
                continue
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
            out.append(run.decode("utf-8", errors="replace"))
            run.clear()
            if i == BOI:
                out.append(_BOI_CHAR)
            elif i == EOI:
                out.append(_EOI_CHAR)
            elif i >= FIRST_CODE:
                out.append(chr(_FIRST_CODE_CHAR + i - FIRST_CODE))
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def token_bytes(self) -> list[int]:
        """Text bytes only: markers and codes carry no text, as end-of-text does not."""
        return [1] * 256 + [0] * (self.vocab_size - 256)

    def _spec(self) -> dict[str, object]:
        return {"neat_tokenizer": "image_text", "codes": self.num_codes}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self._spec(), sort_keys=True).encode()).hexdigest()

    def save(self, path: Path) -> None:
        write_text_atomic(Path(path), json.dumps(self._spec(), indent=2) + "\n")


class ImageTextTokenizerConfig(ComponentConfig):
    """UTF-8 bytes plus `codes` image codes and begin/end-of-image markers (MVoT)."""

    type: Literal["image_text"] = "image_text"
    codes: int = Field(ge=1, le=MAX_CODES, description="the image tokenizer's codebook size")


def build_image_text(cfg: ImageTextTokenizerConfig, ctx: TokenizerContext) -> ImageTextTokenizer:
    """Refuses a codebook size other than the one the sources write images in (a source
    says it with an `image_codes` attribute: the grid world's, with interleaved reasoning)."""
    source = ctx.source
    parts = [part for part, _ in source.parts] if isinstance(source, IMixtureSource) else [source]
    for part in parts:
        wanted = getattr(part, "image_codes", None)
        if wanted is not None and wanted != cfg.codes:
            raise ConfigError(
                f"data.tokenizer has codes: {cfg.codes}, and {part.describe()} writes images in "
                f"{wanted} codes: set data.tokenizer.codes: {wanted}"
            )
    return ImageTextTokenizer(cfg.codes)


register_component("tokenizer", ImageTextTokenizerConfig, build_image_text)
