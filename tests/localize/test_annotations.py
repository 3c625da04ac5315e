"""Annotation and prediction file formats: real excerpts, round trips, malformed lines."""

import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import InputError, NotFoundError
from localize.annotations import (
    MomentQuery,
    load_charades_sta,
    load_predictions,
    load_qvhighlights,
    write_predictions,
    write_qvhighlights,
)

DATA = Path(__file__).parent / "data"
QVH = DATA / "qvh_train_excerpt.jsonl"
CHARADES = DATA / "charades_sta_train_excerpt.txt"


def test_qvhighlights_excerpt_loads_every_field() -> None:
    queries = load_qvhighlights(QVH)
    assert len(queries) == 150
    first = queries[0]
    assert first.qid == 9769
    assert first.vid == "j7rJstUseKg_360.0_510.0"
    assert first.duration_s == 150.0
    assert first.query.startswith("some military patriots")
    assert first.windows[0] == (72.0, 82.0)
    assert len(first.windows) == 7
    assert first.relevant_clip_ids[:3] == [36, 37, 38]
    assert first.saliency_scores[0] == [4, 3, 2]
    for q in queries:
        assert len(q.relevant_clip_ids) == len(q.saliency_scores)
        assert all(len(s) == 3 for s in q.saliency_scores)
        assert q.duration_s is not None
        assert all(0 <= s <= e <= q.duration_s for s, e in q.windows)


def test_qvhighlights_round_trip(tmp_path: Path) -> None:
    queries = load_qvhighlights(QVH)
    out = tmp_path / "copy.jsonl"
    write_qvhighlights(out, queries)
    assert load_qvhighlights(out) == queries
    # Integer-valued fields are written as integers, as in the release.
    original = [json.loads(line) for line in QVH.read_text().splitlines()]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == original


def test_qvhighlights_test_split_lines_have_empty_lists(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text('{"qid": 1, "query": "a dog", "duration": 150, "vid": "v1"}\n\n')
    (q,) = load_qvhighlights(path)
    assert q == MomentQuery(1, "a dog", "v1", 150.0, [], [], [])


def test_charades_sta_excerpt() -> None:
    queries = load_charades_sta(CHARADES)
    assert len(queries) == 150
    assert [q.qid for q in queries[:3]] == [0, 1, 2]
    assert queries[0] == MomentQuery(
        0, "a person is putting a book on a shelf.", "AO8RW", None, [(0.0, 6.9)], [], []
    )
    assert queries[1].windows == [(20.8, 30.0)]


def test_charades_sta_durations(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("AAA 1.5 4.0##a person sits.\nBBB 0 2##someone opens a door.\n")
    queries = load_charades_sta(path, {"AAA": 30.0, "BBB": 12.5})
    assert [q.duration_s for q in queries] == [30.0, 12.5]
    with pytest.raises(InputError, match=r"c\.txt:2: no duration given for video 'BBB'"):
        load_charades_sta(path, {"AAA": 30.0})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("AAA 1.5##x", "expected 'VID START END##sentence'"),
        ("AAA 1.5 4.0 a person", "expected 'VID START END##sentence'"),
        ("AAA one 4.0##x", "not numbers"),
        ("AAA 5 4.0##x", "bad window"),
    ],
)
def test_charades_sta_malformed(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(f"AAA 0 1##fine.\n{line}\n")
    with pytest.raises(InputError, match=rf"bad\.txt:2: .*{message}"):
        load_charades_sta(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"query": "x", "vid": "v"}', "missing 'qid'"),
        ('{"qid": 1, "query": "x", "vid": "v", "relevant_windows": [[1]]}', "2 numbers"),
        ('{"qid": 1, "query": "x", "vid": "v", "relevant_windows": [[3, 1]]}', "ends before"),
        ('{"qid": 1, "query": "x", "vid": "v", "duration": "long"}', "must be a number"),
        (
            '{"qid": 1, "query": "x", "vid": "v", "relevant_clip_ids": [1, 2], '
            '"saliency_scores": [[1, 1, 1]]}',
            "2 relevant_clip_ids but 1 saliency_scores",
        ),
        ('{"qid": true, "query": "x", "vid": "v"}', "'qid' must be"),
        ('{"qid": 1, "vid": "v"}', "missing 'query'"),
    ],
)
def test_qvhighlights_malformed(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"qid": 0, "query": "ok", "vid": "v"}\n' + line + "\n")
    with pytest.raises(InputError, match=rf"bad\.jsonl:2: .*{message}"):
        load_qvhighlights(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        load_qvhighlights(tmp_path / "absent.jsonl")


def test_predictions_round_trip(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {
            "qid": 7,
            "query": "q",
            "vid": "v",
            "pred_relevant_windows": [[0.0, 4.0, 0.9], [2.0, 10.0, 0.5]],
            "pred_saliency_scores": [0.1, 0.7, -0.2],
        },
        {"qid": "a", "query": "", "vid": "w", "pred_relevant_windows": []},
    ]
    path = tmp_path / "pred.jsonl"
    write_predictions(path, rows)
    assert load_predictions(path) == rows


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"qid": 1}', "missing 'pred_relevant_windows'"),
        ('{"qid": 1, "pred_relevant_windows": [[0, 1]]}', "must have 3 numbers"),
        ('{"qid": 1, "pred_relevant_windows": [[0, 1, "hi"]]}', "must be a number"),
        ('{"qid": 1, "pred_relevant_windows": [[0, 1, NaN]]}', "must be finite"),
        ('{"qid": 1, "pred_relevant_windows": [], "pred_saliency_scores": 3}', "list of"),
        ('{"qid": 0, "pred_relevant_windows": []}', "duplicate qid 0"),
    ],
)
def test_predictions_malformed(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "pred.jsonl"
    path.write_text('{"qid": 0, "pred_relevant_windows": [[0, 2, 1.0]]}\n' + line + "\n")
    with pytest.raises(InputError, match=rf"pred\.jsonl:2: .*{message}"):
        load_predictions(path)
