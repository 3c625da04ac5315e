"""Moment-retrieval annotation and prediction files: QVHighlights jsonl, Charades-STA txt.

Formats (as released with the datasets and Moment-DETR's standalone eval):
- QVHighlights annotations, one JSON object per line: `qid`, `query`, `vid`, `duration`
  (seconds), `relevant_windows` ([[start_s, end_s], ...]), `relevant_clip_ids` (indexes
  of 2 s clips) and `saliency_scores` (one [a1, a2, a3] triple of 0..4 scores per
  relevant clip). Test-split lines carry only `qid`, `query`, `vid`, `duration`.
- Charades-STA, one moment per line: `VID START END##sentence` (seconds). The format has
  no query ids, so qids are the 0-based line order; durations come from the caller.
- Predictions (QVHighlights submission format), one JSON object per line: `qid`,
  `query`, `vid`, `pred_relevant_windows` ([[start_s, end_s, score], ...], best first)
  and optionally `pred_saliency_scores` (one float per 2 s clip).

A malformed line raises `InputError` naming the file and the 1-based line number.

    queries = load_qvhighlights("highlight_val_release.jsonl")
    rows = load_predictions("predictions.jsonl")
"""

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError, NotFoundError


@dataclass(frozen=True)
class MomentQuery:
    """One query and its ground truth; empty lists where the format lacks a field."""

    qid: int | str
    query: str
    vid: str
    duration_s: float | None
    windows: list[tuple[float, float]]  # ground-truth moments, seconds
    relevant_clip_ids: list[int]  # 2 s clip indexes (QVHighlights)
    saliency_scores: list[list[int]]  # per relevant clip, one 0..4 score per annotator


class _LineError(ValueError):
    """A problem inside one line; turned into an InputError with file and line."""


def _read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of every non-blank line of `path`."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"no such file: {p}")
    try:
        with p.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                text = line.strip()
                if text:
                    yield number, text
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not UTF-8 text ({e.reason})") from e
    except OSError as e:
        raise InputError(f"cannot read {p}: {e.strerror or e}") from e


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _LineError(f"{what} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise _LineError(f"{what} must be finite, got {value!r}")
    return x


def _qid(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _LineError(f"'qid' must be an integer or a string, got {value!r}")
    return value


def _string(obj: Mapping[str, Any], key: str, required: bool = True) -> str:
    if key not in obj:
        if required:
            raise _LineError(f"missing '{key}'")
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise _LineError(f"'{key}' must be a string, got {value!r}")
    return value


def _windows(value: Any, key: str, width: int) -> list[list[float]]:
    """A list of [start, end] (width 2) or [start, end, score] (width 3) numbers."""
    if not isinstance(value, list):
        raise _LineError(f"'{key}' must be a list of windows, got {value!r}")
    out = []
    for i, w in enumerate(value):
        if not isinstance(w, list | tuple) or len(w) != width:
            raise _LineError(f"'{key}'[{i}] must have {width} numbers, got {w!r}")
        nums = [_number(x, f"'{key}'[{i}]") for x in w]
        if nums[1] < nums[0]:
            raise _LineError(f"'{key}'[{i}] ends before it starts: {w!r}")
        out.append(nums)
    return out


def _int_list(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in value
    ):
        raise _LineError(f"'{key}' must be a list of integers")
    return list(value)


def _parse_json_object(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise _LineError(f"not valid JSON ({e.msg})") from e
    if not isinstance(obj, dict):
        raise _LineError("not a JSON object")
    return obj


def _parse_qvhighlights(obj: Mapping[str, Any]) -> MomentQuery:
    if "qid" not in obj:
        raise _LineError("missing 'qid'")
    duration = obj.get("duration")
    duration_s = None if duration is None else _number(duration, "'duration'")
    windows = _windows(obj.get("relevant_windows", []), "relevant_windows", 2)
    clip_ids = _int_list(obj.get("relevant_clip_ids", []), "relevant_clip_ids")
    raw_scores = obj.get("saliency_scores", [])
    if not isinstance(raw_scores, list):
        raise _LineError("'saliency_scores' must be a list of score lists")
    scores = [_int_list(s, "saliency_scores") for s in raw_scores]
    if len(scores) != len(clip_ids):
        raise _LineError(
            f"{len(clip_ids)} relevant_clip_ids but {len(scores)} saliency_scores entries"
        )
    return MomentQuery(
        qid=_qid(obj["qid"]),
        query=_string(obj, "query"),
        vid=_string(obj, "vid"),
        duration_s=duration_s,
        windows=[(w[0], w[1]) for w in windows],
        relevant_clip_ids=clip_ids,
        saliency_scores=scores,
    )


def load_qvhighlights(path: str | Path) -> list[MomentQuery]:
    """Queries of a QVHighlights-format jsonl file, in file order."""
    out = []
    for number, text in _read_lines(path):
        try:
            out.append(_parse_qvhighlights(_parse_json_object(text)))
        except _LineError as e:
            raise InputError(f"{path}:{number}: {e}") from e
    return out


def load_charades_sta(
    path: str | Path, durations: Mapping[str, float] | None = None
) -> list[MomentQuery]:
    """Queries of a Charades-STA txt file; qid = 0-based line order among non-blank lines.

    `durations` (video id -> seconds), when given, must cover every video of the file.
    """
    out: list[MomentQuery] = []
    for number, text in _read_lines(path):
        head, sep, sentence = text.partition("##")
        parts = head.split()
        if not sep or len(parts) != 3:
            raise InputError(f"{path}:{number}: expected 'VID START END##sentence', got {text!r}")
        vid = parts[0]
        try:
            start_s, end_s = float(parts[1]), float(parts[2])
        except ValueError as e:
            raise InputError(f"{path}:{number}: start/end are not numbers: {head!r}") from e
        if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s < start_s:
            raise InputError(f"{path}:{number}: bad window {start_s} .. {end_s}")
        duration_s: float | None = None
        if durations is not None:
            if vid not in durations:
                raise InputError(f"{path}:{number}: no duration given for video {vid!r}")
            duration_s = float(durations[vid])
        out.append(
            MomentQuery(
                qid=len(out),
                query=sentence.strip(),
                vid=vid,
                duration_s=duration_s,
                windows=[(start_s, end_s)],
                relevant_clip_ids=[],
                saliency_scores=[],
            )
        )
    return out


def query_to_dict(q: MomentQuery) -> dict[str, Any]:
    """The QVHighlights jsonl object of one query (fields it lacks are left out)."""
    obj: dict[str, Any] = {"qid": q.qid, "query": q.query, "vid": q.vid}
    if q.duration_s is not None:
        obj["duration"] = int(q.duration_s) if q.duration_s.is_integer() else q.duration_s
    if q.windows:
        obj["relevant_windows"] = [[_plain(s), _plain(e)] for s, e in q.windows]
    if q.relevant_clip_ids:
        obj["relevant_clip_ids"] = list(q.relevant_clip_ids)
        obj["saliency_scores"] = [list(s) for s in q.saliency_scores]
    return obj


def _plain(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def _write_jsonl(path: str | Path, objects: Iterable[Mapping[str, Any]]) -> None:
    p = Path(path)
    try:
        with p.open("w", encoding="utf-8") as f:
            for obj in objects:
                f.write(json.dumps(obj) + "\n")
    except OSError as e:
        raise InputError(f"cannot write {p}: {e.strerror or e}") from e


def write_qvhighlights(path: str | Path, queries: Iterable[MomentQuery]) -> None:
    """Write `queries` as a QVHighlights jsonl file (loadable by `load_qvhighlights`)."""
    _write_jsonl(path, (query_to_dict(q) for q in queries))


def _parse_prediction(obj: Mapping[str, Any]) -> dict[str, Any]:
    if "qid" not in obj:
        raise _LineError("missing 'qid'")
    if "pred_relevant_windows" not in obj:
        raise _LineError("missing 'pred_relevant_windows'")
    row: dict[str, Any] = {
        "qid": _qid(obj["qid"]),
        "query": _string(obj, "query", required=False),
        "vid": _string(obj, "vid", required=False),
        "pred_relevant_windows": _windows(obj["pred_relevant_windows"], "pred_relevant_windows", 3),
    }
    if "pred_saliency_scores" in obj:
        scores = obj["pred_saliency_scores"]
        if not isinstance(scores, list):
            raise _LineError("'pred_saliency_scores' must be a list of numbers")
        row["pred_saliency_scores"] = [_number(s, "'pred_saliency_scores'") for s in scores]
    return row


def load_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Prediction rows of a QVHighlights-format prediction jsonl, in file order.

    Each row is a dict with `qid`, `query`, `vid`, `pred_relevant_windows` (list of
    [start_s, end_s, score] floats) and, when present, `pred_saliency_scores`.
    """
    out = []
    seen: set[int | str] = set()
    for number, text in _read_lines(path):
        try:
            row = _parse_prediction(_parse_json_object(text))
        except _LineError as e:
            raise InputError(f"{path}:{number}: {e}") from e
        if row["qid"] in seen:
            raise InputError(f"{path}:{number}: duplicate qid {row['qid']!r}")
        seen.add(row["qid"])
        out.append(row)
    return out


def write_predictions(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write prediction rows (the dicts `load_predictions` returns) as jsonl."""
    _write_jsonl(path, rows)
