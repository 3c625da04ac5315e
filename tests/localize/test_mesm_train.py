"""MESM training: a tiny model learns on generated data, deterministically, end to end."""

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import InputError
from localize.annotations import MomentQuery
from localize.features import InMemoryFeatureSource
from localize.mesm.checkpoint import load_checkpoint
from localize.mesm.config import MesmConfig, clip_only, preset
from localize.mesm.data import (
    EncoderTextSource,
    MesmDataset,
    WordVocab,
    clip_tokenizer,
    data_config,
    make_loader,
)
from localize.mesm.losses import MesmCriterion, criterion_preset
from localize.mesm.model import build_model
from localize.mesm.train import (
    EpochRecord,
    TrainConfig,
    evaluate,
    load_durations,
    load_queries,
    predict,
    resolve_device,
    train_localizer,
    train_step,
)

CLIPS, VIDEO_DIM, TEXT_DIM = 12, 8, 8
TOKENIZE = clip_tokenizer()
WORDS = ["red", "blue", "green", "square", "circle", "moves", "left", "right"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny matrices: one intra-op thread is many times faster on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config() -> MesmConfig:
    return replace(
        clip_only(VIDEO_DIM, preset("qvhighlights")),
        t_feat_dim=TEXT_DIM,
        hidden_dim=16,
        nheads=2,
        dim_feedforward=32,
        num_queries=4,
        max_v_l=CLIPS,
        vocab_size=8,
        name="tiny",
    )


def synthetic(
    n_videos: int, queries_per_video: int, seed: int
) -> tuple[list[MomentQuery], dict[str, np.ndarray]]:
    """Videos whose GT clips carry a query-specific bump; 2 s clips, QVH-style ids."""
    rng = np.random.default_rng(seed)
    queries, feats = [], {}
    for v in range(n_videos):
        video = rng.standard_normal((CLIPS, VIDEO_DIM)).astype(np.float32) * 0.3
        for k in range(queries_per_video):
            start = int(rng.integers(0, CLIPS - 4))
            end = start + int(rng.integers(2, 4))
            video[start:end, (v + k) % VIDEO_DIM] += 2.0
            text = f"{WORDS[(v + k) % 8]} {WORDS[(v * 3 + k) % 8]} moves"
            queries.append(
                MomentQuery(
                    f"{seed}-{v}-{k}",
                    text,
                    f"vid{seed}x{v}_0.0_{CLIPS * 2}.0",
                    CLIPS * 2.0,
                    [(start * 2.0, end * 2.0)],
                    list(range(start, end)),
                    [[2, 3, 4]] * (end - start),
                )
            )
        feats[f"vid{seed}x{v}_0.0_{CLIPS * 2}.0"] = video
    return queries, feats


def text_source() -> EncoderTextSource:
    def encode(text: str) -> np.ndarray:
        n = len(TOKENIZE(text)) + 2
        return (
            np.random.default_rng(sum(map(ord, text)))
            .standard_normal((n, TEXT_DIM))
            .astype(np.float32)
        )

    return EncoderTextSource(encode)


def dataset(
    queries: list[MomentQuery], feats: dict[str, np.ndarray], seed: int = 0, per_batch: int = 3
) -> MesmDataset:
    cfg = tiny_config()
    vocab = WordVocab.from_texts([q.query for q in queries], TOKENIZE, cfg.vocab_size, cfg.max_q_l)
    dcfg = data_config(cfg, videos_per_batch=per_batch, eval_videos_per_batch=4)
    return MesmDataset(
        queries, InMemoryFeatureSource(feats), text_source(), dcfg, vocab=vocab, seed=seed
    )


def run_steps(seed: int, epochs: int) -> list[float]:
    queries, feats = synthetic(6, 2, seed=1)
    ds = dataset(queries, feats, seed=seed)
    torch.manual_seed(seed)
    model = build_model(tiny_config(), seed=seed).train()
    criterion = MesmCriterion(criterion_preset("qvhighlights"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        for batch in make_loader(ds, shuffle=True, seed=seed):
            losses.append(
                train_step(model, criterion, optimizer, batch, 0.1, generator)["loss_overall"]
            )
    return losses


def test_loss_falls_over_a_few_dozen_steps() -> None:
    losses = run_steps(seed=0, epochs=12)  # 2 batches per epoch -> 24 steps
    assert len(losses) == 24
    assert all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])


def test_training_is_deterministic_under_a_seed() -> None:
    assert run_steps(seed=3, epochs=2) == run_steps(seed=3, epochs=2)


def test_single_video_batches_train() -> None:
    queries, feats = synthetic(1, 3, seed=2)
    ds = dataset(queries, feats)
    [batch] = list(make_loader(ds, shuffle=False))
    assert batch.num_clips.tolist() == [3]
    model = build_model(tiny_config(), seed=0).train()
    criterion = MesmCriterion(criterion_preset("qvhighlights"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    terms = train_step(model, criterion, optimizer, batch, 0.1, torch.Generator().manual_seed(0))
    assert np.isfinite(terms["loss_overall"]) and terms["loss_saliency"] > 0


def test_predictions_have_the_submission_format() -> None:
    queries, feats = synthetic(3, 2, seed=4)
    ds = dataset(queries, feats)
    rows = predict(build_model(tiny_config(), seed=0), ds, torch.device("cpu"))
    assert [r["qid"] for r in rows] == [q.qid for q in ds.queries]
    for row in rows:
        windows = row["pred_relevant_windows"]
        assert len(windows) == tiny_config().num_queries
        scores = [w[2] for w in windows]
        assert scores == sorted(scores, reverse=True)
        for start, end, _ in windows:
            assert 0 <= start <= end <= CLIPS * 2.0
            assert start % 2 == 0 and end % 2 == 0  # snapped to 2 s clips
        assert len(row["pred_saliency_scores"]) == CLIPS
    metrics, _ = evaluate(build_model(tiny_config(), seed=0), ds, torch.device("cpu"))
    assert 0.0 <= metrics["brief"]["MR-full-mAP"] <= 100.0


def test_train_localizer_keeps_best_checkpoint(tmp_path: Path) -> None:
    train_q, feats = synthetic(6, 2, seed=5)
    val_q, val_feats = synthetic(2, 2, seed=6)
    train_set = dataset(train_q, feats)
    val_set = dataset(val_q, val_feats)
    out = tmp_path / "mesm.ckpt"
    seen: list[EpochRecord] = []
    result = train_localizer(
        tiny_config(),
        train_set,
        val_set,
        out,
        TrainConfig(epochs=3, lr=1e-3, seed=0, device="cpu"),
        criterion_preset("qvhighlights"),
        on_epoch=seen.append,
    )
    assert out.is_file()
    assert [r.epoch for r in result.history] == [1, 2, 3] == [r.epoch for r in seen]
    scores = [float(r.val_brief["MR-full-mAP"] or 0) for r in result.history if r.val_brief]
    assert len(scores) == 3
    assert result.best_score == max(scores)
    assert scores[result.best_epoch - 1] == max(scores)
    model, extra = load_checkpoint(out)
    assert extra["epoch"] == result.best_epoch
    assert extra["val_brief"]["MR-full-mAP"] == result.best_score
    # the saved weights are the best epoch's: re-evaluating them gives its score
    metrics, _ = evaluate(model, val_set, torch.device("cpu"))
    assert metrics["brief"]["MR-full-mAP"] == result.best_score


def test_feature_width_mismatch_is_reported(tmp_path: Path) -> None:
    queries, feats = synthetic(2, 1, seed=7)
    ds = dataset(queries, feats)
    wrong = replace(tiny_config(), v_feat_dim=99)
    with pytest.raises(InputError, match="v_feat_dim=99"):
        train_localizer(
            wrong,
            ds,
            None,
            tmp_path / "x.ckpt",
            TrainConfig(epochs=1, device="cpu"),
            criterion_preset("qvhighlights"),
        )


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(InputError):
        resolve_device("tpu")


def test_annotation_and_duration_loading(tmp_path: Path) -> None:
    txt = tmp_path / "sta.txt"
    txt.write_text("AO8RW 0.0 6.9##a person is putting a book on a shelf.\n")
    csv_path = tmp_path / "Charades_v1_train.csv"
    csv_path.write_text("id,subject,length\nAO8RW,X,33.67\n")
    durations = load_durations(csv_path)
    assert durations == {"AO8RW": 33.67}
    [q] = load_queries(txt, "auto", durations)
    assert q.vid == "AO8RW" and q.duration_s == 33.67 and q.windows == [(0.0, 6.9)]
    json_path = tmp_path / "d.json"
    json_path.write_text('{"AO8RW": 30}')
    assert load_durations(json_path) == {"AO8RW": 30.0}
    with pytest.raises(InputError):
        load_queries(txt, "nope", durations)  # type: ignore[arg-type]


def test_cli_trains_from_official_layouts(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli.train_commands import train_app
    from localize.annotations import write_qvhighlights

    train_q, feats = synthetic(4, 2, seed=8)
    val_q, val_feats = synthetic(2, 1, seed=9)
    clip_dir, text_dir = tmp_path / "clip_features", tmp_path / "clip_text_features"
    clip_dir.mkdir()
    text_dir.mkdir()
    for vid, video in {**feats, **val_feats}.items():
        np.savez(clip_dir / f"{vid}.npz", features=video)
    encoder = text_source()
    for q in train_q + val_q:
        np.savez(text_dir / f"qid{q.qid}.npz", last_hidden_state=encoder.encode(q.query))
    write_qvhighlights(tmp_path / "train.jsonl", train_q)
    write_qvhighlights(tmp_path / "val.jsonl", val_q)
    out = tmp_path / "mesm.ckpt"
    args = [
        "localizer",
        "--train",
        str(tmp_path / "train.jsonl"),
        "--val",
        str(tmp_path / "val.jsonl"),
    ]
    args += ["--features", str(clip_dir), "--text-features", str(text_dir), "--out", str(out)]
    args += ["--config-preset", "qvhighlights", "--epochs", "1", "--device", "cpu", "--json"]
    result = CliRunner().invoke(train_app, args)
    # the official preset expects 2818-d C+SF features: a clear error, nothing written
    assert isinstance(result.exception, InputError)
    assert "v_feat_dim=2818" in str(result.exception)
    assert not out.exists()


def test_cli_trains_clip_only_preset(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli.train_commands import train_app
    from localize.annotations import write_qvhighlights

    train_q, _ = synthetic(3, 2, seed=10)
    val_q, _ = synthetic(2, 1, seed=11)
    rng = np.random.default_rng(0)
    clip_dir, text_dir = tmp_path / "clip_features", tmp_path / "clip_text_features"
    clip_dir.mkdir()
    text_dir.mkdir()
    for q in train_q + val_q:
        np.savez(clip_dir / f"{q.vid}.npz", features=rng.standard_normal((CLIPS, 512)))
        n = len(TOKENIZE(q.query)) + 2
        np.savez(text_dir / f"qid{q.qid}.npz", last_hidden_state=rng.standard_normal((n, 512)))
    write_qvhighlights(tmp_path / "train.jsonl", train_q)
    write_qvhighlights(tmp_path / "val.jsonl", val_q)
    out = tmp_path / "mesm.ckpt"
    args = [
        "localizer",
        "--train",
        str(tmp_path / "train.jsonl"),
        "--val",
        str(tmp_path / "val.jsonl"),
    ]
    args += ["--features", str(clip_dir), "--text-features", str(text_dir), "--out", str(out)]
    args += ["--config-preset", "qvhighlights-clip", "--epochs", "1", "--batch-videos", "2"]
    args += ["--lr-drop", "30", "--device", "cpu", "--json"]
    result = CliRunner().invoke(train_app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["best_epoch"] == 1 and summary["train_queries"] == 6
    assert summary["val_queries"] == 2 and summary["selection_metric"] == "MR-full-mAP"
    _, extra = load_checkpoint(out)
    assert extra["train_config"]["lr_drop"] == 30 and extra["train_config"]["lr_gamma"] == 0.5


def test_official_batch_masks_train_too() -> None:
    queries, feats = synthetic(3, 2, seed=12)
    batch = next(iter(make_loader(dataset(queries, feats), shuffle=False)))
    model = build_model(tiny_config(), seed=0).train()
    criterion = MesmCriterion(criterion_preset("qvhighlights"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    terms = train_step(model, criterion, optimizer, batch, 0.1, official_masks=True)
    assert np.isfinite(terms["loss_overall"]) and "loss_rec_fw" in terms


def test_cli_text_encoder_option(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli.train_commands import train_app
    from localize.annotations import write_qvhighlights

    train_q, feats = synthetic(2, 1, seed=13)
    clip_dir = tmp_path / "clip_features"
    clip_dir.mkdir()
    for vid in feats:
        np.savez(clip_dir / f"{vid}.npz", features=np.ones((CLIPS, 512)))
    write_qvhighlights(tmp_path / "train.jsonl", train_q)
    base = ["localizer", "--train", str(tmp_path / "train.jsonl"), "--features", str(clip_dir)]
    base += ["--out", str(tmp_path / "m.ckpt"), "--config-preset", "qvhighlights-clip"]
    base += ["--device", "cpu", "--epochs", "1"]
    # a CLIP-only preset takes the widths it is given: 512-d clips, the tiny encoder's 64-d tokens
    result = CliRunner().invoke(train_app, [*base, "--text-encoder", "tiny-random"])
    assert result.exception is None, result.output
    model, _ = load_checkpoint(tmp_path / "m.ckpt")
    assert (model.config.v_feat_dim, model.config.t_feat_dim) == (512 + 2, 64)
    # the C+SF preset's widths are fixed: 512-d clip features are refused
    fixed = [a if a != "qvhighlights-clip" else "qvhighlights" for a in base]
    result = CliRunner().invoke(train_app, [*fixed, "--text-encoder", "tiny-random"])
    assert isinstance(result.exception, InputError)
    assert "v_feat_dim=2818" in str(result.exception)
    result = CliRunner().invoke(train_app, base)
    assert isinstance(result.exception, InputError)
    assert "exactly one" in str(result.exception)
