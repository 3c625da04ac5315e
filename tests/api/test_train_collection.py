"""`vtr train localizer --collection`: MESM trains on a collection's stored features."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from api.cli.app import main
from engine.config import load_settings
from index.catalog import Catalog
from index.ingest import FeatureVideo, ingest_features
from localize.mesm.checkpoint import load_checkpoint


def test_trains_on_stored_features(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    config = tmp_path / "config.toml"
    config.write_text("")
    settings = load_settings(config)
    catalog = Catalog.initialise(settings.catalog_url)
    catalog.create_collection("c", "tiny-random")
    rng = np.random.default_rng(0)
    videos, rows = [], []
    for i in range(3):
        clips = rng.standard_normal((15, 8)).astype(np.float32)
        clips /= np.linalg.norm(clips, axis=1, keepdims=True)
        videos.append(FeatureVideo(f"/v/vid{i}.mp4", clips, 30.0))
        rows.append({
            "qid": i, "query": f"a red circle moves left {i}", "vid": f"vid{i}", "duration": 30,
            "relevant_windows": [[4, 10]], "relevant_clip_ids": [2, 3, 4],
            "saliency_scores": [[2, 3, 4]] * 3,
        })  # fmt: skip
    ingest_features(catalog, settings, "c", videos)
    annotations = tmp_path / "train.jsonl"
    annotations.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "mesm.pt"
    args = ["--config", str(config), "train", "localizer", "--train", str(annotations)]
    args += ["--collection", "c", "--text-encoder", "tiny-random", "--epochs", "1"]
    args += ["--config-preset", "qvhighlights-clip", "--device", "cpu", "--out", str(out), "--json"]
    assert main([*args, "--hidden-dim", "32"]) == 0
    model, _ = load_checkpoint(out)
    assert model.config.v_feat_dim == 8 + 2  # the stored width plus the two TEF dims
    assert model.config.t_feat_dim == 64  # tiny-random's text width
    assert (model.config.hidden_dim, model.config.dim_feedforward) == (32, 128)
    assert model.span_embed.layers[0].weight.shape == (32, 32)
    capsys.readouterr()
    both = [*args, "--features", str(tmp_path)]
    assert main(both) == 1
    assert "exactly one of --features and --collection" in capsys.readouterr().err
