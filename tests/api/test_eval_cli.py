"""`vtr eval moments` end to end: table, --json (reference layout), one-line errors."""

import json
import re
from pathlib import Path

import pytest

from api.cli.app import main

DATA = Path(__file__).parents[1] / "localize" / "data"
GT = DATA / "qvh_train_excerpt.jsonl"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_equals_reference_eval(capsys: pytest.CaptureFixture[str]) -> None:
    pred = DATA / "qvh_pred_noisy.jsonl"
    code, out, err = run(capsys, "eval", "moments", "--gt", str(GT), "--pred", str(pred), "--json")
    assert code == 0, err
    metrics = json.loads(out)
    reference = json.loads((DATA / "qvh_pred_noisy.moment_detr_eval.json").read_text())
    assert list(metrics) == list(reference)
    for key, value in reference["brief"].items():
        assert metrics["brief"][key] == value
    assert metrics["full"]["MR-mAP"] == reference["full"]["MR-mAP"]
    assert metrics["HL-min-VeryGood"] == reference["HL-min-VeryGood"]


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    pred = DATA / "qvh_pred_perfect.jsonl"
    code, out, _ = run(capsys, "eval", "moments", "--gt", str(GT), "--pred", str(pred))
    assert code == 0
    assert "moment retrieval (150 queries, %)" in out
    assert "highlight detection" in out
    full_row = next(line for line in out.splitlines() if "full" in line)
    assert full_row.count("100.00") == 7


def test_charades_ground_truth(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gt = tmp_path / "c.txt"
    gt.write_text("AAA 0 10##a person sits.\nBBB 5 9##someone opens a door.\n")
    pred = tmp_path / "p.jsonl"
    pred.write_text(
        '{"qid": 0, "pred_relevant_windows": [[0, 10, 0.9]], "pred_saliency_scores": [1]}\n'
        '{"qid": 1, "pred_relevant_windows": [[20, 30, 0.9]], "pred_saliency_scores": [1]}\n'
    )
    args = ["eval", "moments", "--gt", str(gt), "--gt-format", "charades", "--pred", str(pred)]
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    assert json.loads(out)["brief"]["MR-full-R1@0.5"] == 50.0
    code, out, _ = run(capsys, *args)
    assert code == 0 and "highlight detection: not evaluated" in out


@pytest.mark.parametrize(
    ("pred_text", "message"),
    [
        ('{"qid": 9769, "pred_relevant_windows": [[0, 1]]}\n', r"p\.jsonl:1: .*3 numbers"),
        ("not json\n", r"p\.jsonl:1: not valid JSON"),
        ('{"qid": 1, "pred_relevant_windows": []}\n', "not in the ground truth: 1"),
    ],
)
def test_user_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pred_text: str, message: str
) -> None:
    pred = tmp_path / "p.jsonl"
    pred.write_text(pred_text)
    code, out, err = run(capsys, "eval", "moments", "--gt", str(GT), "--pred", str(pred))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: ")
    assert re.search(message, err)


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "none.jsonl"
    code, _, err = run(capsys, "eval", "moments", "--gt", str(GT), "--pred", str(missing))
    assert code == 1
    assert err.strip() == f"error: no such file: {missing}"
