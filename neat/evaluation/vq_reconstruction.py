"""How well an image tokenizer reconstructs held-out grid-world states
(`evaluation.type: vq_reconstruction`).

A reconstruction is right where each of its cells is nearest, in pixels, to the tile the
state has there (`render.decode_image`): the question MVoT's visualization accuracy asks of a
generated image, asked here of the tokenizer alone, so that a wrong image later is the
language model's fault and not the tokenizer's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from neat.config import register_component
from neat.data.grid_world.generate import GridProblem, problems
from neat.data.grid_world.render import decode_image, render_state, tile_codes
from neat.errors import ConfigError
from neat.evaluation.grid_problems import GridProblemsConfig
from neat.interfaces import IModel
from neat.interfaces.contexts import EvaluatorContext
from neat.models.vq import VQVAE

__all__ = [
    "VQReconstructionConfig",
    "VQReconstructionEvaluator",
    "comparison_sheet",
    "reconstruct",
    "state_images",
]

GAP = 4  # pixels between images on a comparison sheet
MISS = np.array([255, 0, 255], dtype=np.uint8)  # outline of a cell decoded as the wrong tile


class VQReconstructionConfig(GridProblemsConfig):
    """Every state of held-out problems (id, heldout, ood splits), encoded and decoded.

    Reports `cell_acc` and `cell_acc_<split>` (cells whose reconstruction is nearest to the
    right tile), `image_acc` (images right in every cell), `codes_used` (distinct codes the
    states took) and `val_loss` (pixel MSE on the id and heldout splits).
    """

    type: Literal["vq_reconstruction"] = "vq_reconstruction"


def state_images(drawn: Sequence[GridProblem]) -> list[tuple[str, np.ndarray, list[int]]]:
    """(split, uint8 image, tile codes) of every state of every problem."""
    return [
        (p.split, render_state(p.grid, agent), tile_codes(p.grid, agent))
        for p in drawn
        for agent in p.positions
    ]


@torch.no_grad()
def reconstruct(model: VQVAE, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, 3) of one size -> (their codes (N, h, w), uint8 reconstructions)."""
    device = next(model.parameters()).device
    codes = model.encode(torch.from_numpy(images).to(device))
    recon = (model.decode(codes) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return codes.cpu().numpy(), recon.cpu().numpy()


def _band(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Originals side by side, their reconstructions under them, white gaps around."""
    height = max(image.shape[0] for image, _ in pairs)
    width = sum(image.shape[1] for image, _ in pairs) + GAP * (len(pairs) + 1)
    band = np.full((2 * height + 3 * GAP, width, 3), 255, dtype=np.uint8)
    x = GAP
    for image, shown in pairs:
        h, w = image.shape[:2]
        band[GAP : GAP + h, x : x + w] = image
        band[2 * GAP + height : 2 * GAP + height + h, x : x + w] = shown
        x += w + GAP
    return band


def comparison_sheet(
    model: VQVAE,
    states: Sequence[tuple[str, np.ndarray, list[int]]],
    cell: int,
    per_row: int = 8,
) -> tuple[np.ndarray, int, int]:
    """One uint8 image: bands of `per_row` originals over their reconstructions, each wrong
    cell outlined in magenta; and (cells right, cells) over the states."""
    tiles: list[tuple[np.ndarray, np.ndarray]] = []
    right = total = 0
    for _, image, truth in states:
        _, recon = reconstruct(model, image[None])
        shown = recon[0].copy()
        side = image.shape[0] // cell
        for i, (code, want) in enumerate(zip(decode_image(shown), truth, strict=True)):
            total += 1
            right += code == want
            if code != want:
                r, c = divmod(i, side)
                box = shown[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell]
                box[[0, -1], :] = MISS
                box[:, [0, -1]] = MISS
        tiles.append((image, shown))
    bands = [_band(tiles[i : i + per_row]) for i in range(0, len(tiles), per_row)]
    width = max(band.shape[1] for band in bands)
    sheet = np.full((sum(band.shape[0] for band in bands), width, 3), 255, dtype=np.uint8)
    y = 0
    for band in bands:
        sheet[y : y + band.shape[0], : band.shape[1]] = band
        y += band.shape[0]
    return sheet, right, total


class VQReconstructionEvaluator:
    """Implements IEvaluator (see the config's docstring for the metrics)."""

    def __init__(self, drawn: Sequence[GridProblem], batch_size: int = 256) -> None:
        self.states = state_images(drawn)
        self.batch_size = batch_size

    @torch.no_grad()
    def evaluate(self, model: IModel) -> dict[str, float]:
        if not isinstance(model, VQVAE):
            raise ConfigError(
                "evaluation.type vq_reconstruction scores an image tokenizer, and the model is "
                f"a {type(model).__name__}: use model.type: vq, or another evaluation.type"
            )
        was_training = model.training
        model.train(False)
        try:
            return self._scores(model)
        finally:
            model.train(was_training)

    def _scores(self, model: VQVAE) -> dict[str, float]:
        by_side: dict[int, list[int]] = defaultdict(list)
        for i, (_, image, _) in enumerate(self.states):
            by_side[image.shape[0]].append(i)
        cells: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        images_right, used = 0, set[int]()
        squared, pixels = 0.0, 0
        for rows in by_side.values():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                originals = np.stack([self.states[i][1] for i in chunk])
                codes, recon = reconstruct(model, originals)
                used.update(int(c) for c in np.unique(codes))
                for i, image in zip(chunk, recon, strict=True):
                    split, original, truth = self.states[i]
                    right = int((np.asarray(decode_image(image)) == np.asarray(truth)).sum())
                    for name in ("cell_acc", f"cell_acc_{split}"):
                        cells[name][0] += right
                        cells[name][1] += len(truth)
                    images_right += right == len(truth)
                    if split != "ood":
                        squared += float(
                            F.mse_loss(
                                torch.from_numpy(image).float() / 255,
                                torch.from_numpy(original).float() / 255,
                                reduction="sum",
                            )
                        )
                        pixels += image.size
        metrics = {name: hits / total for name, (hits, total) in sorted(cells.items())}
        metrics["image_acc"] = images_right / len(self.states)
        metrics["codes_used"] = float(len(used))
        if pixels:
            metrics["val_loss"] = squared / pixels
        return metrics


def build_vq_reconstruction_evaluator(
    cfg: VQReconstructionConfig, ctx: EvaluatorContext
) -> VQReconstructionEvaluator:
    del ctx  # the states are rendered, not read from the token data
    if cfg.source is None:
        raise ConfigError(
            "evaluation.type vq_reconstruction needs grid-world problems: add a source of "
            "type grid_world to data.sources, or set evaluation.source"
        )
    return VQReconstructionEvaluator(problems(cfg.source, "test", cfg.num_problems))


register_component("evaluation", VQReconstructionConfig, build_vq_reconstruction_evaluator)
