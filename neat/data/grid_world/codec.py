"""How a state becomes image codes and back: the exact tile codes, or a trained VQ tokenizer.

MVoT (Li et al. 2025, arXiv 2501.07542) writes each visual thought as the codes of a frozen
image tokenizer. A grid-world source takes `image_tokenizer: RUN` (a run of
examples/vq_grid.yaml) to write the VQ-VAE's codes of each rendered state; without it, the
code of a cell is its tile type (render.py), exact by construction. Either way the same object
reads generated codes back as tiles (for visualization accuracy) and gives the code embeddings
whose distances the token discrepancy loss charges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch

from neat.data.grid_world.generate import Pos
from neat.data.grid_world.render import (
    CELL,
    NUM_CODES,
    Image,
    codebook,
    decode_image,
    decode_tiles,
    render_state,
    tile_codes,
    tiles_image,
)
from neat.errors import ConfigError

if TYPE_CHECKING:
    from neat.models.vq import VQVAE

__all__ = ["StateCodec", "TileCodec", "VQCodec", "codec_for", "decode_state"]

Space = Literal["embeddings", "pixels"]


class StateCodec(Protocol):
    """Codes of a state's image, and back; the vectors the codes stand for."""

    @property
    def num_codes(self) -> int: ...

    def encode(self, grid: tuple[str, ...], agent: Pos) -> list[int]: ...

    def tiles(self, codes: Sequence[int], side: int) -> list[int]:
        """The tile (render.TILE_NAMES index) each cell of `codes` shows; ValueError when
        `codes` cannot fill a `side` x `side` image."""
        ...

    def image(self, codes: Sequence[int], side: int) -> Image: ...

    def vectors(self, space: Space) -> torch.Tensor:
        """(num_codes, D) floats: the tokenizer's code embeddings, or each code's decoded
        pixels in [0, 1]."""
        ...

    def fingerprint(self) -> str: ...


def decode_state(codec: StateCodec, codes: Sequence[int], side: int) -> tuple[tuple[str, ...], Pos]:
    """The (grid, agent) state codes show; ValueError when they show none (wrong size, no
    agent or two agents)."""
    return decode_tiles(codec.tiles(codes, side), side)


def _check_size(codes: Sequence[int], side: int) -> None:
    if len(codes) != side * side:
        raise ValueError(f"{len(codes)} codes do not fill a {side}x{side} grid")


class TileCodec:
    """The exact tokenizer: one code per cell, its tile type; the embedding is the tile's
    pixels (research notes §5.2: a constructed codebook whose distances are visual ones)."""

    num_codes = NUM_CODES

    def encode(self, grid: tuple[str, ...], agent: Pos) -> list[int]:
        return tile_codes(grid, agent)

    def tiles(self, codes: Sequence[int], side: int) -> list[int]:
        _check_size(codes, side)
        if any(not 0 <= code < NUM_CODES for code in codes):
            raise ValueError(f"codes must lie in [0, {NUM_CODES}), got {sorted(set(codes))}")
        return list(codes)

    def image(self, codes: Sequence[int], side: int) -> Image:
        return tiles_image(codes, side)

    def vectors(self, space: Space) -> torch.Tensor:
        del space  # a tile's embedding is its pixels
        return torch.from_numpy(codebook()).reshape(NUM_CODES, -1).float() / 255.0

    def fingerprint(self) -> str:
        return "tiles"


class VQCodec:
    """A trained VQ-VAE, frozen: codes are what it encodes a rendered state to, and a cell
    shows the tile nearest in pixels to what it decodes the cell's code to."""

    def __init__(self, model: VQVAE, fingerprint: str) -> None:
        self.model = model.eval().requires_grad_(False)
        self._fingerprint = fingerprint
        self._encoded: dict[tuple[tuple[str, ...], Pos], list[int]] = {}

    @property
    def num_codes(self) -> int:
        return self.model.config.codebook_size

    def encode(self, grid: tuple[str, ...], agent: Pos) -> list[int]:
        key = (grid, agent)
        if key not in self._encoded:
            image = torch.from_numpy(render_state(grid, agent))[None]
            self._encoded[key] = self.model.encode(image).flatten().tolist()
        return self._encoded[key]

    def image(self, codes: Sequence[int], side: int) -> Image:
        _check_size(codes, side)
        if any(not 0 <= code < self.num_codes for code in codes):
            raise ValueError(f"codes must lie in [0, {self.num_codes}), got {sorted(set(codes))}")
        grid = torch.tensor(codes, dtype=torch.long).reshape(1, side, side)
        pixels = (self.model.decode(grid)[0] * 255).round().to(torch.uint8)
        image: Image = pixels.permute(1, 2, 0).numpy()
        return image

    def tiles(self, codes: Sequence[int], side: int) -> list[int]:
        return decode_image(self.image(codes, side))

    def vectors(self, space: Space) -> torch.Tensor:
        if space == "embeddings":
            return self.model.quantizer.codebook.detach().float().cpu().clone()
        codes = torch.arange(self.num_codes).reshape(1, 1, -1)
        with torch.no_grad():
            pixels = self.model.decode(codes)[0]  # (3, patch, K * patch): one cell per code
        patch = self.model.config.patch
        cells = pixels.reshape(3, patch, self.num_codes, patch).permute(2, 1, 3, 0)
        return cells.reshape(self.num_codes, -1).float()

    def fingerprint(self) -> str:
        return self._fingerprint


@lru_cache(maxsize=4)
def _load_vq(path: str, stamp: float) -> VQCodec:
    """The VQ run at `path` (cached per file time, so a retrained run is read again)."""
    del stamp
    from neat.models.load import load_trained_model
    from neat.models.vq import VQVAE

    model, _, config = load_trained_model(Path(path))
    if not isinstance(model, VQVAE):
        raise ConfigError(
            f"image_tokenizer: {path} holds a {config.model.type} model, not an image "
            "tokenizer: pass a run of model.type: vq (neat train -c examples/vq_grid.yaml)"
        )
    if model.config.patch != CELL:
        raise ConfigError(
            f"image_tokenizer: {path} has patch {model.config.patch}, and grid worlds render "
            f"{CELL}-pixel cells: train it with model.patch: {CELL}"
        )
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensor.cpu().numpy()).tobytes())
    return VQCodec(model, f"vq:{digest.hexdigest()[:16]}")


def codec_for(image_tokenizer: str | None) -> StateCodec:
    """The codec a source's `image_tokenizer` names: the tile codes when it is None."""
    if image_tokenizer is None:
        return TileCodec()
    from neat.persistence import resolve_checkpoint

    checkpoint = resolve_checkpoint(Path(image_tokenizer))
    return _load_vq(str(checkpoint), checkpoint.stat().st_mtime)
