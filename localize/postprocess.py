"""Moment post-processing: temporal IoU, NMS, snapping spans to clip multiples, merging.

The conventions follow Moment-DETR / MESM inference (github.com/jayleicn/moment_detr,
github.com/lntzm/MESM): spans are clamped to [0, max_s] and then rounded to multiples
of the clip length; NMS visits moments best first and drops every later moment whose
IoU with a kept one is strictly greater than the threshold.

    from localize.postprocess import nms, snap_to_clips, temporal_iou
    iou = temporal_iou(np.array([[0, 10]]), np.array([[5, 15], [20, 30]]))  # (1, 2)
    kept = nms(moments, iou_threshold=0.7, max_moments=10)
"""

from collections.abc import Iterable, Sequence

import numpy as np

from engine.errors import InputError
from localize.types import Moment


def _spans(x: np.ndarray | Sequence[Sequence[float]], name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InputError(f"{name} must have shape (N, 2), got {arr.shape}")
    return arr[:, :2]


def temporal_iou(
    a: np.ndarray | Sequence[Sequence[float]], b: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """Pairwise IoU of spans `a` (N, 2) and `b` (M, 2), [start, end] rows -> (N, M) float64.

    Union is len(a) + len(b) - intersection; a pair whose union is 0 (two equal points)
    has IoU 0. Extra columns (e.g. a score) are ignored.
    """
    sa, sb = _spans(a, "a"), _spans(b, "b")  # (N, 2), (M, 2)
    left = np.maximum(sa[:, None, 0], sb[None, :, 0])  # (N, M)
    right = np.minimum(sa[:, None, 1], sb[None, :, 1])  # (N, M)
    inter = np.clip(right - left, 0.0, None)  # (N, M)
    union = (sa[:, 1] - sa[:, 0])[:, None] + (sb[:, 1] - sb[:, 0])[None, :] - inter  # (N, M)
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def moments_to_array(moments: Sequence[Moment]) -> np.ndarray:
    """(N, 3) float64 rows [start_s, end_s, score]."""
    if not moments:
        return np.zeros((0, 3))
    return np.array([[m.start_s, m.end_s, m.score] for m in moments], dtype=np.float64)


def sort_moments(moments: Iterable[Moment]) -> list[Moment]:
    """Best score first; equal scores keep their input order."""
    return sorted(moments, key=lambda m: -m.score)


def check_proposal_options(nms_iou: float, max_proposals: int) -> None:
    """Refuse an NMS IoU outside [0, 1] or fewer than one proposal per video."""
    if not 0.0 <= nms_iou <= 1.0:
        raise InputError(f"nms_iou must be in [0, 1], got {nms_iou}")
    if max_proposals < 1:
        raise InputError(f"max_proposals must be >= 1, got {max_proposals}")


def nms(
    moments: Sequence[Moment], iou_threshold: float, max_moments: int | None = None
) -> list[Moment]:
    """Greedy non-maximum suppression, best first.

    A moment is dropped when its IoU with an already kept, better moment is strictly
    greater than `iou_threshold` (1.0 drops nothing; 0.0 drops every moment that
    overlaps a kept one). At most `max_moments` are returned.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise InputError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if max_moments is not None and max_moments < 0:
        raise InputError(f"max_moments must be >= 0, got {max_moments}")
    ordered = sort_moments(moments)
    limit = len(ordered) if max_moments is None else max_moments
    if not ordered or limit == 0:
        return []
    iou = temporal_iou(moments_to_array(ordered), moments_to_array(ordered))  # (N, N)
    suppressed = np.zeros(len(ordered), dtype=bool)
    kept: list[Moment] = []
    for i, moment in enumerate(ordered):
        if suppressed[i]:
            continue
        kept.append(moment)
        if len(kept) >= limit:
            break
        suppressed |= iou[i] > iou_threshold
    return kept


def snap_to_clips(moments: Sequence[Moment], clip_seconds: float, max_s: float) -> list[Moment]:
    """Clamp spans to [0, max_s], then round both ends to multiples of `clip_seconds`.

    As in MESM's post-processor; rounding is half-to-even, and a very short span can
    collapse to zero length. Order and scores are unchanged.
    """
    if clip_seconds <= 0:
        raise InputError(f"clip_seconds must be > 0, got {clip_seconds}")
    if not moments:
        return []
    arr = moments_to_array(moments)  # (N, 3)
    spans = np.clip(arr[:, :2], 0.0, max(0.0, max_s))  # (N, 2)
    spans = np.round(spans / clip_seconds) * clip_seconds  # (N, 2)
    return [Moment(float(s), float(e), m.score) for (s, e), m in zip(spans, moments, strict=True)]


def shift_moments(moments: Iterable[Moment], offset_s: float) -> list[Moment]:
    """Moments moved by `offset_s` seconds (e.g. from window time to video time)."""
    return [Moment(m.start_s + offset_s, m.end_s + offset_s, m.score) for m in moments]


def merge_moments(
    groups: Iterable[Sequence[Moment]], iou_threshold: float, max_moments: int | None = None
) -> list[Moment]:
    """One best-first list from several (e.g. per-window) lists: concatenate, then NMS."""
    pooled = [m for group in groups for m in group]
    return nms(pooled, iou_threshold, max_moments)
