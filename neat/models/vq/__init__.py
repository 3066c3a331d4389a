"""A small VQ-VAE image tokenizer (van den Oord et al. 2017, arXiv 1711.00937).

It turns rendered states into a grid of discrete codes (one per `patch` x `patch` cell) that a
language model can read and write next to text, as MVoT needs (`neat.models.mvot`); its frozen
codebook gives the distances of the token discrepancy loss. `config` holds `VQConfig`, `model`
the `VQVAE` and its `VectorQuantizer`, `train` the plain `train_vq` loop.
"""

from neat.models.vq.config import VQConfig
from neat.models.vq.model import VQVAE, VectorQuantizer, as_float_images
from neat.models.vq.train import train_vq

__all__ = ["VQVAE", "VQConfig", "VectorQuantizer", "as_float_images", "train_vq"]
