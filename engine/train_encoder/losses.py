"""Training losses of the synth encoder: contrastive alignment and concept classification.

- `multi_positive_nce`: InfoNCE (CLIP's symmetric contrastive loss, Radford et al. 2021)
  where a row may have several positives: -log(sum of positive softmax mass). Sentences
  of the synthetic world can fit several clips, windows or videos (a query that names
  only the shape), and the plan says exactly which, so no true match is pushed away.
- `soft_target_ce`: cross-entropy against a target distribution (a sentence against the
  action windows, weighted by their temporal IoU with the sentence's event).
- `focal_bce`: focal binary cross-entropy (Lin et al. 2017) for the multi-label entity
  and action concepts, as MCSAN uses for its concept losses; normalised by positives.
  The same concept classifiers read image, window and sentence embeddings, so the
  concepts a sentence names pull it towards the clips that show them.

- `masked_mse`: mean squared error over the known targets only (the pose of each
  colour's object, known while it is visible).
- `uniformity`: Wang & Isola's (2020) uniformity term, log E exp(-t |x - y|^2) over
  pairs of a batch. The synthetic frames differ only in a few small objects, so a fresh
  image tower maps every frame to nearly the same vector and the contrastive gradient
  collapses both towers onto it; this term spreads each tower's embeddings apart.

The contrastive losses take logits already multiplied by their temperature.
"""

import torch
import torch.nn.functional as F  # noqa: N812


def multi_positive_nce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows with a positive of -log(softmax mass on the positives).

    logits (A, B), positive (A, B) bool. Rows without a positive are skipped; 0 if none.
    """
    rows = positive.any(dim=1)  # (A,)
    if not bool(rows.any()):
        return logits.sum() * 0.0
    logits, positive = logits[rows], positive[rows]
    everything = torch.logsumexp(logits, dim=1)  # (A',)
    matched = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)  # (A',)
    return (everything - matched).mean()


def symmetric_nce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """The mean of the row-wise (A -> B) and column-wise (B -> A) multi-positive losses."""
    return 0.5 * (multi_positive_nce(logits, positive) + multi_positive_nce(logits.T, positive.T))


def soft_target_ce(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each row against `weights` normalised to a distribution.

    logits (A, B), weights (A, B) >= 0; rows whose weights sum to 0 are skipped.
    """
    total = weights.sum(dim=1)  # (A,)
    rows = total > 0
    if not bool(rows.any()):
        return logits.sum() * 0.0
    target = weights[rows] / total[rows].unsqueeze(1)  # (A', B)
    return -(target * F.log_softmax(logits[rows], dim=1)).sum(dim=1).mean()


def focal_bce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    known: torch.Tensor | None = None,
    gamma: float = 2.0,
    alpha: float = 0.25,
) -> torch.Tensor:
    """Focal binary cross-entropy summed over elements, divided by the number of positives
    (at least 1). logits and targets (N, C), targets in {0, 1}; `known` (N, C) in {0, 1}
    leaves out the elements whose label is unknown."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # (N, C)
    p_true = p * targets + (1.0 - p) * (1.0 - targets)
    weight = alpha * targets + (1.0 - alpha) * (1.0 - targets)
    loss = weight * (1.0 - p_true).pow(gamma) * ce  # (N, C)
    if known is not None:
        loss, targets = loss * known, targets * known
    return loss.sum() / targets.sum().clamp_min(1.0)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean of (prediction - target)^2 where `known` is 1; 0 if nothing is known.
    All three (N, G)."""
    squared = (prediction - target).pow(2) * known
    return squared.sum() / known.sum().clamp_min(1.0)


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log of the mean of exp(-t * |x_i - x_j|^2) over pairs i != j; x (N, D) normalised."""
    n = x.shape[0]
    if n < 2:
        return x.sum() * 0.0
    sq = (2.0 - 2.0 * (x @ x.T)).clamp_min(0.0)  # (N, N) squared distances of unit vectors
    off = ~torch.eye(n, dtype=torch.bool, device=x.device)
    return torch.logsumexp(-t * sq[off], dim=0) - torch.log(torch.tensor(float(n * (n - 1))))
