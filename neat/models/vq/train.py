"""A plain training loop for the VQ-VAE: Adam on random minibatches of a tensor of images."""

from __future__ import annotations

import torch
from torch import Tensor

from neat.models.vq.model import VQVAE

__all__ = ["train_vq"]


def train_vq(
    model: VQVAE,
    images: Tensor,
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
) -> list[float]:
    """Train `model` on images (N, 3, H, W) in [0, 1] for `steps` steps; the loss of each step.

    `seed` fixes the minibatches and the dead-code restarts (global RNG state is restored
    afterwards); the model is left in eval mode, ready to tokenise with a frozen codebook."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    device = next(model.parameters()).device
    images = images.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(steps):
            batch = images[torch.randint(images.shape[0], (batch_size,), generator=generator)]
            loss = model(batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    return losses
