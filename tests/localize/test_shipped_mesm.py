"""The MESM checkpoint shipped for `vtr-synth-s`: it fits the encoder and loads by default."""

import pytest
import torch

from engine.encoders import create_encoder
from localize.mesm.checkpoint import load_checkpoint
from localize.mesm.config import TEF_DIMS
from localize.mesm.inference import MesmLocalizer
from localize.registry import (
    LocalizerOptions,
    create_localizer,
    shipped_mesm_checkpoint,
    shipped_mesm_encoders,
)
from localize.windowing import WindowedLocalizer

ENCODER = "vtr-synth-s"


def test_the_shipped_checkpoint_matches_its_encoder() -> None:
    path = shipped_mesm_checkpoint(ENCODER)
    assert path is not None and shipped_mesm_encoders() == [ENCODER]
    assert path.stat().st_size < 30 * 2**20
    model, extra = load_checkpoint(path)
    encoder = create_encoder(ENCODER, "cpu")
    assert model.config.v_feat_dim == encoder.embed_dim + TEF_DIMS
    assert model.config.t_feat_dim == encoder.token_dim
    assert (model.config.hidden_dim, model.config.max_v_l, model.config.clip_seconds) == (
        128,
        75,
        2.0,
    )
    # the best epoch of the documented run (localize/models/README.md)
    assert extra["epoch"] == 63 and extra["train_config"]["seed"] == 0
    assert extra["val_brief"]["MR-full-mAP"] == pytest.approx(18.38)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_localizer_mesm_defaults_to_the_shipped_checkpoint() -> None:
    windowed = create_localizer("mesm", LocalizerOptions(encoder=ENCODER, device="cpu"))
    assert isinstance(windowed, WindowedLocalizer) and windowed.max_clips == 75
    assert isinstance(windowed.inner, MesmLocalizer)
