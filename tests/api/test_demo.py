"""`vtr demo`: the whole job end to end on a tiny generated corpus, with the shipped models."""

from pathlib import Path

import pytest

from api.cli.app import main
from api.cli.demo_command import TRAINED_ENCODER, UNTRAINED_ENCODER, _demo_settings
from engine.config import Settings


def test_demo_settings_pair_the_trained_encoder_with_its_heads(tmp_path: Path) -> None:
    trained = _demo_settings(Settings(), tmp_path, TRAINED_ENCODER)
    assert trained.encoder.name == TRAINED_ENCODER and trained.levels.strategy == "trained"
    assert trained.localizer.name == "spans"  # the best measured second stage
    assert trained.storage.data_dir == tmp_path.resolve() / "data"
    untrained = _demo_settings(Settings(), tmp_path, UNTRAINED_ENCODER)
    assert untrained.levels.strategy == "pooling" and untrained.localizer.name == "similarity"


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "demo"
    code = main(["demo", "--videos", "3", "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert code == 0
    assert f"encoder {TRAINED_ENCODER}" in out
    for step in ("[1/4] generated 3 videos", "[2/4] indexed 3 videos (0 failed)", "[3/4]", "[4/4]"):
        assert step in out
    assert "VCMR R@1" in out and (data_dir / "corpus" / "annotations.jsonl").is_file()
