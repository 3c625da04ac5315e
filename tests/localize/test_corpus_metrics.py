"""TVR-style corpus metrics on a tiny hand-made corpus."""

import pytest

from engine.errors import InputError
from localize.annotations import MomentQuery
from localize.corpus_metrics import (
    evaluate_corpus,
    svmr_recall,
    vcmr_recall,
    videos_from_moments,
    vr_recall,
)


def q(qid: int, vid: str, *windows: tuple[float, float]) -> MomentQuery:
    return MomentQuery(qid, f"q{qid}", vid, 100.0, list(windows), [], [])


GT = [
    q(1, "A", (10, 20)),
    q(2, "B", (0, 10)),
    q(3, "C", (30, 40)),
    q(4, "D", (0, 10), (50, 60)),
]
MOMENTS = {
    # Right window in the wrong video first, then IoU 0.8 and 1.0 in the right one.
    1: [("B", 10, 20, 0.9), ("A", 12, 20, 0.8), ("A", 10, 20, 0.7)],
    2: [("B", 0, 6, 0.5)],  # IoU 0.6
    3: [],
    4: [("D", 50, 60, 0.4)],  # the second GT window
}


def test_vcmr() -> None:
    m = vcmr_recall(GT, MOMENTS)
    assert list(m) == [f"{t}-r{k}" for t in (0.5, 0.7) for k in (1, 5, 10, 100)]
    assert m["0.5-r1"] == 50.0  # q2, q4
    assert m["0.5-r5"] == 75.0  # + q1
    assert m["0.7-r1"] == 25.0  # q4
    assert m["0.7-r5"] == 50.0  # q1, q4
    assert m["0.7-r100"] == 50.0


def test_svmr_skips_other_videos() -> None:
    m = svmr_recall(GT, MOMENTS)
    assert m["0.5-r1"] == 75.0  # q1 (its first in-video moment), q2, q4
    assert m["0.7-r1"] == 50.0  # q1, q4


def test_vr() -> None:
    videos = videos_from_moments(MOMENTS)
    assert videos == {1: ["B", "A"], 2: ["B"], 3: [], 4: ["D"]}
    m = vr_recall(GT, videos, ks=(1, 5))
    assert m == {"r1": 50.0, "r5": 75.0}


def test_evaluate_corpus_blocks() -> None:
    m = evaluate_corpus(GT, moments=MOMENTS)
    assert list(m) == ["VCMR", "SVMR", "VR"]
    assert m["VR"]["r1"] == 50.0
    only_videos = evaluate_corpus(GT, videos={1: ["A"], 2: ["A", "B"], 3: ["C"], 4: []})
    assert list(only_videos) == ["VR"]
    assert only_videos["VR"]["r1"] == 50.0 and only_videos["VR"]["r5"] == 75.0


def test_iou_exactly_at_threshold_counts() -> None:
    gt = [q(1, "A", (10, 20))]
    assert vcmr_recall(gt, {1: [("A", 13, 20)]})["0.7-r1"] == 100.0  # IoU 0.7
    assert vcmr_recall(gt, {1: [("A", 13.1, 20)]})["0.7-r1"] == 0.0


def test_only_first_100_predictions_count() -> None:
    gt = [q(1, "A", (10, 20))]
    wrong = [("Z", 10, 20)] * 100
    assert vcmr_recall(gt, {1: [*wrong, ("A", 10, 20)]})["0.5-r100"] == 0.0
    assert vcmr_recall(gt, {1: [*wrong[:99], ("A", 10, 20)]})["0.5-r100"] == 100.0
    assert vr_recall(gt, {1: ["Z"] * 100 + ["A"]})["r100"] == 0.0


def test_rounding_two_decimals() -> None:
    gt = [q(i, "A", (0, 10)) for i in range(3)]
    m = vcmr_recall(gt, {0: [("A", 0, 10)], 1: [], 2: []})
    assert m["0.5-r1"] == 33.33


def test_errors() -> None:
    with pytest.raises(InputError, match="same qids"):
        vcmr_recall(GT, {1: []})
    with pytest.raises(InputError, match=r"\(video_id, start_s, end_s"):
        vcmr_recall([q(1, "A", (0, 1))], {1: [("A", 0)]})
    with pytest.raises(InputError, match="nothing to evaluate"):
        evaluate_corpus(GT)
    with pytest.raises(InputError, match="no queries"):
        vr_recall([], {})
