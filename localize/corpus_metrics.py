"""Corpus-level retrieval metrics, as TVR's standalone eval (VCMR, SVMR, VR).

Definitions follow `standalone_eval/eval.py` of github.com/jayleicn/TVRetrieval (Lei et
al., "TVR: A Large-Scale Dataset for Video-Subtitle Moment Retrieval", ECCV 2020):

- VCMR (video corpus moment retrieval) R@k at IoU t: the share of queries with at least
  one correct moment among their top k, where a moment is correct when its video is the
  GT video and its temporal IoU with a GT window is >= t. Keys `"{t}-r{k}"`.
- SVMR (single video moment retrieval): the same, on the ranked moments restricted to
  the GT video (other videos' moments are skipped, not counted as misses).
- VR (video retrieval) R@k: the share of queries whose GT video is among the top k
  videos. Keys `"r{k}"`.

Only the first `max_predictions` (100) moments of each query count. As in TVR, IoU is
computed on float32 spans with the spans' hull as the union, and percentages are
rounded with numpy to two decimals. A query whose GT has several windows counts a
moment correct when it matches any of them. A query with no predictions is a miss.

Input shapes:
- `gt`: `MomentQuery` per query (`vid` = the GT video, `windows` = GT spans, seconds).
- `moments`: qid -> ranked moments, best first; each row `(video_id, start_s, end_s)` or
  `(video_id, start_s, end_s, score)` (the score is ignored; the order is the ranking).
- `videos`: qid -> ranked video ids, best first.

    from localize.corpus_metrics import evaluate_corpus
    metrics = evaluate_corpus(gt, moments={7: [("vidA", 3.0, 9.5, 0.8), ...]})
    metrics["VCMR"]["0.7-r10"]
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import InputError
from localize.annotations import MomentQuery

IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.7)
RECALL_KS: tuple[int, ...] = (1, 5, 10, 100)
MAX_PREDICTIONS = 100

RankedMoments = Mapping[Any, Sequence[Sequence[Any]]]


def _percent(x: float) -> float:
    """TVR's rounding: numpy's round of the percentage to two decimals."""
    return float(np.round(np.float64(x) * 100, 2))


def _check(gt: Sequence[MomentQuery], predicted: Mapping[Any, Any], what: str) -> None:
    if not gt:
        raise InputError("no queries to evaluate")
    gt_qids = {q.qid for q in gt}
    if len(gt_qids) != len(gt):
        raise InputError("duplicate qids in the ground truth")
    for q in gt:
        if not q.windows and what == "moments":
            raise InputError(f"ground truth for qid {q.qid!r} has no windows")
    unknown = set(predicted) - gt_qids
    missing = gt_qids - set(predicted)
    if unknown or missing:
        raise InputError(
            f"{what} and ground truth must cover the same qids: "
            f"{len(unknown)} predicted qids not in the ground truth, "
            f"{len(missing)} ground-truth qids without {what}"
        )


def _hull_iou(spans: np.ndarray, window: np.ndarray) -> np.ndarray:
    """IoU of float32 `spans` (N, 2) with one `window` (2,), hull as the union -> (N,)."""
    inter = np.maximum(0, np.minimum(spans[:, 1], window[1]) - np.maximum(spans[:, 0], window[0]))
    hull = np.maximum(spans[:, 1], window[1]) - np.minimum(spans[:, 0], window[0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)  # (N,)


def _correct(
    q: MomentQuery, rows: Sequence[Sequence[Any]], thresholds: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """(same video (N,), correct per threshold (T, N)) for a query's top moments."""
    rows = list(rows)[:MAX_PREDICTIONS]
    try:
        same_video = np.array([str(r[0]) == q.vid for r in rows], dtype=bool)  # (N,)
        spans = np.array([[r[1], r[2]] for r in rows], dtype=np.float32).reshape(-1, 2)  # (N, 2)
    except (TypeError, ValueError, IndexError) as e:
        raise InputError(
            f"moments of qid {q.qid!r} must be (video_id, start_s, end_s[, score]) rows"
        ) from e
    best = np.zeros(len(rows), dtype=np.float32)  # (N,) best IoU over GT windows
    for window in q.windows:
        best = np.maximum(best, _hull_iou(spans, np.array(window, dtype=np.float32)))
    best = best * same_video
    correct = np.stack([best >= t for t in thresholds]) if thresholds else np.zeros((0, len(rows)))
    return same_video, correct.reshape(len(thresholds), len(rows))  # (N,), (T, N)


def vcmr_recall(
    gt: Sequence[MomentQuery],
    moments: RankedMoments,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """VCMR R@k per IoU threshold, keys `"{t}-r{k}"` in percent."""
    _check(gt, moments, "moments")
    hits = np.zeros((len(iou_thresholds), len(ks), len(gt)), dtype=bool)  # (T, K, Q)
    for qi, q in enumerate(gt):
        _, correct = _correct(q, moments[q.qid], iou_thresholds)  # (T, N)
        for ki, k in enumerate(ks):
            hits[:, ki, qi] = correct[:, :k].any(axis=1)
    return {
        f"{t}-r{k}": _percent(float(np.mean(hits[ti, ki])))
        for ti, t in enumerate(iou_thresholds)
        for ki, k in enumerate(ks)
    }


def svmr_recall(
    gt: Sequence[MomentQuery],
    moments: RankedMoments,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """SVMR R@k per IoU threshold: like VCMR on the moments inside the GT video only."""
    _check(gt, moments, "moments")
    hits = np.zeros((len(iou_thresholds), len(ks), len(gt)), dtype=bool)  # (T, K, Q)
    for qi, q in enumerate(gt):
        same_video, correct = _correct(q, moments[q.qid], iou_thresholds)  # (N,), (T, N)
        in_video = correct[:, same_video]  # (T, N_same)
        for ki, k in enumerate(ks):
            hits[:, ki, qi] = in_video[:, :k].any(axis=1)
    return {
        f"{t}-r{k}": _percent(float(np.mean(hits[ti, ki])))
        for ti, t in enumerate(iou_thresholds)
        for ki, k in enumerate(ks)
    }


def vr_recall(
    gt: Sequence[MomentQuery], videos: Mapping[Any, Sequence[str]], ks: Sequence[int] = RECALL_KS
) -> dict[str, float]:
    """Video retrieval R@k, keys `"r{k}"` in percent."""
    _check(gt, videos, "videos")
    hits = np.zeros((len(ks), len(gt)), dtype=bool)  # (K, Q)
    for qi, q in enumerate(gt):
        ranked = [str(v) for v in list(videos[q.qid])[:MAX_PREDICTIONS]]
        for ki, k in enumerate(ks):
            hits[ki, qi] = q.vid in ranked[:k]
    return {f"r{k}": _percent(float(np.mean(hits[ki]))) for ki, k in enumerate(ks)}


def videos_from_moments(moments: RankedMoments) -> dict[Any, list[str]]:
    """The video ranking a moment ranking implies: each video at its best moment's rank."""
    out: dict[Any, list[str]] = {}
    for qid, rows in moments.items():
        seen: dict[str, None] = {}
        for row in rows:
            seen.setdefault(str(row[0]), None)
        out[qid] = list(seen)
    return out


def evaluate_corpus(
    gt: Sequence[MomentQuery],
    moments: RankedMoments | None = None,
    videos: Mapping[Any, Sequence[str]] | None = None,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, dict[str, float]]:
    """{"VCMR": ..., "SVMR": ..., "VR": ...} for whatever is given.

    VCMR and SVMR need `moments`; VR uses `videos`, or without it the video ranking the
    moments imply (`videos_from_moments`).
    """
    if moments is None and videos is None:
        raise InputError("nothing to evaluate: give ranked moments and/or ranked videos")
    out: dict[str, dict[str, float]] = {}
    if moments is not None:
        out["VCMR"] = vcmr_recall(gt, moments, iou_thresholds, ks)
        out["SVMR"] = svmr_recall(gt, moments, iou_thresholds, ks)
    out["VR"] = vr_recall(
        gt, videos if videos is not None else videos_from_moments(moments or {}), ks
    )
    return out
