"""Moment post-processing: IoU against a naive loop, NMS, snapping, merging."""

import numpy as np
import pytest

from engine.errors import InputError
from localize.postprocess import (
    merge_moments,
    moments_to_array,
    nms,
    shift_moments,
    snap_to_clips,
    temporal_iou,
)
from localize.types import Moment


def naive_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def test_temporal_iou_hand_values() -> None:
    iou = temporal_iou(np.array([[0, 10], [5, 5]]), np.array([[5, 15], [0, 10], [20, 30], [5, 5]]))
    assert iou.shape == (2, 4)
    np.testing.assert_allclose(iou[0], [5 / 15, 1.0, 0.0, 0.0])
    assert iou[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # a point has no IoU, even with itself


def test_temporal_iou_matches_naive_loop() -> None:
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 100, size=(40, 1))
    a = np.hstack([starts, starts + rng.uniform(0, 30, size=(40, 1))])  # (40, 2)
    starts = rng.uniform(0, 100, size=(25, 1))
    b = np.hstack([starts, starts + rng.uniform(0, 30, size=(25, 1))])  # (25, 2)
    expected = [[naive_iou(tuple(x), tuple(y)) for y in b] for x in a]
    np.testing.assert_allclose(temporal_iou(a, b), expected, rtol=1e-12)
    assert temporal_iou(np.zeros((0, 2)), b).shape == (0, 25)
    with pytest.raises(InputError, match="shape"):
        temporal_iou(np.zeros(3), b)


def test_nms_suppresses_strictly_above_threshold() -> None:
    moments = [
        Moment(0, 10, 0.5),
        Moment(0, 10, 0.9),  # best
        Moment(0, 5, 0.8),  # IoU 0.5 with the best
        Moment(20, 30, 0.7),
        Moment(1, 10, 0.6),  # IoU 0.9 with the best
    ]
    kept = nms(moments, iou_threshold=0.5)
    assert kept == [Moment(0, 10, 0.9), Moment(0, 5, 0.8), Moment(20, 30, 0.7)]
    assert nms(moments, iou_threshold=0.49) == [Moment(0, 10, 0.9), Moment(20, 30, 0.7)]
    assert nms(moments, iou_threshold=1.0) == sorted(moments, key=lambda m: -m.score)
    assert nms(moments, iou_threshold=0.5, max_moments=2) == kept[:2]
    assert nms([], 0.5) == []


def test_nms_ties_keep_input_order() -> None:
    moments = [Moment(20, 30, 0.5), Moment(0, 10, 0.5), Moment(0, 9, 0.5)]
    assert nms(moments, 0.5) == [Moment(20, 30, 0.5), Moment(0, 10, 0.5)]


def test_nms_rejects_bad_arguments() -> None:
    with pytest.raises(InputError, match="iou_threshold"):
        nms([Moment(0, 1, 1)], 1.5)
    with pytest.raises(InputError, match="max_moments"):
        nms([Moment(0, 1, 1)], 0.5, max_moments=-1)


def test_snap_to_clips_clamps_then_rounds() -> None:
    moments = [Moment(-3.0, 4.9, 0.9), Moment(141.2, 163.0, 0.8), Moment(3.0, 5.0, 0.7)]
    snapped = snap_to_clips(moments, clip_seconds=2.0, max_s=150.0)
    # -3 -> 0; 4.9 -> 4; 141.2 -> 142; 163 -> 150; 3 -> 4 and 5 -> 4 (half to even).
    assert snapped == [Moment(0.0, 4.0, 0.9), Moment(142.0, 150.0, 0.8), Moment(4.0, 4.0, 0.7)]
    with pytest.raises(InputError):
        snap_to_clips(moments, clip_seconds=0.0, max_s=10.0)


def test_shift_and_merge() -> None:
    shifted = shift_moments([Moment(0, 4, 0.3)], 100.0)
    assert shifted == [Moment(100, 104, 0.3)]
    merged = merge_moments(
        [[Moment(0, 10, 0.9), Moment(50, 60, 0.2)], [Moment(1, 10, 0.8), Moment(70, 80, 0.6)]],
        iou_threshold=0.5,
        max_moments=3,
    )
    assert merged == [Moment(0, 10, 0.9), Moment(70, 80, 0.6), Moment(50, 60, 0.2)]
    assert moments_to_array(merged).shape == (3, 3)
