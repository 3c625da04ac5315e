"""`vtr synth` end to end: real videos, loadable annotations, --json summary, errors."""

import json
from pathlib import Path

import av
import pytest

from api.cli.app import main
from engine.synth import phrasing
from localize.annotations import load_qvhighlights


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def synth_args(out: Path, *extra: str) -> list[str]:
    return [
        "synth",
        "--videos",
        "3",
        "--out",
        str(out),
        "--seed",
        "3",
        "--min-seconds",
        "10",
        "--max-seconds",
        "16",
        *extra,
    ]


def test_json_run_writes_a_corpus(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    code, stdout, err = run(capsys, *synth_args(out, "--json"))
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["n_videos"] == 3 and summary["seed"] == 3
    assert summary["seconds_per_video_minute"] > 0
    assert Path(summary["annotations"]) == out / "annotations.jsonl"
    queries = load_qvhighlights(out / "annotations.jsonl")
    assert len(queries) == summary["n_queries"] >= 3
    durations = {v["vid"]: v["duration_s"] for v in summary["videos"]}
    for video in summary["videos"]:
        path = Path(video["path"])
        assert path == out / "videos" / f"{video['vid']}.mp4"
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (128, 96)
            assert (container.duration or 0) / 1e6 == pytest.approx(video["duration_s"], abs=0.01)
            assert sum(1 for _ in container.decode(video=0)) == round(video["duration_s"] * 8)
    for q in queries:
        assert q.duration_s == durations[q.vid]
        assert q.query and q.windows and q.relevant_clip_ids
    assert json.loads((out / "world.json").read_text())["seed"] == 3


def test_same_seed_same_annotations_and_heldout_wording(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name, extra in (("a", ()), ("b", ()), ("held", ("--heldout-phrasing",))):
        code, _, err = run(capsys, *synth_args(tmp_path / name, *extra))
        assert code == 0, err
    a, b = ((tmp_path / n / "annotations.jsonl").read_bytes() for n in ("a", "b"))
    assert a == b
    assert sorted(p.read_bytes() for p in (tmp_path / "a" / "videos").iterdir()) == sorted(
        p.read_bytes() for p in (tmp_path / "b" / "videos").iterdir()
    )
    held = load_qvhighlights(tmp_path / "held" / "annotations.jsonl")
    base = load_qvhighlights(tmp_path / "a" / "annotations.jsonl")
    assert [q.windows for q in held] == [q.windows for q in base]
    stems = [t.split("{subject}")[0] for t in phrasing.HELDOUT_TEMPLATES]
    assert all(any(q.query.startswith(s) for s in stems) for q in held)


def test_human_output_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "c"
    code, stdout, err = run(capsys, *synth_args(out, "--size", "96x64"))
    assert code == 0, err
    assert "wrote 3 videos" in stdout and "per video-minute" in stdout
    code, _, err = run(capsys, *synth_args(out))
    assert code == 1 and "already holds a synthetic corpus" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, *synth_args(out, "--overwrite", "--size", "128by96"))
    assert code == 1 and "--size must look like 128x96" in err
    code, _, err = run(capsys, *synth_args(tmp_path / "d", "--min-seconds", "30"))
    assert code == 1 and "video lengths" in err
