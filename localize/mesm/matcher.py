"""Hungarian matching of MESM's span predictions to ground-truth windows.

MESM (Liu et al., AAAI 2024; official code github lntzm/MESM, `model/matcher.py`) trains
like DETR: each query's ground-truth windows are matched one-to-one to the decoder's
`num_queries` predictions by minimising

    cost = cost_span * L1(centre, width) + cost_giou * (-GIoU) + cost_class * (-p_fg)

with `scipy.optimize.linear_sum_assignment`; unmatched predictions count as background.
Defaults are the official QVHighlights / Charades-STA weights (10, 1, 4); TACoS uses a
class weight of 6. Spans are normalised to [0, 1] of the video; predictions come as
(centre, width) and foreground is class index 0. The span helpers here (format
conversion, temporal IoU / GIoU) are shared by the losses.

Use: `HungarianMatcher()(outputs, target_spans)` -> one (pred_idx, target_idx) pair of
int64 tensors per query.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from engine.errors import InputError

FOREGROUND = 0  # class index of "this span is a moment" in `pred_logits`


def span_cxw_to_xx(spans: torch.Tensor) -> torch.Tensor:
    """(..., 2) (centre, width) -> (..., 2) (start, end)."""
    centre, width = spans[..., 0], spans[..., 1]
    return torch.stack([centre - 0.5 * width, centre + 0.5 * width], dim=-1)


def span_xx_to_cxw(spans: torch.Tensor) -> torch.Tensor:
    """(..., 2) (start, end) -> (..., 2) (centre, width)."""
    start, end = spans[..., 0], spans[..., 1]
    return torch.stack([0.5 * (start + end), end - start], dim=-1)


def temporal_iou(spans1: torch.Tensor, spans2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise IoU and union of (N, 2) and (M, 2) (start, end) spans -> two (N, M)."""
    length1 = spans1[:, 1] - spans1[:, 0]  # (N,)
    length2 = spans2[:, 1] - spans2[:, 0]  # (M,)
    left = torch.max(spans1[:, None, 0], spans2[None, :, 0])  # (N, M)
    right = torch.min(spans1[:, None, 1], spans2[None, :, 1])  # (N, M)
    inter = (right - left).clamp(min=0)  # (N, M)
    union = length1[:, None] + length2[None, :] - inter  # (N, M)
    return inter / union, union


def generalized_temporal_iou(spans1: torch.Tensor, spans2: torch.Tensor) -> torch.Tensor:
    """Pairwise generalised IoU of (N, 2) and (M, 2) (start, end) spans -> (N, M).

    GIoU = IoU - (enclosing - union) / enclosing, in [-1, 1]; spans must have end >= start.
    """
    spans1 = spans1.float()
    spans2 = spans2.float()
    if bool((spans1[:, 1] < spans1[:, 0]).any()) or bool((spans2[:, 1] < spans2[:, 0]).any()):
        raise InputError("generalized_temporal_iou: every span needs end >= start")
    iou, union = temporal_iou(spans1, spans2)  # (N, M) each
    left = torch.min(spans1[:, None, 0], spans2[None, :, 0])  # (N, M)
    right = torch.max(spans1[:, None, 1], spans2[None, :, 1])  # (N, M)
    enclosing = (right - left).clamp(min=0)  # (N, M)
    return iou - (enclosing - union) / enclosing


class HungarianMatcher:
    """One-to-one assignment of predictions to ground-truth windows, per query.

    `outputs` holds `pred_logits` (B, Q, 2) and `pred_spans` (B, Q, 2) in normalised
    (centre, width); `target_spans[b]` is (n_b, 2) normalised (centre, width). Returns, per
    query b, `(pred_idx, target_idx)`: int64 tensors of length min(Q, n_b), `target_idx`
    sorted ascending as scipy returns them. A query with no windows gets two empty tensors.
    """

    def __init__(self, cost_span: float = 10.0, cost_giou: float = 1.0, cost_class: float = 4.0):
        if cost_span == 0 and cost_giou == 0 and cost_class == 0:
            raise InputError("HungarianMatcher: at least one cost weight must be non-zero")
        self.cost_span = cost_span
        self.cost_giou = cost_giou
        self.cost_class = cost_class

    def cost_matrix(
        self, pred_logits: torch.Tensor, pred_spans: torch.Tensor, target_spans: torch.Tensor
    ) -> torch.Tensor:
        """The (Q, n) matching cost of one query's Q predictions against its n windows."""
        prob_fg = pred_logits.float().softmax(-1)[:, FOREGROUND]  # (Q,)
        cost_class = -prob_fg[:, None].expand(-1, target_spans.shape[0])  # (Q, n)
        cost_span = torch.cdist(pred_spans.float(), target_spans.float(), p=1)  # (Q, n)
        cost_giou = -generalized_temporal_iou(
            span_cxw_to_xx(pred_spans), span_cxw_to_xx(target_spans)
        )  # (Q, n)
        return (
            self.cost_span * cost_span + self.cost_giou * cost_giou + self.cost_class * cost_class
        )

    @torch.no_grad()
    def __call__(
        self, outputs: Mapping[str, torch.Tensor], target_spans: Sequence[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        pred_logits = outputs["pred_logits"]  # (B, Q, 2)
        pred_spans = outputs["pred_spans"]  # (B, Q, 2)
        if pred_logits.shape[0] != len(target_spans):
            raise InputError(
                f"HungarianMatcher: {pred_logits.shape[0]} predictions but "
                f"{len(target_spans)} target lists"
            )
        indices: list[tuple[torch.Tensor, torch.Tensor]] = []
        for b, targets in enumerate(target_spans):
            if targets.numel() == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(pred_logits[b], pred_spans[b], targets.to(pred_spans.device))
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            indices.append(
                (
                    torch.as_tensor(np.asarray(rows), dtype=torch.int64),
                    torch.as_tensor(np.asarray(cols), dtype=torch.int64),
                )
            )
        return indices
