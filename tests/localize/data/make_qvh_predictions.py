"""Regenerate the seeded prediction fixtures `qvh_pred_{perfect,noisy,grid}.jsonl`.

    python tests/localize/data/make_qvh_predictions.py

perfect: the GT windows themselves, saliency = the annotators' summed score.
noisy: 0-14 windows per query (jittered GT windows and random ones, 4-decimal floats),
  listed in random score order, saliency lists of varying length.
grid: 1-12 windows snapped to 2 s, scores with one decimal (many ties).
"""

import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
MODES = {"perfect": 0, "noisy": 1, "grid": 2}  # mode -> seed


def _window(rng: random.Random, gt: dict[str, Any], grid: bool) -> list[float]:
    duration = gt["duration"]
    if rng.random() < 0.6:
        start, end = rng.choice(gt["relevant_windows"])
        jitter = 2 if grid else 8
        start += rng.uniform(-jitter, jitter)
        end += rng.uniform(-jitter, jitter)
    else:
        start = rng.uniform(0, duration)
        end = start + rng.uniform(0, 40)
    if grid:
        start, end = round(start / 2) * 2, round(end / 2) * 2
    start, end = sorted((max(0, min(start, duration)), max(0, min(end, duration))))
    score = round(rng.random(), 1 if grid else 4)
    return [round(start, 4), round(end, 4), score]


def _saliency(rng: random.Random, gt: dict[str, Any], grid: bool) -> list[float]:
    count = int(gt["duration"] / 2) + rng.choice([0, 0, 0, -3, 2])
    scores = [round(rng.gauss(0, 1), 1 if grid else 4) for _ in range(count)]
    for clip, annotations in zip(gt["relevant_clip_ids"], gt["saliency_scores"], strict=True):
        if clip < count and rng.random() < 0.7:
            scores[clip] = round(scores[clip] + sum(annotations) / 4, 4)
    return scores


def predictions(gt_rows: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    rng = random.Random(MODES[mode])
    rows = []
    for gt in gt_rows:
        if mode == "perfect":
            windows = [
                [s, e, round(1.0 - 0.05 * i, 4)] for i, (s, e) in enumerate(gt["relevant_windows"])
            ]
            saliency = [0.0] * int(gt["duration"] / 2)
            for clip, annotations in zip(
                gt["relevant_clip_ids"], gt["saliency_scores"], strict=True
            ):
                saliency[clip] = float(sum(annotations))
        else:
            grid = mode == "grid"
            count = rng.randint(1, 12) if grid else rng.randint(0, 14)
            windows = [_window(rng, gt, grid) for _ in range(count)] or [[0.0, 2.0, 0.5]]
            saliency = _saliency(rng, gt, grid)
        rows.append(
            {
                "qid": gt["qid"],
                "query": gt["query"],
                "vid": gt["vid"],
                "pred_relevant_windows": windows,
                "pred_saliency_scores": saliency,
            }
        )
    return rows


def main() -> None:
    lines = (HERE / "qvh_train_excerpt.jsonl").read_text().splitlines()
    gt_rows = [json.loads(line) for line in lines]
    for mode in MODES:
        rows = predictions(gt_rows, mode)
        text = "".join(json.dumps(row) + "\n" for row in rows)
        (HERE / f"qvh_pred_{mode}.jsonl").write_text(text)


if __name__ == "__main__":
    main()
