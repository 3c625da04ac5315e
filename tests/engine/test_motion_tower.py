"""The motion image tower: frame pairs decoded at the right times, pair pixels the same in
training and ingest, a one-frame model that gains the motion input unchanged, and a brief
retrain that starts to use it."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.decode import iter_clips
from engine.encoder_checkpoint import read_checkpoint
from engine.encoders import (
    OPENAI_MEAN,
    OPENAI_STD,
    ImageTransform,
    encode_video_clips,
    motion_pixels,
    preprocess_frames,
)
from engine.errors import InputError
from engine.synth import generate_corpus
from engine.train_encoder.data import TrainingCorpus
from engine.train_encoder.model import EncoderConfig, load_trained_encoder, model_from_checkpoint
from engine.train_encoder.train import (
    SpanLayout,
    TrainConfig,
    image_transform,
    initial_model,
    train_encoder,
)

TINY = EncoderConfig(
    image_size=32,
    vision_width=8,
    text_width=32,
    text_layers=1,
    head_width=16,
    embed_dim=32,
)
GAP = 0.5


def _layout(clips: np.ndarray) -> dict[str, list[tuple[int, int]]]:
    n = len(clips)
    return {
        "action": [(s, min(n, s + 4)) for s in range(0, max(1, n - 2), 2)],
        "entity": [(0, n // 2), (n // 2, n)],
    }


LAYOUT = SpanLayout(_layout, {"action_window_clips": 4})
CONFIG = TrainConfig(
    epochs=1, head_epochs=1, batch_events=8, batch_videos=3, encoder=TINY, head_hidden=16
)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated videos of 20-30 s at 8 fps."""
    out = tmp_path_factory.mktemp("synth")
    generate_corpus(out, n_videos=3, seed=12, min_seconds=20, max_seconds=30, size=(64, 48))
    return out


@pytest.fixture(scope="module")
def one_frame_checkpoint(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("one-frame")
    corpus = TrainingCorpus.load(corpus_dir, image_transform(TINY), cache_dir=tmp)
    out = tmp / "one.pt"
    train_encoder(corpus, out, replace(CONFIG, device="cpu"), LAYOUT)
    return out


def test_pairs_are_decoded_a_gap_apart(corpus_dir: Path) -> None:
    video = sorted((corpus_dir / "videos").glob("*.mp4"))[0]
    single = list(iter_clips(video, 2.0, 1, 32))
    pairs = list(iter_clips(video, 2.0, 1, 32, motion_gap_s=GAP))
    assert len(pairs) == len(single)
    for one, two in zip(single, pairs, strict=True):
        assert two.frames.shape == (2, *one.frames.shape[1:])
        np.testing.assert_array_equal(two.frames[0], one.frames[0])  # the key frame is kept
        assert two.times_s[0] == one.times_s[0]
        assert two.times_s[1] == pytest.approx(min(one.times_s[0] + GAP, 2.0 * len(single)))
    # two frames per clip: each key frame with its own later frame, in time order
    four = next(iter(iter_clips(video, 2.0, 2, 32, motion_gap_s=GAP)))
    np.testing.assert_allclose(four.times_s, [0.5, 1.0, 1.5, 2.0])
    with pytest.raises(InputError, match="motion_gap_s"):
        next(iter(iter_clips(video, 2.0, 2, 32, motion_gap_s=1.0)))


def test_pair_pixels_are_the_frame_then_the_change() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 40, 50, 3), dtype=np.uint8)  # two pairs
    one = ImageTransform(32, OPENAI_MEAN, OPENAI_STD)
    pair = preprocess_frames(frames, replace(one, motion_gap_s=GAP))
    single = preprocess_frames(frames, one)
    assert pair.shape == (2, 6, 32, 32)
    torch.testing.assert_close(pair[:, :3], single[0::2])
    torch.testing.assert_close(pair[:, 3:], single[1::2] - single[0::2])
    with pytest.raises(InputError, match="in pairs"):
        motion_pixels(single[:3])


def test_a_one_frame_model_gains_motion_unchanged(
    one_frame_checkpoint: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    checkpoint = read_checkpoint(one_frame_checkpoint)
    before = model_from_checkpoint(checkpoint).eval()
    motion_config = replace(CONFIG, encoder=replace(TINY, motion_gap_s=GAP), device="cpu")
    after = initial_model(checkpoint, motion_config).eval()
    assert after.clip.visual.conv1.in_channels == 6
    corpus = TrainingCorpus.load(
        corpus_dir, image_transform(motion_config.encoder), cache_dir=tmp_path
    )
    rows = np.arange(12)
    pairs = corpus.pixels(rows)  # (12, 6, S, S)
    assert pairs[:, 3:].abs().amax() > 0  # something moves in these clips
    with torch.no_grad():
        torch.testing.assert_close(
            after.encode_images(pairs), before.encode_images(pairs[:, :3]), atol=1e-5, rtol=0
        )
    # a brief end-to-end retrain starts to read the change between the two frames
    out = tmp_path / "motion.pt"
    result = train_encoder(corpus, out, replace(motion_config, lr=1e-3), LAYOUT, init=checkpoint)
    assert [h["stage"] for h in result.history] == ["encoder", "heads"]
    stored = read_checkpoint(out)
    assert stored["image"]["motion_gap_s"] == GAP
    assert stored["encoder_config"]["motion_gap_s"] == GAP
    assert stored["state_dict"]["visual.conv1.weight"][:, 3:].abs().amax() > 0
    with pytest.raises(InputError, match="differs"):  # a motion model cannot lose it
        initial_model(stored, replace(CONFIG, device="cpu"))


def test_ingest_encodes_pairs_as_training_saw_them(
    one_frame_checkpoint: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    motion_config = replace(CONFIG, encoder=replace(TINY, motion_gap_s=GAP), device="cpu")
    corpus = TrainingCorpus.load(
        corpus_dir, image_transform(motion_config.encoder), cache_dir=tmp_path
    )
    out = tmp_path / "motion.pt"
    train_encoder(
        corpus,
        out,
        replace(motion_config, epochs=1, head_epochs=0),
        LAYOUT,
        init=read_checkpoint(one_frame_checkpoint),
    )
    assert (tmp_path / "clips-32px-motion500ms.npy").is_file()  # beside a one-frame cache
    encoder = load_trained_encoder(out, "cpu")
    assert encoder.motion_gap_s == GAP and encoder.transform == corpus.transform
    video = corpus.plans[0].videos[0]
    path = corpus_dir / "videos" / f"{video.vid}.mp4"
    clips = iter_clips(path, 2.0, 1, encoder.image_size, motion_gap_s=encoder.motion_gap_s)
    ingested = encode_video_clips(encoder, clips, batch_size=5)
    first, end = corpus.caches[0].offsets[video.vid]
    trained = encoder.encode_images(corpus.pixels(np.arange(first, end)))
    np.testing.assert_allclose(ingested, trained, atol=1e-5)
    with pytest.raises(InputError, match="pixels must be"):
        encoder.encode_images(corpus.pixels(np.arange(first, end))[:, :3])


def test_cli_adds_motion_to_a_one_frame_model(
    one_frame_checkpoint: Path, corpus_dir: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from api.cli.app import app

    out = tmp_path / "cli.pt"
    args = ["train", "encoder", "--data", str(corpus_dir), "--out", str(out), "--device", "cpu"]
    args += ["--epochs", "1", "--head-epochs", "0", "--init", str(one_frame_checkpoint)]
    result = CliRunner().invoke(app, [*args, "--motion-gap", "0.25", "--json"])
    assert result.exit_code == 0, result.output
    stored = read_checkpoint(out)
    assert stored["image"]["motion_gap_s"] == 0.25 and stored["train_args"]["init"]
    again = ["train", "encoder", "--data", str(corpus_dir), "--out", str(tmp_path / "x.pt")]
    again += ["--init", str(out), "--epochs", "0", "--head-epochs", "1"]
    bad = CliRunner().invoke(app, [*again, "--motion-gap", "0.5"])
    assert isinstance(bad.exception, InputError) and "0.25 s apart" in str(bad.exception)
