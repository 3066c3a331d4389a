"""Images of grid-world states, and the constructed tile codebook (research notes §5.2).

MVoT (Li et al. 2025, arXiv 2501.07542) interleaves an image of each intermediate state with
the verbal steps and tokenizes images with a VQ codebook. Here an image is a grid of tiles and
the code of a cell is its tile type, so tokenization is exact and invertible: `tile_codes` and
`decode_tiles` go between a state and its codes, `codebook` gives each code's rendered pixels
(the embedding whose distances a token discrepancy loss should use), and `render_state` paints
a state from the same tiles, so the image and the codes always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from neat.data.grid_world.generate import FLOOR, GOAL, HOLE, WALL, GridProblem, Pos

__all__ = [
    "CELL",
    "COLORS",
    "NUM_CODES",
    "TILE_NAMES",
    "codebook",
    "decode_image",
    "decode_tiles",
    "render_problem",
    "render_state",
    "save_png",
    "tile_codes",
    "tiles_image",
]

CELL = 8  # pixels per cell side
# code -> tile; the agent gets one code per tile it can stand on, so decoding is exact
TILE_NAMES: tuple[str, ...] = (
    "floor",
    "wall",
    "hole",
    "goal",
    "agent",  # on the floor
    "agent_on_goal",
    "agent_in_hole",
)
NUM_CODES = len(TILE_NAMES)
_TILE_OF_CHAR: dict[str, int] = {FLOOR: 0, WALL: 1, HOLE: 2, GOAL: 3}
_CHAR_OF_TILE: dict[int, str] = {code: char for char, code in _TILE_OF_CHAR.items()}
_AGENT_ON: dict[int, int] = {0: 4, 3: 5, 2: 6}  # tile under the agent -> code
_UNDER_AGENT: dict[int, int] = {code: tile for tile, code in _AGENT_ON.items()}
COLORS: dict[str, tuple[int, int, int]] = {
    "floor": (235, 235, 225),
    "wall": (50, 50, 60),
    "hole": (40, 90, 200),
    "goal": (40, 170, 70),
    "agent": (220, 40, 40),
}

Image = NDArray[np.uint8]


def tile_codes(grid: Sequence[str], agent: Pos) -> list[int]:
    """One code per cell, row by row: the tile type, or the agent's code on its cell."""
    codes = [_TILE_OF_CHAR[char] for row in grid for char in row]
    i = agent[0] * len(grid[0]) + agent[1]
    if codes[i] not in _AGENT_ON:
        raise ValueError(f"the agent cannot stand on a {TILE_NAMES[codes[i]]} at {agent}")
    codes[i] = _AGENT_ON[codes[i]]
    return codes


def decode_tiles(codes: Sequence[int], side: int) -> tuple[tuple[str, ...], Pos]:
    """The inverse of `tile_codes` for a `side` x `side` grid: (grid rows, agent cell)."""
    if len(codes) != side * side:
        raise ValueError(f"{len(codes)} codes do not fill a {side}x{side} grid")
    agents = [i for i, code in enumerate(codes) if code in _UNDER_AGENT]
    if len(agents) != 1:
        raise ValueError(f"expected exactly one agent code, found {len(agents)}")
    tiles = [_UNDER_AGENT.get(code, code) for code in codes]
    if any(tile not in _CHAR_OF_TILE for tile in tiles):
        raise ValueError(f"codes must lie in [0, {NUM_CODES}), got {sorted(set(codes))}")
    chars = "".join(_CHAR_OF_TILE[tile] for tile in tiles)
    grid = tuple(chars[r * side : (r + 1) * side] for r in range(side))
    return grid, divmod(agents[0], side)


def codebook(cell: int = CELL) -> Image:
    """(NUM_CODES, cell, cell, 3): the pixels of each code's tile; the agent is a square
    inset by a quarter cell over the tile it stands on."""
    tiles = np.empty((NUM_CODES, cell, cell, 3), dtype=np.uint8)
    for code, name in enumerate(TILE_NAMES[:4]):
        tiles[code] = COLORS[name]
    inset = cell // 4
    for under, code in _AGENT_ON.items():
        tiles[code] = tiles[under]
        tiles[code, inset : cell - inset, inset : cell - inset] = COLORS["agent"]
    return tiles


def tiles_image(codes: Sequence[int], side: int, cell: int = CELL) -> Image:
    """(side*cell, side*cell, 3) uint8: the tiles of `codes` laid out row by row."""
    tiles = codebook(cell)[np.asarray(codes, dtype=np.int64).reshape(side, side)]
    return tiles.transpose(0, 2, 1, 3, 4).reshape(side * cell, side * cell, 3)


def render_state(grid: Sequence[str], agent: Pos, cell: int = CELL) -> Image:
    """(H*cell, W*cell, 3) uint8: the grid with the agent drawn over its tile."""
    return tiles_image(tile_codes(grid, agent), len(grid), cell)


def decode_image(image: Image, cell: int = CELL) -> list[int]:
    """The codes of an image `render_state` painted (each cell matched to its tile exactly)."""
    side = image.shape[0] // cell
    book = codebook(cell).reshape(NUM_CODES, -1).astype(np.int64)
    cells = image.reshape(side, cell, side, cell, 3).transpose(0, 2, 1, 3, 4)
    flat = cells.reshape(side * side, -1).astype(np.int64)
    nearest = ((flat[:, None, :] - book[None]) ** 2).sum(-1).argmin(1)
    return [int(code) for code in nearest]


def render_problem(problem: GridProblem, cell: int = CELL) -> list[Image]:
    """The image of every state: the start, then after each executed move."""
    return [render_state(problem.grid, pos, cell) for pos in problem.positions]


def save_png(image: Image, path: str | Path) -> None:
    """Write `image` as a PNG (Pillow)."""
    from PIL import Image as PILImage

    PILImage.fromarray(image, mode="RGB").save(path)
