"""Moment-DETR standalone-eval metrics: hand-computed cases and the reference's own output.

The `qvh_pred_*.moment_detr_eval.json` / `*.mesm_eval.json` fixtures were produced by
the official evaluation scripts on the committed prediction files (see data/README.md).
"""

import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import InputError
from localize.annotations import MomentQuery, load_predictions, load_qvhighlights
from localize.metrics import MAP_IOU_THRESHOLDS, R1_IOU_THRESHOLDS, evaluate_moments

DATA = Path(__file__).parent / "data"
MESM_ONLY_BRIEF = ("MR-full-R1@0.3", "MR-full-miou")


def gt_query(qid: int, windows: list[tuple[float, float]], **kw: Any) -> MomentQuery:
    return MomentQuery(
        qid=qid,
        query=f"query {qid}",
        vid=f"v{qid}",
        duration_s=kw.get("duration_s", 150.0),
        windows=windows,
        relevant_clip_ids=kw.get("clip_ids", []),
        saliency_scores=kw.get("saliency", []),
    )


def pred(qid: int, windows: list[list[float]], saliency: list[float] | None = None) -> dict:
    row: dict[str, Any] = {"qid": qid, "query": "", "vid": "", "pred_relevant_windows": windows}
    if saliency is not None:
        row["pred_saliency_scores"] = saliency
    return row


def strip_mesm_extras(metrics: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(metrics))
    for key in MESM_ONLY_BRIEF:
        del out["brief"][key]
    for bucket in ("short", "middle", "long", "full"):
        del out[bucket]["MR-R1"]["0.3"]
        del out[bucket]["MR-R1"]["miou"]
    return out


# --- the reference's own numbers --------------------------------------------------------


@pytest.mark.parametrize("mode", ["perfect", "noisy", "grid"])
def test_equals_moment_detr_standalone_eval(mode: str) -> None:
    gt = load_qvhighlights(DATA / "qvh_train_excerpt.jsonl")
    ours = evaluate_moments(gt, load_predictions(DATA / f"qvh_pred_{mode}.jsonl"))
    reference = json.loads((DATA / f"qvh_pred_{mode}.moment_detr_eval.json").read_text())
    mine = strip_mesm_extras(ours)
    assert mine == reference
    # Same layout: key order of the top level, the brief and every block.
    assert list(mine) == list(reference)
    assert list(mine["brief"]) == list(reference["brief"])
    for key, block in reference.items():
        assert list(mine[key]) == list(block)
        for sub, values in block.items():
            if isinstance(values, dict):
                assert list(mine[key][sub]) == list(values)


@pytest.mark.parametrize("mode", ["perfect", "noisy", "grid"])
def test_mesm_extras_equal_mesm_eval(mode: str) -> None:
    gt = load_qvhighlights(DATA / "qvh_train_excerpt.jsonl")
    ours = evaluate_moments(gt, load_predictions(DATA / f"qvh_pred_{mode}.jsonl"))
    reference = json.loads((DATA / f"qvh_pred_{mode}.mesm_eval.json").read_text())
    for bucket in ("short", "middle", "long", "full"):
        assert ours[bucket] == reference[bucket]
        assert list(ours[bucket]["MR-R1"]) == list(reference[bucket]["MR-R1"])
    mesm_brief = {k: v for k, v in reference["brief"].items() if k != "MR-superlong-mAP"}
    assert {k: ours["brief"][k] for k in mesm_brief} == mesm_brief
    assert list(ours["brief"])[: len(mesm_brief)] == list(mesm_brief)


def test_ground_truth_as_predictions_is_perfect() -> None:
    gt = load_qvhighlights(DATA / "qvh_train_excerpt.jsonl")
    metrics = evaluate_moments(gt, load_predictions(DATA / "qvh_pred_perfect.jsonl"))
    for key, value in metrics["brief"].items():
        if key.startswith("MR-full"):
            assert value == 100.0, key
    assert set(metrics["full"]["MR-mAP"].values()) == {100.0}
    assert set(metrics["full"]["MR-R1"].values()) == {100.0}
    # In a length bucket the query's windows of other lengths are false positives (as in
    # the reference), so only single-length queries stay perfect there.
    assert metrics["brief"]["MR-long-mAP"] < 100.0
    # Saliency = summed annotator scores: the top clip is always a Fair positive.
    assert metrics["brief"]["HL-min-Fair-Hit1"] == 100.0


def test_perturbed_predictions_are_worse() -> None:
    gt = load_qvhighlights(DATA / "qvh_train_excerpt.jsonl")
    noisy = evaluate_moments(gt, load_predictions(DATA / "qvh_pred_noisy.jsonl"))["brief"]
    assert 0.0 < noisy["MR-full-mAP"] < 100.0
    assert 0.0 < noisy["MR-full-R1@0.5"] < 100.0


# --- hand-computed cases ----------------------------------------------------------------


def test_exact_match_single_query() -> None:
    m = evaluate_moments([gt_query(1, [(0, 10)])], [pred(1, [[0, 10, 0.9]])])
    assert m["brief"]["MR-full-mAP"] == 100.0
    assert m["brief"]["MR-full-R1@0.7"] == 100.0
    assert m["brief"]["MR-full-miou"] == 100.0
    assert m["brief"]["MR-short-mAP"] == 100.0
    assert m["brief"]["MR-middle-mAP"] is None
    assert "middle" not in m and "long" not in m
    assert list(m) == ["brief", "full", "short"]
    # No pred_saliency_scores: no highlight metrics.
    assert not any(k.startswith("HL") for k in m["brief"])


def test_r1_thresholds_at_iou_08() -> None:
    # pred [0, 8] vs GT [0, 10]: IoU 0.8, a hit up to t = 0.8 inclusive.
    m = evaluate_moments([gt_query(1, [(0, 10)])], [pred(1, [[0, 8, 1.0]])])
    r1 = m["full"]["MR-R1"]
    assert list(r1) == [str(t) for t in R1_IOU_THRESHOLDS] + ["miou"]
    assert [r1[str(t)] for t in R1_IOU_THRESHOLDS] == [100.0] * 8 + [0.0] * 3
    assert r1["miou"] == 80.0
    ap = m["full"]["MR-mAP"]
    assert [ap[str(t)] for t in MAP_IOU_THRESHOLDS] == [100.0] * 7 + [0.0] * 3
    assert ap["average"] == 70.0


def test_r1_uses_first_listed_window_map_uses_scores() -> None:
    # The first listed window misses, but ranked by score the hit comes first.
    m = evaluate_moments([gt_query(1, [(0, 10)])], [pred(1, [[40, 50, 0.1], [0, 10, 0.9]])])
    assert m["brief"]["MR-full-R1@0.5"] == 0.0
    assert m["brief"]["MR-full-mAP"] == 100.0


def test_r1_picks_the_gt_window_overlapping_most() -> None:
    gt = [gt_query(1, [(0, 10), (50, 60), (100, 110)])]
    m = evaluate_moments(gt, [pred(1, [[50, 59, 1.0]])])
    assert m["brief"]["MR-full-R1@0.7"] == 100.0
    assert m["brief"]["MR-full-miou"] == 90.0


def test_multiple_gt_windows_one_to_one_matching() -> None:
    gt = [gt_query(1, [(0, 10), (20, 30)])]
    both = evaluate_moments(gt, [pred(1, [[0, 10, 0.9], [20, 30, 0.8]])])
    assert both["brief"]["MR-full-mAP"] == 100.0
    # A duplicate of the first window cannot match it again: tp, fp; recall 0.5.
    # Interpolated AP = 0.5 * 1 + 0.5 * 0 = 0.5.
    dup = evaluate_moments(gt, [pred(1, [[0, 10, 0.9], [0, 10, 0.8]])])
    assert dup["brief"]["MR-full-mAP"] == 50.0


def test_score_ties_keep_listed_order() -> None:
    gt = [gt_query(1, [(0, 10)])]
    hit_first = evaluate_moments(gt, [pred(1, [[0, 10, 0.5], [40, 50, 0.5]])])
    assert hit_first["brief"]["MR-full-mAP"] == 100.0
    # fp then tp: precision [0, 0.5] at recall [0, 1] -> AP 0.5.
    hit_second = evaluate_moments(gt, [pred(1, [[40, 50, 0.5], [0, 10, 0.5]])])
    assert hit_second["brief"]["MR-full-mAP"] == 50.0


def test_only_top_10_predictions_count_for_map() -> None:
    gt = [gt_query(1, [(0, 10)])]
    misses = [[50.0 + i, 51.0 + i, 0.9] for i in range(10)]
    m = evaluate_moments(gt, [pred(1, [*misses, [0, 10, 0.1]])])
    assert m["brief"]["MR-full-mAP"] == 0.0
    m = evaluate_moments(gt, [pred(1, [*misses[:9], [0, 10, 0.1]])])
    assert m["brief"]["MR-full-mAP"] == 10.0  # tp at rank 10: precision 1/10


def test_empty_predictions_score_zero() -> None:
    gt = [gt_query(1, [(0, 10)]), gt_query(2, [(20, 30)])]
    m = evaluate_moments(gt, [pred(1, [[0, 10, 1.0]]), pred(2, [])])
    assert m["brief"]["MR-full-mAP"] == 50.0
    assert m["brief"]["MR-full-R1@0.5"] == 50.0
    assert m["brief"]["MR-full-miou"] == 50.0


def test_length_buckets() -> None:
    gt = [
        gt_query(1, [(0, 10)]),  # short: (0, 10]
        gt_query(2, [(0, 10.5), (20, 50)]),  # middle (10.5 and 30), no long
        gt_query(3, [(0, 100)]),  # long
    ]
    preds = [
        pred(1, [[0, 10, 1.0]]),
        pred(2, [[20, 50, 1.0]]),  # matches the second middle window only
        pred(3, [[0, 20, 1.0]]),  # miss
    ]
    m = evaluate_moments(gt, preds)
    assert m["brief"]["MR-short-mAP"] == 100.0
    # Middle: query 2 only, two windows, one matched -> AP 0.5.
    assert m["middle"]["MR-mAP"]["average"] == 50.0
    assert m["middle"]["MR-R1"]["0.5"] == 100.0
    assert m["brief"]["MR-long-mAP"] == 0.0
    # Full: APs 1, 0.5, 0 -> 50.
    assert m["brief"]["MR-full-mAP"] == 50.0
    assert m["brief"]["MR-full-R1@0.5"] == 66.67


def _hl_case(saliency: list[float]) -> dict[str, Any]:
    gt = [gt_query(1, [(2, 6)], duration_s=8.0, clip_ids=[1, 2], saliency=[[4, 2, 0], [2, 2, 2]])]
    return evaluate_moments(gt, [pred(1, [[2, 6, 1.0]], saliency)])


def test_highlight_metrics_hand_computed() -> None:
    m = _hl_case([0.1, 0.9, 0.5, 0.2])
    # Fair: annotators 0 and 1 have clips 1, 2 positive (AP 1); annotator 2 only clip 2,
    # ranked second (AP 0.5). Good/VeryGood: only annotator 0 has a positive (clip 1).
    assert m["HL-min-Fair"] == {"HL-mAP": 83.33, "HL-Hit1": 100.0}
    assert m["HL-min-Good"] == {"HL-mAP": 33.33, "HL-Hit1": 100.0}
    assert m["HL-min-VeryGood"] == {"HL-mAP": 33.33, "HL-Hit1": 100.0}
    assert list(m["brief"])[-6:] == [
        "HL-min-Fair-mAP",
        "HL-min-Fair-Hit1",
        "HL-min-Good-mAP",
        "HL-min-Good-Hit1",
        "HL-min-VeryGood-mAP",
        "HL-min-VeryGood-Hit1",
    ]
    assert m["brief"]["HL-min-Fair-mAP"] == 83.33


def test_highlight_ties_short_and_long_saliency() -> None:
    # Tied scores form one threshold: clips 1 and 3 (a negative) tie at the top.
    tied = _hl_case([0.0, 0.5, 0.1, 0.5])
    # Fair, annotator 0 (positives 1, 2): thresholds 0.5 -> p 1/2 r 1/2; 0.1 -> p 2/3 r 1;
    # interpolated: 2/3 at both recall levels -> AP 2/3. Same for annotator 1;
    # annotator 2 (positive 2): 0.5 -> p 0 r 0; 0.1 -> p 1/3 r 1 -> AP 1/3.
    assert tied["HL-min-Fair"]["HL-mAP"] == pytest.approx(
        100 * (2 / 3 + 2 / 3 + 1 / 3) / 3, abs=0.01
    )
    # argmax takes the first of the tied clips: clip 1.
    assert tied["HL-min-Fair"]["HL-Hit1"] == 100.0
    # Too short: padded with zeros; too long: cut. The top clip beyond the video misses.
    short = _hl_case([0.0, 0.9])
    assert short["HL-min-VeryGood"]["HL-Hit1"] == 100.0
    long = _hl_case([0.0, 0.1, 0.2, 0.3, 0.9])
    assert long["HL-min-Fair"]["HL-Hit1"] == 0.0


def test_highlight_skipped_without_gt_saliency() -> None:
    m = evaluate_moments([gt_query(1, [(0, 10)])], [pred(1, [[0, 10, 1.0]], [0.1] * 75)])
    assert not any(k.startswith("HL") for k in m)


@pytest.mark.parametrize(
    ("gt", "preds", "message"),
    [
        ([gt_query(1, [(0, 10)])], [pred(2, [[0, 1, 1]])], "not in the ground truth: 2"),
        (
            [gt_query(1, [(0, 10)]), gt_query(2, [(0, 10)])],
            [pred(1, [[0, 1, 1]])],
            "ground-truth qids have no prediction: 2",
        ),
        ([gt_query(1, [(0, 10)])], [pred(1, []), pred(1, [])], "duplicate qids"),
        ([gt_query(1, [])], [pred(1, [[0, 1, 1]])], "has no relevant_windows"),
        ([gt_query(1, [(0, 10)])], [pred(1, [[0, 1]])], r"\[start, end, score\]"),
        (
            [gt_query(1, [(0, 10)]), gt_query(2, [(0, 10)])],
            [pred(1, [[0, 1, 1]], [0.1]), pred(2, [[0, 1, 1]])],
            "only 1 of 2 predictions have pred_saliency_scores",
        ),
        (
            [gt_query(1, [(0, 4)], duration_s=4.0, clip_ids=[5], saliency=[[1, 1, 1]])],
            [pred(1, [[0, 1, 1]], [0.1, 0.2])],
            "outside the 2 clips",
        ),
        ([], [], "no queries"),
    ],
)
def test_errors(gt: list[MomentQuery], preds: list[dict], message: str) -> None:
    with pytest.raises(InputError, match=message):
        evaluate_moments(gt, preds)
