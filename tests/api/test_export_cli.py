"""`vtr export features` writes the stored features in the Moment-DETR npz layout."""

from pathlib import Path

import numpy as np
import pytest

from api.cli.app import main
from engine.config import load_settings
from index.catalog import Catalog
from index.ingest import FeatureVideo, ingest_features


def test_export_round_trips_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text("")
    settings = load_settings(config)
    catalog = Catalog.initialise(settings.catalog_url)
    catalog.create_collection("c", "features-8")
    rng = np.random.default_rng(0)
    clips = {}
    for name in ("a", "b"):
        x = rng.standard_normal((5, 8)).astype(np.float32)
        clips[name] = x / np.linalg.norm(x, axis=1, keepdims=True)
    ingest_features(
        catalog, settings, "c", [FeatureVideo(f"/v/{n}.mp4", x, 10.0) for n, x in clips.items()]
    )
    out = tmp_path / "npz"
    assert main(["--config", str(config), "export", "features", "-c", "c", "--out", str(out)]) == 0
    assert "wrote 2 feature files" in capsys.readouterr().out
    for name, x in clips.items():
        stored = np.load(out / f"{name}.npz")["features"]
        np.testing.assert_allclose(stored, x.astype(np.float16).astype(np.float32))
    assert (
        main(["--config", str(config), "export", "features", "-c", "nope", "--out", str(out)]) == 1
    )
