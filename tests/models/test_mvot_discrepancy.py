"""The MVoT token discrepancy loss (Li et al. 2025, arXiv 2501.07542): the properties of
components.md §5.3 on real tensors."""

from __future__ import annotations

import pytest
import torch

from neat.models.mvot import codebook_distances, token_discrepancy_loss

K, D, VOCAB = 6, 4, 20
IMAGE_IDS = torch.arange(10, 10 + K)  # codes live at vocabulary ids 10..15; 0..9 and 16.. text


@pytest.fixture
def codebook() -> torch.Tensor:
    return torch.randn(K, D, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def distances(codebook: torch.Tensor) -> torch.Tensor:
    return codebook_distances(codebook)


def logits_on(code: int, second: int | None = None, big: float = 1e4) -> torch.Tensor:
    """(1, 1, VOCAB) logits with all image mass on `code`, or split 50/50 with `second`."""
    logits = torch.zeros(1, 1, VOCAB)
    logits[0, 0, :] = -big
    logits[0, 0, IMAGE_IDS[code]] = big
    if second is not None:
        logits[0, 0, IMAGE_IDS[second]] = big
    return logits


def gold(code: int) -> torch.Tensor:
    return IMAGE_IDS[code].reshape(1, 1)


def test_distances_are_the_pairwise_mse_symmetric_with_zero_diagonal(
    codebook: torch.Tensor, distances: torch.Tensor
) -> None:
    expected = ((codebook[:, None, :] - codebook[None, :, :]) ** 2).mean(dim=-1)
    assert distances.shape == (K, K)
    assert torch.allclose(distances, expected, atol=1e-6)
    assert torch.equal(distances, distances.T)
    assert torch.equal(distances.diagonal(), torch.zeros(K))
    assert not distances.requires_grad
    euclidean = codebook_distances(codebook, metric="euclidean")
    assert torch.allclose(euclidean, torch.cdist(codebook, codebook), atol=1e-5)


def test_distances_carry_no_grad_even_from_a_trainable_codebook() -> None:
    codebook = torch.randn(K, D, requires_grad=True)
    assert not codebook_distances(codebook).requires_grad


def test_zero_when_all_mass_is_on_the_gold_code(distances: torch.Tensor) -> None:
    for code in range(K):
        loss = token_discrepancy_loss(logits_on(code), gold(code), IMAGE_IDS, distances)
        assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_never_negative(distances: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, VOCAB, generator=generator) * 5
    targets = IMAGE_IDS[torch.randint(K, (3, 7), generator=generator)]
    assert token_discrepancy_loss(logits, targets, IMAGE_IDS, distances).item() >= 0.0


def test_mass_on_the_nearest_code_costs_less_than_on_the_farthest(
    distances: torch.Tensor,
) -> None:
    code = 0
    others = distances[code].clone()
    others[code] = float("inf")
    nearest = int(others.argmin())
    farthest = int(distances[code].argmax())
    near = token_discrepancy_loss(logits_on(code, nearest), gold(code), IMAGE_IDS, distances)
    far = token_discrepancy_loss(logits_on(code, farthest), gold(code), IMAGE_IDS, distances)
    assert near.item() == pytest.approx(distances[code, nearest].item() / 2, rel=1e-5)
    assert far.item() == pytest.approx(distances[code, farthest].item() / 2, rel=1e-5)
    assert near < far


def test_a_gradient_step_moves_probability_toward_nearer_codes(distances: torch.Tensor) -> None:
    code = 2
    logits = torch.zeros(1, 1, VOCAB, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=1.0)

    def image_probabilities() -> torch.Tensor:
        return torch.softmax(logits.detach()[0, 0, IMAGE_IDS], dim=-1)

    before = image_probabilities()
    loss = token_discrepancy_loss(logits, gold(code), IMAGE_IDS, distances)
    loss.backward()
    optimizer.step()
    after = image_probabilities()

    order = distances[code].argsort()  # gold first, then nearer to farther
    nearest, farthest = int(order[1]), int(order[-1])
    assert after[code] > before[code]
    assert after[nearest] / after[farthest] > before[nearest] / before[farthest]
    # Logit changes are ordered by distance: the nearer the code, the larger its change.
    change = (after.log() - before.log())[order]
    assert torch.all(change[:-1] >= change[1:])
    assert token_discrepancy_loss(logits, gold(code), IMAGE_IDS, distances) < loss


def test_text_positions_and_text_columns_get_exactly_zero_gradient(
    distances: torch.Tensor,
) -> None:
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 5, VOCAB, generator=generator, requires_grad=True)
    targets = torch.tensor([[3, IMAGE_IDS[1], 7, IMAGE_IDS[4], -100], [IMAGE_IDS[0], 1, 2, 17, 0]])
    token_discrepancy_loss(logits, targets, IMAGE_IDS, distances).backward()
    grad = logits.grad
    assert grad is not None and torch.isfinite(grad).all()
    is_image = torch.isin(targets, IMAGE_IDS)
    assert torch.equal(grad[~is_image], torch.zeros_like(grad[~is_image]))
    text_columns = torch.ones(VOCAB, dtype=torch.bool)
    text_columns[IMAGE_IDS] = False
    assert torch.equal(grad[..., text_columns], torch.zeros_like(grad[..., text_columns]))
    assert grad[is_image][:, IMAGE_IDS].abs().sum() > 0


def test_ignored_and_text_targets_do_not_change_the_value(distances: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 4, VOCAB, generator=generator)
    only_images = token_discrepancy_loss(
        logits[:, :2], IMAGE_IDS[[1, 3]].reshape(1, 2), IMAGE_IDS, distances
    )
    mixed = torch.tensor([[IMAGE_IDS[1], IMAGE_IDS[3], -100, 5]])
    assert token_discrepancy_loss(logits, mixed, IMAGE_IDS, distances).item() == pytest.approx(
        only_images.item()
    )


def test_no_image_position_gives_zero_that_backpropagates(distances: torch.Tensor) -> None:
    logits = torch.randn(2, 3, VOCAB, requires_grad=True)
    targets = torch.tensor([[1, 2, -100], [-100, 19, 0]])
    loss = token_discrepancy_loss(logits, targets, IMAGE_IDS, distances)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_mismatched_distances_are_refused(distances: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="distances"):
        token_discrepancy_loss(torch.zeros(1, 1, VOCAB), gold(0), IMAGE_IDS[:3], distances)
