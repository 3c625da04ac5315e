"""MESM checkpoints: official files (config inference, key errors) and our own (round trip).

The official-format files are built here the way the official training script saves
them ({"model", "optimizer", "lr_scheduler", "epoch", "opt": argparse.Namespace}), with
the weights of the golden fixture described in test_mesm_model.py.
"""

import argparse
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from engine.errors import ModelError
from localize.mesm.checkpoint import (
    infer_config,
    load_checkpoint,
    load_model,
    load_official,
    save_checkpoint,
)
from localize.mesm.config import MesmConfig, preset
from localize.mesm.model import build_model

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread avoids OpenMP stalls on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(DATA / "mesm_golden_tiny.pt", weights_only=True)


def _official_opt(**changes: object) -> argparse.Namespace:
    values = {
        "dataset_name": "qvhighlights",
        "nheads": 4,
        "dropout": 0.1,
        "input_dropout": 0.5,
        "max_video_l": 12,
        "clip_len": 2,
        "use_tef": True,
        "v_feat_dim": 20,
        "hidden_dim": 16,
    }
    values.update(changes)
    return argparse.Namespace(**values)


def _write_official(path: Path, state: dict, opt: argparse.Namespace | None) -> Path:
    checkpoint: dict = {"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 7}
    if opt is not None:
        checkpoint["opt"] = opt
    torch.save(checkpoint, path)
    return path


def _shapes_from_spec() -> dict[str, torch.Tensor]:
    state = {}
    for line in (DATA / "mesm_qvh_state_dict.txt").read_text().splitlines():
        match = re.fullmatch(r"(\S+) \(([\d, ]*)\) (\w+)", line)
        if match:
            shape = tuple(int(x) for x in match[2].replace(" ", "").split(",") if x)
            state[match[1]] = torch.empty(shape)
    return state


def _golden_outputs(model: torch.nn.Module, golden: dict) -> dict:
    inp = golden["inputs"]
    with torch.no_grad():
        return model(
            inp["video_feat"],
            inp["video_mask"],
            inp["words_feat"],
            inp["words_mask"],
            inp["num_clips"],
            neg_index=golden["outputs"]["group"]["neg_index"],
        )


def test_load_official_infers_the_config_and_reproduces_outputs(
    golden: dict, tmp_path: Path
) -> None:
    state = dict(golden["state_dict"])
    state["text_encoder.token_embedding.weight"] = torch.zeros(3, 4)  # dropped on load
    path = _write_official(tmp_path / "best.ckpt", state, _official_opt())
    model = load_official(path)
    expected = MesmConfig(**golden["config"])
    cfg = model.config
    assert (cfg.hidden_dim, cfg.nheads, cfg.v_feat_dim, cfg.t_feat_dim) == (16, 4, 20, 24)
    assert (cfg.max_q_l, cfg.vocab_size, cfg.max_v_l, cfg.ss_video) == (8, 30, 12, "group")
    assert cfg.recon_layers == expected.recon_layers == 4
    assert cfg.clip_seconds == 2.0
    assert not model.training
    out = _golden_outputs(model, golden)
    want = golden["outputs"]["group"]
    torch.testing.assert_close(out["pred_spans"], want["pred_spans"], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out["pred_logits"], want["pred_logits"], atol=2e-5, rtol=1e-4)


def test_load_official_takes_a_given_config_and_a_bare_state_dict(
    golden: dict, tmp_path: Path
) -> None:
    path = tmp_path / "bare.pth"
    torch.save(golden["state_dict"], path)
    config = MesmConfig(**golden["config"])
    model = load_official(path, config)
    assert model.config == config
    assert load_model(path, config).config == config


def test_a_renamed_key_is_named_in_the_error(golden: dict, tmp_path: Path) -> None:
    state = dict(golden["state_dict"])
    state["class_embed.weights"] = state.pop("class_embed.weight")
    path = _write_official(tmp_path / "bad.ckpt", state, _official_opt())
    with pytest.raises(ModelError) as info:
        load_official(path)
    message = str(info.value)
    assert "missing keys: class_embed.weight" in message
    assert "unexpected keys: class_embed.weights" in message
    assert str(path) in message


def test_a_mis_shaped_key_is_named_with_both_shapes(golden: dict, tmp_path: Path) -> None:
    state = dict(golden["state_dict"])
    state["saliency_proj1.bias"] = torch.zeros(17)
    path = _write_official(tmp_path / "shape.ckpt", state, None)
    with pytest.raises(
        ModelError, match=r"saliency_proj1\.bias \(checkpoint \(17,\) vs model \(16,\)\)"
    ):
        load_official(path, MesmConfig(**golden["config"]))


def test_unreadable_and_missing_files_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_official(tmp_path / "absent.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        load_model(junk)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an official MESM checkpoint"):
        load_official(tmp_path / "other.pt")


def test_infer_config_recognises_the_official_layouts() -> None:
    qvh_state = _shapes_from_spec()
    qvh = infer_config(qvh_state)
    assert qvh.name == "qvhighlights-official"
    assert {**qvh.to_dict(), "name": ""} == {**preset("qvhighlights").to_dict(), "name": ""}
    charades_state = dict(qvh_state)
    charades_state["txt_position_embed.position_embeddings.weight"] = torch.empty(17, 256)
    charades_state["output_txt_proj.1.weight"] = torch.empty(1114, 256)
    charades_state["output_txt_proj.1.bias"] = torch.empty(1114)
    charades = infer_config(charades_state)
    assert {**charades.to_dict(), "name": ""} == {**preset("charades").to_dict(), "name": ""}
    clip_state = dict(qvh_state)
    clip_state["input_vid_proj.0.LayerNorm.weight"] = torch.empty(514)
    clip_cfg = infer_config(clip_state, _official_opt(dataset_name="charades", max_video_l=40))
    assert (clip_cfg.v_feat_dim, clip_cfg.v_feat_splits) == (514, ())
    assert (clip_cfg.ss_video, clip_cfg.max_v_l, clip_cfg.nheads) == ("row", 40, 4)
    del clip_state["global_rep_token"]
    with pytest.raises(ModelError, match="hidden_dim"):
        infer_config(clip_state)


# ---------------------------------------------------------------------------- our own


def _tiny() -> MesmConfig:
    return MesmConfig(
        v_feat_dim=10, t_feat_dim=8, hidden_dim=16, nheads=4, dim_feedforward=24,
        max_v_l=12, max_q_l=6, vocab_size=11, v_feat_splits=(3, 5), name="tiny",
    )  # fmt: skip


def test_own_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_model(_tiny(), seed=3)
    path = tmp_path / "models" / "mesm.pt"
    save_checkpoint(path, model, {"epoch": 4, "metrics": {"mAP": 0.25}, "ema": torch.ones(2)})
    loaded, extra = load_checkpoint(path)
    assert loaded.config == model.config
    assert extra["epoch"] == 4
    assert extra["metrics"] == {"mAP": 0.25}
    assert torch.equal(extra["ema"], torch.ones(2))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert load_model(path).config == model.config
    assert sorted(os.listdir(path.parent)) == ["mesm.pt"]  # no temporary file left
    with pytest.raises(ModelError, match="differs"):
        load_model(path, preset("qvhighlights"))


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "mesm.pt"
    save_checkpoint(path, build_model(_tiny(), seed=1), {"epoch": 1})
    with pytest.raises((AttributeError, TypeError, RuntimeError)):
        save_checkpoint(path, build_model(_tiny(), seed=2), {"bad": lambda: None})
    _, extra = load_checkpoint(path)
    assert extra == {"epoch": 1}
    assert sorted(os.listdir(tmp_path)) == ["mesm.pt"]


def test_load_checkpoint_refuses_an_official_file(golden: dict, tmp_path: Path) -> None:
    path = _write_official(tmp_path / "official.ckpt", golden["state_dict"], _official_opt())
    with pytest.raises(ModelError, match="load_official"):
        load_checkpoint(path)
    assert load_model(path).config.nheads == 4
