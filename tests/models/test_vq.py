"""The VQ-VAE image tokenizer (van den Oord et al. 2017, arXiv 1711.00937) on synthetic tile
images: five solid colours (floor, wall, hole, goal, agent) in 8 px cells, as a grid world
renders its states."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from neat.data.grid_world import render
from neat.models.mvot import codebook_distances
from neat.models.vq import VQVAE, VQConfig, as_float_images, train_vq

CELL = 8
STEPS = 200  # 99% is reached after ~75-100 steps over 5 model seeds; 200 leaves a margin
RENDER_STEPS = 400  # the renderer's 7 tiles: 100% after 100-175 steps over 6 model seeds
# floor, wall, hole, goal, agent
PALETTE = torch.tensor(
    [
        [0.85, 0.85, 0.80],
        [0.25, 0.22, 0.20],
        [0.10, 0.30, 0.80],
        [0.10, 0.75, 0.20],
        [0.90, 0.20, 0.10],
    ]
)


def tile_images(count: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (count, 3, side*8, side*8) in [0, 1] and their cell kinds (count, side, side)."""
    kinds = torch.randint(
        len(PALETTE), (count, side, side), generator=torch.Generator().manual_seed(seed)
    )
    cells = PALETTE[kinds].permute(0, 3, 1, 2)
    return cells.repeat_interleave(CELL, dim=2).repeat_interleave(CELL, dim=3), kinds


def cell_accuracy(model: VQVAE, images: torch.Tensor, kinds: torch.Tensor) -> float:
    """The fraction of cells whose decoded mean colour is nearest to the right palette colour."""
    recon = model.decode(model.encode(images))
    count, _, height, width = recon.shape
    cells = recon.reshape(count, 3, height // CELL, CELL, width // CELL, CELL).mean(dim=(3, 5))
    distance = ((cells.permute(0, 2, 3, 1)[..., None, :] - PALETTE) ** 2).sum(dim=-1)
    return (distance.argmin(dim=-1) == kinds).float().mean().item()


def small_model(seed: int = 0, **overrides: int) -> VQVAE:
    torch.manual_seed(seed)
    settings = {"codebook_size": 16, "embed_dim": 8, "patch": CELL, "hidden": 32} | overrides
    return VQVAE(VQConfig(**settings))


def train_single_threaded(model: VQVAE, images: torch.Tensor, steps: int) -> float:
    """Seconds `train_vq` took on one thread: matrices this small gain nothing from threads,
    and lose much on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        losses = train_vq(model, images, steps=steps, batch_size=16, lr=2e-3, seed=0)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    assert len(losses) == steps and losses[-1] < losses[0]
    return seconds


def test_encode_decode_shapes_and_code_range() -> None:
    model = small_model().eval()
    images, _ = tile_images(3, 5, seed=0)
    codes = model.encode(images)
    assert codes.shape == (3, 5, 5) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    decoded = model.decode(codes)
    assert decoded.shape == images.shape
    assert float(decoded.min()) >= 0.0 and float(decoded.max()) <= 1.0
    out = model(images)
    assert out["recon"].shape == images.shape
    assert torch.equal(out["codes"], codes)
    assert out["loss"].dim() == 0 and 1.0 <= out["perplexity"].item() <= 16.0


def test_uint8_channels_last_images_are_accepted() -> None:
    model = small_model().eval()
    images, _ = tile_images(2, 4, seed=1)
    rendered = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.allclose(as_float_images(rendered), images, atol=1 / 255)
    assert model.encode(rendered).shape == (2, 4, 4)


def test_sides_that_are_not_a_multiple_of_the_patch_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of patch"):
        small_model().encode(torch.rand(1, 3, 20, 24))


def test_straight_through_gradients_reach_the_encoder() -> None:
    model = small_model().train()
    images, _ = tile_images(4, 4, seed=2)
    model(images)["loss"].backward()
    for name, parameter in model.encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    # The codebook is learnt by EMA, not by the optimizer.
    assert not any(name.startswith("quantizer") for name, _ in model.named_parameters())


def test_ema_moves_used_codes_and_eval_freezes_the_codebook() -> None:
    model = small_model().train()
    images, _ = tile_images(8, 4, seed=3)
    model(images)
    trained = model.quantizer.codebook.clone()
    model(images)
    assert not torch.equal(model.quantizer.codebook, trained)
    model.eval()
    frozen = model.quantizer.codebook.clone()
    model(images)
    assert torch.equal(model.quantizer.codebook, frozen)


def test_reconstructs_held_out_grid_states_cell_by_cell() -> None:
    """Acceptance (issue #14): >= 99% of cells decoded correctly on held-out images, of grid
    sides 4-6 while training saw only side 5 (the model is fully convolutional)."""
    model = small_model(seed=0, hidden=64)
    train_images, _ = tile_images(512, 5, seed=10)
    seconds = train_single_threaded(model, train_images, STEPS)
    for side, seed in ((4, 20), (5, 21), (6, 22)):
        images, kinds = tile_images(64, side, seed)
        accuracy = cell_accuracy(model, images, kinds)
        print(f"side {side}: {accuracy:.4f} of cells after {STEPS} steps, {seconds:.1f} s")
        assert accuracy >= 0.99, (side, accuracy)
    # The codebook the tokenizer encodes with is the one whose distances MVoT's loss uses:
    # tiles of different kinds get codes that are apart.
    codes = model.encode(tile_images(64, 5, seed=23)[0])
    used = codes.unique()
    distances = codebook_distances(model.quantizer.codebook)[used][:, used]
    assert len(used) >= len(PALETTE)
    assert (distances + torch.eye(len(used))).min() > 0


def test_training_is_reproducible_from_the_seed() -> None:
    images, _ = tile_images(64, 4, seed=30)
    first = train_vq(small_model(seed=1), images, steps=5, batch_size=8, seed=3)
    second = train_vq(small_model(seed=1), images, steps=5, batch_size=8, seed=3)
    assert first == second


def test_reconstructs_the_grid_world_renderer_tiles() -> None:
    """The tiles `neat.data.grid_world` renders (the agent is an inset square over floor, goal
    or hole, so three tiles differ only in their border): every cell of held-out images is
    matched back to its tile code by the renderer's own `decode_image`."""
    rng = np.random.default_rng(0)

    def rendered(count: int, side: int) -> tuple[torch.Tensor, NDArray[np.int64]]:
        codes = rng.integers(0, render.NUM_CODES, (count, side * side))
        images = np.stack([render.tiles_image(row, side) for row in codes])
        return torch.from_numpy(images), codes

    model = small_model(seed=0, hidden=64, codebook_size=64)
    train_images, _ = rendered(512, 5)
    seconds = train_single_threaded(model, as_float_images(train_images), RENDER_STEPS)
    images, codes = rendered(64, 6)
    recon = (model.decode(model.encode(images)) * 255).round().to(torch.uint8)
    decoded = np.array([render.decode_image(image) for image in recon.permute(0, 2, 3, 1).numpy()])
    accuracy = float((decoded == codes).mean())
    print(f"rendered tiles: {accuracy:.4f} of cells after {RENDER_STEPS} steps, {seconds:.1f} s")
    assert accuracy >= 0.99


def test_a_saved_tokenizer_loads_with_the_same_codebook_and_codes() -> None:
    """The codebook and its EMA state are buffers, so a checkpoint carries the tokenizer."""
    images, _ = tile_images(64, 4, seed=40)
    trained = small_model(seed=2)
    train_vq(trained, images, steps=5, batch_size=8, seed=0)
    loaded = small_model(seed=3)
    loaded.load_state_dict(trained.state_dict())
    loaded.eval()
    assert torch.equal(loaded.quantizer.codebook, trained.quantizer.codebook)
    assert bool(loaded.quantizer.initialized)
    assert torch.equal(loaded.encode(images), trained.encode(images))
