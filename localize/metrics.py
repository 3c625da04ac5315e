"""Moment retrieval and highlight detection metrics, as Moment-DETR's standalone eval.

Reproduces `standalone_eval/eval.py` of github.com/jayleicn/moment_detr (QVHighlights,
Lei et al., NeurIPS 2021) number for number, with the same JSON layout, key names and
rounding (percentages with two decimals), plus the two figures MESM's eval adds
(github.com/lntzm/MESM): R1@0.3 and mIoU. So the output compares directly with papers.

- MR-R1@t: the first listed predicted window against the GT window it overlaps most;
  a hit when IoU >= t, t in {0.3} and 0.5:0.05:0.95. `miou` is the mean of that best
  IoU over queries.
- MR-mAP: per query, ActivityNet-style interpolated AP of the first 10 predicted
  windows ranked by score, greedy one-to-one matching to GT windows at each IoU
  threshold 0.5:0.05:0.95; averaged over queries, then over thresholds (`average`).
- Buckets by GT window length: short (0, 10], middle (10, 30], long (30, 150] seconds
  (a query keeps only its windows in the bucket, and drops out when none is), and full
  (every window). A bucket with no query is left out, and its brief entry is None.
- Highlight detection (only when every prediction has `pred_saliency_scores` and every
  GT query has `duration` and saliency annotations): per-clip GT scores (0..4 from each
  annotator) are positives at >= 2 / 3 / 4 (Fair / Good / VeryGood). HL-Hit1: the
  top-scored clip is positive for at least one annotator. HL-mAP: the reference's AP
  (interpolated precision averaged over distinct recall levels) per annotator, averaged.

Where the reference crashes or is undefined, this module decides: a query with no
predicted window scores IoU 0 and AP 0; an empty saliency list hits nothing; two
zero-length spans at the same point have IoU 0; a prediction tied in IoU with several
GT windows tries the later window first (what the reference's small-array argsort
does). Queries are averaged in prediction-file order (the reference's multiprocess
order can move the last bit).

    from localize.annotations import load_predictions, load_qvhighlights
    from localize.metrics import evaluate_moments
    metrics = evaluate_moments(load_qvhighlights(gt_path), load_predictions(pred_path))
    metrics["brief"]["MR-full-mAP"]
"""

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import InputError
from localize.annotations import MomentQuery
from localize.postprocess import temporal_iou

log = logging.getLogger(__name__)

MAP_IOU_THRESHOLDS: tuple[float, ...] = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
R1_IOU_THRESHOLDS: tuple[float, ...] = (0.3, *MAP_IOU_THRESHOLDS)
# (name, lower bound exclusive, upper bound inclusive) in seconds of GT window length.
LENGTH_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("short", 0.0, 10.0),
    ("middle", 10.0, 30.0),
    ("long", 30.0, 150.0),
    ("full", 0.0, 150.0),
)
# (name, minimum GT saliency score counted as a positive clip).
SALIENCY_LEVELS: tuple[tuple[str, int], ...] = (("Fair", 2), ("Good", 3), ("VeryGood", 4))
MAX_PRED_WINDOWS = 10


def _pct(x: float) -> float:
    """The reference's rounding: a percentage with two decimals."""
    return float(f"{100 * x:.2f}")


# --- inputs -----------------------------------------------------------------------------


def _pred_windows(row: Mapping[str, Any]) -> np.ndarray:
    """(K, 3) float64 [start, end, score] rows of one prediction, in listed order."""
    qid = row.get("qid")
    if "pred_relevant_windows" not in row:
        raise InputError(f"prediction for qid {qid!r} has no 'pred_relevant_windows'")
    try:
        arr = np.asarray(row["pred_relevant_windows"], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"prediction for qid {qid!r}: windows are not numbers") from e
    if arr.size == 0:
        return np.zeros((0, 3))
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InputError(f"prediction for qid {qid!r}: windows must be [start, end, score] rows")
    return arr


def _check_qids(gt: Sequence[MomentQuery], predictions: Sequence[Mapping[str, Any]]) -> None:
    def examples(qids: set[Any]) -> str:
        return ", ".join(repr(q) for q in sorted(qids, key=str)[:5])

    gt_qids = [q.qid for q in gt]
    if len(set(gt_qids)) != len(gt_qids):
        dup = {q for q in gt_qids if gt_qids.count(q) > 1}
        raise InputError(f"duplicate qids in the ground truth: {examples(dup)}")
    pred_qids = []
    for row in predictions:
        if "qid" not in row:
            raise InputError("a prediction has no 'qid'")
        pred_qids.append(row["qid"])
    seen: set[Any] = set()
    dup = set()
    for q in pred_qids:
        if q in seen:
            dup.add(q)
        seen.add(q)
    if dup:
        raise InputError(f"duplicate qids in the predictions: {examples(dup)}")
    unknown = seen - set(gt_qids)
    if unknown:
        raise InputError(
            f"{len(unknown)} predicted qids are not in the ground truth: {examples(unknown)}"
        )
    missing = set(gt_qids) - seen
    if missing:
        raise InputError(
            f"{len(missing)} ground-truth qids have no prediction: {examples(missing)}"
        )
    if not gt:
        raise InputError("no queries to evaluate")


# --- moment retrieval -------------------------------------------------------------------


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-2011 style interpolated AP of one precision/recall sequence."""
    mprecision = np.hstack([[0.0], precision, [0.0]])
    mrecall = np.hstack([[0.0], recall, [1.0]])
    mprecision = np.maximum.accumulate(mprecision[::-1])[::-1]
    idx = np.where(mrecall[1:] != mrecall[:-1])[0] + 1
    return float(np.sum((mrecall[idx] - mrecall[idx - 1]) * mprecision[idx]))


def _detection_ap(
    gt_windows: np.ndarray, preds: np.ndarray, thresholds: Sequence[float]
) -> np.ndarray:
    """AP per IoU threshold of `preds` (K, 3) against `gt_windows` (G, 2) -> (len(thresholds),)."""
    n_thr, n_gt, n_pred = len(thresholds), len(gt_windows), len(preds)
    ap = np.zeros(n_thr)
    if n_pred == 0:
        return ap
    order = sorted(range(n_pred), key=lambda i: -preds[i, 2])  # stable, best score first
    preds = preds[order]  # (K, 3)
    iou = temporal_iou(preds[:, :2], gt_windows)  # (K, G)
    tp = np.zeros((n_thr, n_pred))
    fp = np.zeros((n_thr, n_pred))
    locked = np.zeros((n_thr, n_gt), dtype=bool)
    for k in range(n_pred):
        # GT windows by decreasing IoU; among equal IoUs the later window comes first.
        gt_order = np.argsort(iou[k], kind="stable")[::-1]
        for t, thr in enumerate(thresholds):
            for g in gt_order:
                if iou[k, g] < thr:
                    break
                if locked[t, g]:
                    continue
                tp[t, k] = 1.0
                locked[t, g] = True
                break
            if tp[t, k] == 0.0:
                fp[t, k] = 1.0
    tp_cum = np.cumsum(tp, axis=1)  # (T, K)
    fp_cum = np.cumsum(fp, axis=1)  # (T, K)
    recall = tp_cum / float(n_gt)
    precision = tp_cum / (tp_cum + fp_cum)
    for t in range(n_thr):
        ap[t] = _interpolated_ap(precision[t], recall[t])
    return ap


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (N, 2) spans, with the reference's hull as the union."""
    inter = np.maximum(0.0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    hull = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    out = np.zeros_like(inter)
    np.divide(inter, hull, out=out, where=hull != 0)
    return out


def _moment_retrieval_bucket(
    gt_windows: Mapping[Any, np.ndarray],
    gt_order: Sequence[Any],
    preds: Mapping[Any, np.ndarray],
    pred_order: Sequence[Any],
) -> dict[str, dict[str, float]]:
    """The {"MR-mAP": ..., "MR-R1": ...} block of one length bucket."""
    ap_rows = [
        _detection_ap(gt_windows[q], preds[q][:MAX_PRED_WINDOWS], MAP_IOU_THRESHOLDS)
        for q in pred_order
    ]
    ap_thresholds = np.array(ap_rows).mean(0)  # (T,)
    mr_map = {str(t): _pct(v) for t, v in zip(MAP_IOU_THRESHOLDS, ap_thresholds, strict=True)}
    mr_map["average"] = _pct(float(np.mean(ap_thresholds)))

    best_gt: dict[Any, np.ndarray] = {}
    best_ious = []
    for q in gt_order:
        windows = gt_windows[q]  # (G, 2)
        if len(preds[q]) == 0:
            best_ious.append(0.0)
            best_gt[q] = windows[0]
            continue
        ious = temporal_iou(preds[q][:1, :2], windows)[0]  # (G,)
        best_ious.append(float(np.max(ious)))
        best_gt[q] = windows[int(np.argmax(ious))]
    top1 = np.array(
        [preds[q][0, :2] if len(preds[q]) else [0.0, 0.0] for q in pred_order]
    )  # (Q, 2)
    has_pred = np.array([len(preds[q]) > 0 for q in pred_order])  # (Q,)
    paired = _paired_iou(top1, np.array([best_gt[q] for q in pred_order]))  # (Q,)
    paired = np.where(has_pred, paired, 0.0)
    mr_r1 = {str(t): float(f"{np.mean(paired >= t) * 100:.2f}") for t in R1_IOU_THRESHOLDS}
    mr_r1["miou"] = _pct(float(np.array(best_ious).mean()))
    return {"MR-mAP": mr_map, "MR-R1": mr_r1}


def _moment_retrieval(
    gt: Sequence[MomentQuery], preds: Mapping[Any, np.ndarray], pred_order: Sequence[Any]
) -> dict[str, dict[str, dict[str, float]]]:
    for q in gt:
        if not q.windows:
            raise InputError(f"ground truth for qid {q.qid!r} has no relevant_windows")
    out = {}
    for name, low, high in LENGTH_BUCKETS:
        windows: dict[Any, np.ndarray] = {}
        for q in gt:
            arr = np.array(q.windows, dtype=np.float64)  # (G, 2)
            if (low, high) != (0.0, 150.0):
                lengths = arr[:, 1] - arr[:, 0]
                arr = arr[(lengths > low) & (lengths <= high)]
            if len(arr):
                windows[q.qid] = arr
        if not windows:
            log.info("no ground-truth window in the %s bucket; left out", name)
            continue
        gt_order = [q.qid for q in gt if q.qid in windows]
        bucket_preds = [q for q in pred_order if q in windows]
        out[name] = _moment_retrieval_bucket(windows, gt_order, preds, bucket_preds)
    return out


# --- highlight detection ----------------------------------------------------------------


def _highlight_ap(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """The reference's highlight AP: interpolated precision at each distinct recall level.

    Precision/recall points as scikit-learn's precision_recall_curve (tied scores form
    one threshold), precision made non-increasing in recall, recall compared in float32,
    then the mean precision over the points where recall changes.
    """
    labels = set(y_true.tolist())
    if len(labels) == 0:
        return 0.0
    if len(labels) == 1:
        return 0.0 if y_true[0] == 0 else 1.0
    order = np.argsort(y_score, kind="mergesort")[::-1]
    scores, truth = y_score[order], y_true[order]
    distinct = np.where(np.diff(scores))[0]
    thresholds = np.r_[distinct, truth.size - 1]
    tps = np.cumsum(truth, dtype=np.float64)[thresholds]
    fps = 1 + thresholds - tps
    precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
    recall = np.r_[(tps / tps[-1])[::-1], 0.0].astype(np.float32)
    precision = np.maximum.accumulate(precision)
    changes = np.where(np.diff(recall))
    return float(np.mean(precision[changes]))


def _gt_saliency(q: MomentQuery, clip_seconds: float, annotators: int) -> np.ndarray:
    """(clips, annotators) GT scores over the whole video; 0 outside the relevant clips."""
    if q.duration_s is None:
        raise InputError(f"ground truth for qid {q.qid!r} has no duration")
    full = np.zeros((int(q.duration_s / clip_seconds), annotators))
    ids = np.array(q.relevant_clip_ids, dtype=np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= len(full)):
        raise InputError(
            f"ground truth for qid {q.qid!r}: relevant_clip_ids outside the "
            f"{len(full)} clips of a {q.duration_s:g} s video"
        )
    full[ids] = np.array(q.saliency_scores, dtype=np.float64).reshape(len(ids), annotators)
    return full


def _highlight_detection(
    gt: Sequence[MomentQuery],
    predictions: Sequence[Mapping[str, Any]],
    clip_seconds: float,
) -> dict[str, dict[str, float]] | None:
    with_scores = sum("pred_saliency_scores" in row for row in predictions)
    if with_scores == 0:
        return None
    if with_scores != len(predictions):
        raise InputError(
            f"only {with_scores} of {len(predictions)} predictions have pred_saliency_scores"
        )
    if any(not q.saliency_scores or q.duration_s is None for q in gt):
        log.info("ground truth has no saliency annotations; highlight metrics skipped")
        return None
    widths = {len(s) for q in gt for s in q.saliency_scores}
    if len(widths) != 1:
        raise InputError(f"saliency_scores have differing annotator counts: {sorted(widths)}")
    annotators = widths.pop()
    gt_scores = {q.qid: _gt_saliency(q, clip_seconds, annotators) for q in gt}
    pred_scores = []
    for row in predictions:
        try:
            pred_scores.append(np.asarray(row["pred_saliency_scores"], dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise InputError(f"pred_saliency_scores of qid {row['qid']!r} are not numbers") from e

    out = {}
    for name, min_score in SALIENCY_LEVELS:
        hits = np.zeros((len(predictions), annotators))
        aps = np.zeros((len(predictions), annotators))
        for i, (row, scores) in enumerate(zip(predictions, pred_scores, strict=True)):
            positive = (gt_scores[row["qid"]] >= min_score).astype(np.float64)  # (clips, A)
            if len(scores):
                top = int(np.argmax(scores))
                if top < len(positive):
                    hits[i] = positive[top]
            fitted = np.zeros(len(positive))
            n = min(len(positive), len(scores))
            fitted[:n] = scores[:n]
            for a in range(annotators):
                aps[i, a] = _highlight_ap(positive[:, a], fitted)
        out[f"HL-min-{name}"] = {
            "HL-mAP": _pct(float(np.mean(aps))),
            "HL-Hit1": _pct(float(np.mean(np.max(hits, 1)))),
        }
    return out


# --- public -----------------------------------------------------------------------------


def evaluate_moments(
    gt: Sequence[MomentQuery],
    predictions: Sequence[Mapping[str, Any]],
    clip_seconds: float = 2.0,
) -> dict[str, Any]:
    """Moment-DETR standalone-eval metrics of `predictions` against `gt`.

    `predictions` are rows as `localize.annotations.load_predictions` returns them (one
    per GT query, same qids). `clip_seconds` is the saliency clip length (2 s for
    QVHighlights). Returns the reference layout: `brief` first (MR keys sorted, then
    HL-min-{Fair,Good,VeryGood}-{mAP,Hit1}), then the per-bucket and per-level blocks
    sorted by name. Raises `InputError` when the qids of the two sides differ.
    """
    _check_qids(gt, predictions)
    if clip_seconds <= 0:
        raise InputError(f"clip_seconds must be > 0, got {clip_seconds}")
    preds = {row["qid"]: _pred_windows(row) for row in predictions}
    pred_order = [row["qid"] for row in predictions]

    mr = _moment_retrieval(gt, preds, pred_order)
    hl = _highlight_detection(gt, predictions, clip_seconds)

    def bucket_value(bucket: str, table: str, key: str) -> float | None:
        return mr[bucket][table][key] if bucket in mr else None

    mr_brief = {
        "MR-full-R1@0.3": bucket_value("full", "MR-R1", "0.3"),
        "MR-full-R1@0.5": bucket_value("full", "MR-R1", "0.5"),
        "MR-full-R1@0.7": bucket_value("full", "MR-R1", "0.7"),
        "MR-full-miou": bucket_value("full", "MR-R1", "miou"),
        "MR-full-mAP": bucket_value("full", "MR-mAP", "average"),
        "MR-full-mAP@0.5": bucket_value("full", "MR-mAP", "0.5"),
        "MR-full-mAP@0.75": bucket_value("full", "MR-mAP", "0.75"),
        "MR-short-mAP": bucket_value("short", "MR-mAP", "average"),
        "MR-middle-mAP": bucket_value("middle", "MR-mAP", "average"),
        "MR-long-mAP": bucket_value("long", "MR-mAP", "average"),
    }
    brief: dict[str, float | None] = dict(sorted(mr_brief.items()))
    blocks: dict[str, Any] = dict(mr)
    if hl is not None:
        for level, values in hl.items():
            for key, value in values.items():
                brief[f"{level}-{key.split('-')[1]}"] = value
        blocks.update(hl)
    return {"brief": brief, **dict(sorted(blocks.items()))}
