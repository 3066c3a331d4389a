"""MVoT, Multimodal Visualization-of-Thought (Li et al. 2025, arXiv 2501.07542).

`discrepancy` holds the token discrepancy loss L_D, which penalises probability put on image
codes whose embeddings lie far from the gold code's in the frozen tokenizer's codebook.
"""

from neat.models.mvot.discrepancy import codebook_distances, token_discrepancy_loss

__all__ = ["codebook_distances", "token_discrepancy_loss"]
