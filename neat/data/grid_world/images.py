"""Rendered grid-world states as training images, for the VQ image tokenizer (`model.type: vq`).

A batch is `batch_size` states of random training problems (the agent on a random cell), each
cropped at random to `side` x `side` cells around the agent: the tokenizer's code for a cell
sees that cell only, so a crop loses nothing, and equal sides let grids of several sizes share
one batch. The draw of batch k is a pure function of (seed, k), so the position is one integer
and resume is exact.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from neat.data.grid_world.generate import FLOOR, GOAL, HOLE, Pos, train_problem
from neat.data.grid_world.render import render_state, tile_codes
from neat.data.grid_world.spec import GridWorldSourceConfig
from neat.interfaces import Batch

__all__ = ["StateImageBatches"]

STANDABLE = (FLOOR, GOAL, HOLE)


def _agent_cell(grid: tuple[str, ...], rng: random.Random) -> Pos:
    """A cell for the agent, the tile under it drawn evenly from those in the grid it can
    stand on: along real trajectories the agent is on the goal or in a hole at most once,
    and a codebook learnt from those alone merges such rare tiles into common ones."""
    cells: dict[str, list[Pos]] = {}
    for r, row in enumerate(grid):
        for c, char in enumerate(row):
            if char in STANDABLE:
                cells.setdefault(char, []).append((r, c))
    return rng.choice(cells[rng.choice(sorted(cells))])


class StateImageBatches:
    """Implements IBatchSource: `input_ids` holds uint8 images (B, side*cell, side*cell, 3)
    and `targets` their tile codes (B, side, side), this rank's rows of each global batch."""

    def __init__(
        self,
        cfg: GridWorldSourceConfig,
        *,
        side: int,
        batch_size: int,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if side > cfg.size[0]:
            raise ValueError(f"crops of {side} cells do not fit {cfg.size[0]}-cell grids")
        self.cfg = cfg
        self.side = side
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.batches = 0

    def _crop(self, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
        problem = train_problem(self.cfg, rng.randrange(self.cfg.num_train))
        agent = _agent_cell(problem.grid, rng)
        image = render_state(problem.grid, agent)
        codes = np.asarray(tile_codes(problem.grid, agent)).reshape(problem.side, problem.side)
        # the crop holds the agent: it is what changes from state to state
        row = rng.randrange(
            max(0, agent[0] - self.side + 1), min(agent[0], problem.side - self.side) + 1
        )
        col = rng.randrange(
            max(0, agent[1] - self.side + 1), min(agent[1], problem.side - self.side) + 1
        )
        cell = image.shape[0] // problem.side
        pixels = image[row * cell : (row + self.side) * cell, col * cell : (col + self.side) * cell]
        return pixels, codes[row : row + self.side, col : col + self.side]

    def next_batch(self) -> Batch:
        rng = random.Random(f"state_images/{self.seed}/{self.batches}")
        self.batches += 1
        crops = [self._crop(rng) for _ in range(self.batch_size)]
        share = self.batch_size // self.world_size
        mine = crops[self.rank * share : (self.rank + 1) * share]
        images = torch.from_numpy(np.stack([pixels for pixels, _ in mine]))
        codes = torch.from_numpy(np.stack([tiles for _, tiles in mine]))
        return Batch(images.to(self.device), codes.to(self.device))

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = int(state["batches"])
