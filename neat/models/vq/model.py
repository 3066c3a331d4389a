"""The VQ-VAE (van den Oord et al. 2017, arXiv 1711.00937): conv encoder to a grid of
latents, nearest-code quantisation with a straight-through gradient, conv decoder.

The codebook is learnt by exponential moving averages of the encoder outputs assigned to each
code (the paper's appendix A.1) rather than by the codebook loss: EMA needs no learning rate of
its own, moves codes to the mean of their cluster in a few steps, and is what made small runs
converge reliably; the commitment loss (beta) still keeps the encoder near its codes. Codes
left unused are restarted on random encoder outputs, so that a small codebook is not wasted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neat.config import register_component
from neat.interfaces.contexts import ModelContext
from neat.models.vq.config import VQConfig

__all__ = ["VQVAE", "VectorQuantizer", "as_float_images"]


def as_float_images(images: Tensor) -> Tensor:
    """(B, 3, H, W) floats in [0, 1]: uint8 images (B, H, W, 3), as rendered, are converted;
    float images are taken to be (B, 3, H, W) in [0, 1] already."""
    if images.dtype == torch.uint8:
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (B, H, W, 3), got {tuple(images.shape)}")
        return images.permute(0, 3, 1, 2).float() / 255.0
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"float images must be (B, 3, H, W), got {tuple(images.shape)}")
    return images


class VectorQuantizer(nn.Module):
    """K codes of width D, kept as buffers: EMA updates them in training, not the optimizer."""

    codebook: Tensor
    cluster_size: Tensor
    embed_sum: Tensor
    initialized: Tensor

    def __init__(
        self, codebook_size: int, embed_dim: int, decay: float = 0.99, restart_below: float = 1.0
    ) -> None:
        super().__init__()
        self.decay = decay
        self.restart_below = restart_below
        codebook = torch.randn(codebook_size, embed_dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", codebook.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def nearest(self, latents: Tensor) -> Tensor:
        """The index of the closest code (squared Euclidean) for each row of latents (N, D)."""
        distances = (
            latents.pow(2).sum(dim=1, keepdim=True)
            - 2.0 * latents @ self.codebook.T
            + self.codebook.pow(2).sum(dim=1)[None, :]
        )
        return distances.argmin(dim=1)

    def forward(self, latents: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """latents (N, D) -> (quantised with straight-through grad, codes, commitment loss,
        perplexity of the code usage in this batch)."""
        if self.training and not self.initialized:
            self._initialize(latents.detach())
        codes = self.nearest(latents.detach())
        quantized = self.codebook[codes]  # a copy: the update below does not change it
        if self.training:
            self._update(latents.detach(), codes)
        commitment = F.mse_loss(latents, quantized)
        straight_through = latents + (quantized - latents).detach()
        usage = torch.bincount(codes, minlength=self.codebook.shape[0]).float() / codes.numel()
        perplexity = torch.exp(-(usage * torch.log(usage + 1e-10)).sum())
        return straight_through, codes, commitment, perplexity

    @torch.no_grad()
    def _initialize(self, latents: Tensor) -> None:
        """Codes start on encoder outputs of the first batch: random normal codes far from
        them would all lose to one code, and the codebook would collapse at once."""
        picks = latents[torch.randint(latents.shape[0], (self.codebook.shape[0],))]
        self.codebook.copy_(picks)
        self.embed_sum.copy_(picks)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, latents: Tensor, codes: Tensor) -> None:
        """Move each code to the EMA mean of its assigned latents; restart the dead ones."""
        size = self.codebook.shape[0]
        onehot = F.one_hot(codes, size).to(latents.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(dim=0), alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.T @ latents, alpha=1.0 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (total + size * 1e-5) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        dead = self.cluster_size < self.restart_below
        count = int(dead.sum())
        if count:
            picks = latents[torch.randint(latents.shape[0], (count,))]
            self.codebook[dead] = picks
            self.embed_sum[dead] = picks * self.restart_below
            self.cluster_size[dead] = self.restart_below


class VQVAE(nn.Module):
    """images (B, 3, H, W) -> codes (B, H/patch, W/patch) -> images; H, W multiples of patch.

    The strided convs have kernel = stride = patch and the rest are 1x1, so a latent sees
    exactly its own cell and a code decodes to exactly one cell: on a grid world rendered with
    `patch`-pixel cells a code is a tile, and codebook distances are distances between tiles
    (what the MVoT discrepancy loss assumes), never blends with the neighbours."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        self.config = config
        hidden, dim, patch = config.hidden, config.embed_dim, config.patch
        self.encoder = nn.Sequential(
            nn.Conv2d(3, hidden, patch, stride=patch),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, dim, 1),
        )
        self.quantizer = VectorQuantizer(
            config.codebook_size, dim, config.decay, config.restart_below
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, 3, patch, stride=patch),
        )

    def _latents(self, images: Tensor) -> Tensor:
        """Encoder outputs (B, h, w, D) of images in [0, 1] (centred to [-1, 1] first)."""
        images = as_float_images(images)
        height, width = images.shape[-2:]
        patch = self.config.patch
        if height % patch or width % patch:
            raise ValueError(f"image side {height}x{width} is not a multiple of patch {patch}")
        latents: Tensor = self.encoder(images * 2.0 - 1.0)
        return latents.permute(0, 2, 3, 1)

    def _decode_latents(self, latents: Tensor) -> Tensor:
        """(B, h, w, D) -> images (B, 3, h*patch, w*patch) in [0, 1]."""
        return torch.sigmoid(self.decoder(latents.permute(0, 3, 1, 2)))

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """The codes (B, h, w), long, in [0, K), of images (B, 3, H, W) or uint8 (B, H, W, 3)."""
        latents = self._latents(images)
        batch, height, width, dim = latents.shape
        return self.quantizer.nearest(latents.reshape(-1, dim)).reshape(batch, height, width)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Images (B, 3, h*patch, w*patch) in [0, 1] of codes (B, h, w)."""
        return self._decode_latents(self.quantizer.codebook[codes])

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """recon (B, 3, H, W), codes (B, h, w), loss = MSE(recon) + beta * commitment,
        perplexity of the batch's code usage (K when all codes are used evenly)."""
        images = as_float_images(images)
        latents = self._latents(images)
        batch, height, width, dim = latents.shape
        quantized, codes, commitment, perplexity = self.quantizer(latents.reshape(-1, dim))
        recon = self._decode_latents(quantized.reshape(batch, height, width, dim))
        loss = F.mse_loss(recon, images) + self.config.beta * commitment
        return {
            "recon": recon,
            "codes": codes.reshape(batch, height, width),
            "loss": loss,
            "perplexity": perplexity,
        }


def build_vq(cfg: VQConfig, ctx: ModelContext) -> VQVAE:
    del ctx  # an image model: the text vocabulary does not concern it
    return VQVAE(cfg)


register_component("model", VQConfig, build_vq)
