"""The MESM checkpoint shipped for `vtr-synth-s`: it fits the encoder and loads by default."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.encoder_registry import resolve_encoder
from engine.encoders import create_encoder
from engine.errors import ConfigError
from localize import registry
from localize.mesm.checkpoint import load_checkpoint
from localize.mesm.config import TEF_DIMS
from localize.mesm.inference import MesmLocalizer
from localize.registry import (
    LocalizerOptions,
    check_shipped_features,
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


def test_the_shipped_mesm_is_checked_against_its_encoders_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_shipped_features(ENCODER)  # the shipped pair fits
    shipped = Path(resolve_encoder(ENCODER).weights)
    retrained = tmp_path / "vtr-synth-s.pt"  # the same name, other weights
    retrained.write_bytes(shipped.read_bytes() + b"\0")
    spec = replace(resolve_encoder(ENCODER), weights=str(retrained))
    monkeypatch.setattr(registry, "resolve_encoder", lambda name: spec)
    with pytest.raises(ConfigError, match="trained on the features of other"):
        create_localizer("mesm", LocalizerOptions(encoder=ENCODER, device="cpu"))
    # an explicit checkpoint is the user's choice: no check
    explicit = str(shipped_mesm_checkpoint(ENCODER))
    create_localizer("mesm", LocalizerOptions(checkpoint=explicit, encoder=ENCODER, device="cpu"))
    retrained.unlink()
    with pytest.raises(ConfigError, match="weights of encoder 'vtr-synth-s' are missing"):
        check_shipped_features(ENCODER)
