"""The token discrepancy loss of MVoT (Li et al. 2025, arXiv 2501.07542, §3.3, eq. 4).

Cross-entropy treats every wrong image code as equally wrong. L_D adds the expected distance,
in the frozen image tokenizer's embedding space, between the gold code and the code the model
would sample: `L_D = sum_i sum_k S[gold_i, k] P_i(k)` over image positions i, with S the
pairwise distances of the codebook and P_i the softmax restricted to the image-code logits.
The model's loss is then `CE + discrepancy_weight * L_D`.

S only means something if the codebook is the one that encoded the images (a trained VQ
tokenizer, or tiles rendered as pixels); a random matrix would reward arbitrary confusions.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["codebook_distances", "token_discrepancy_loss"]

IGNORE_INDEX = -100


@torch.no_grad()
def codebook_distances(codebook: Tensor, metric: Literal["mse", "euclidean"] = "mse") -> Tensor:
    """S (K, K): the distance between every pair of the K code embeddings of `codebook` (K, D).

    "mse" is the paper's S_ij = mean_d (e_i - e_j)^2; the reference code
    (`wrapped_visualizer.py`) uses the Euclidean distance ||e_i - e_j|| under that name, offered
    as "euclidean". Computed in float64 and symmetrised, with an exact zero diagonal, so that
    L_D is exactly 0 on the gold code; no grad: the codebook is frozen, S is a constant.
    """
    if codebook.dim() != 2:
        raise ValueError(f"codebook must be (K, D), got shape {tuple(codebook.shape)}")
    embeddings = codebook.detach().to(torch.float64)
    norms = embeddings.pow(2).sum(dim=1)
    squared = (norms[:, None] + norms[None, :] - 2.0 * embeddings @ embeddings.T).clamp_min(0.0)
    squared = (squared + squared.T) / 2.0
    squared.fill_diagonal_(0.0)
    if metric == "mse":
        distances = squared / embeddings.shape[1]
    elif metric == "euclidean":
        distances = squared.sqrt()
    else:
        raise ValueError(f"metric must be 'mse' or 'euclidean', got {metric!r}")
    return distances.to(codebook.dtype if codebook.is_floating_point() else torch.float32)


def token_discrepancy_loss(
    logits: Tensor, targets: Tensor, image_code_ids: Tensor, distances: Tensor
) -> Tensor:
    """L_D: the mean, over positions whose target is an image code, of sum_k S[gold, k] P(k).

    logits (B, T, V) and targets (B, T) are aligned as for cross-entropy (targets already
    shifted); `image_code_ids` (K,) is the vocabulary id of code k; `distances` (K, K) is S from
    `codebook_distances`. P is the softmax over the K image-code columns only, so text logits and
    text positions get exactly zero gradient; targets of -100 are ignored. Without any image
    position the result is a zero that still backpropagates. No branch on the data, so no host
    sync: positions are weighted by a mask instead of selected.
    """
    codes = image_code_ids.numel()
    if distances.shape != (codes, codes):
        raise ValueError(
            f"distances must be ({codes}, {codes}) for {codes} image codes, "
            f"got {tuple(distances.shape)}"
        )
    vocab = logits.shape[-1]
    code_of_id = torch.full((vocab,), -1, dtype=torch.long, device=logits.device)
    code_of_id[image_code_ids.to(logits.device)] = torch.arange(codes, device=logits.device)
    flat_targets = targets.reshape(-1).to(logits.device)
    in_vocab = (flat_targets >= 0) & (flat_targets < vocab)
    gold = torch.where(in_vocab, code_of_id[flat_targets.clamp(0, vocab - 1)], -1)
    is_image = gold >= 0

    image_logits = logits.reshape(-1, vocab)[:, image_code_ids.to(logits.device)].float()
    probabilities = torch.softmax(image_logits, dim=-1)
    rows = distances.to(device=logits.device, dtype=probabilities.dtype)[gold.clamp_min(0)]
    expected = (rows * probabilities).sum(dim=-1)
    weight = is_image.to(expected.dtype)
    return (expected * weight).sum() / weight.sum().clamp_min(1.0)
