"""The `trained` level strategy: the pooling layout with the heads' vectors, the shipped
heads on CPU, and a planted example where the trained global head finds the right video."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.decode import iter_clips
from engine.encoder_checkpoint import read_checkpoint, save_checkpoint
from engine.encoders import create_encoder, encode_video_clips
from engine.errors import InputError, ModelError
from engine.synth import plan_corpus, render_video
from engine.train_encoder.model import HeadConfig, LevelHeads
from index.level_heads import (
    apply_heads,
    clip_ranges,
    load_level_heads,
    shipped_checkpoint,
    span_layout,
    trained_levels,
    trained_levels_from,
    trained_spans,
    trained_spans_from,
)
from index.levels import (
    LevelParams,
    action_span_embedder,
    level_strategy,
    pooling_levels,
    strategy_for_encoder,
)

ROOT = Path(__file__).resolve().parents[2]


def _clips(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pattern = np.repeat(np.arange(5), [3, 2, 6, 1, n - 12])  # visual states of n clips
    bases = rng.standard_normal((5, dim))
    clips = bases[pattern] + 0.1 * rng.standard_normal((n, dim))
    return (clips / np.linalg.norm(clips, axis=1, keepdims=True)).astype(np.float32)


def test_trained_strategy_is_registered_and_matches_the_pooling_layout() -> None:
    assert level_strategy("trained") is trained_levels
    params = LevelParams(action_window_clips=4, action_stride_clips=2, entity_threshold=0.9)
    for n in (15, 23):
        clips = _clips(n)
        pooled = pooling_levels(clips, n * 2.0 - 1.0, params)
        trained = trained_levels(clips, n * 2.0 - 1.0, params)
        assert [lv.level for lv in trained] == [lv.level for lv in pooled]
        for a, b in zip(trained, pooled, strict=True):
            np.testing.assert_array_equal(a.spans_s, b.spans_s)
            assert a.vectors.shape == b.vectors.shape and a.vectors.dtype == np.float32
            np.testing.assert_allclose(np.linalg.norm(a.vectors, axis=1), 1.0, rtol=1e-5)
        assert not np.allclose(trained[0].vectors, pooled[0].vectors, atol=1e-3)  # heads act


def test_trained_means_the_heads_of_the_configured_encoder(tmp_path: Path) -> None:
    assert strategy_for_encoder("pooling", "clip-vit-b32") == "pooling"
    assert strategy_for_encoder("trained", "vtr-synth-s") == "trained"
    with pytest.raises(InputError, match="has none"):
        strategy_for_encoder("trained", "clip-vit-b32")
    checkpoint = read_checkpoint(shipped_checkpoint())  # the same encoder, other heads
    heads = checkpoint["level_heads"]["state_dict"]
    checkpoint["level_heads"]["state_dict"] = {k: v * 0.5 for k, v in heads.items()}
    own = tmp_path / "own.pt"
    save_checkpoint(own, checkpoint)
    name = strategy_for_encoder("trained", f"vtr:{own}")
    assert name == f"trained:{own.resolve()}"
    params = LevelParams()
    clips = _clips(19)
    theirs = level_strategy(name)(clips, 38.0, params)
    expected = apply_heads(load_level_heads(own), clips, 38.0, params)
    shipped = trained_levels(clips, 38.0, params)
    for a, b, c in zip(theirs, expected, shipped, strict=True):
        np.testing.assert_array_equal(a.vectors, b.vectors)
        assert not np.allclose(a.vectors, c.vectors, atol=1e-3)
    np.testing.assert_array_equal(
        action_span_embedder(name)(clips, [(0, 5), (3, 4)]),
        trained_spans_from(own)(clips, [(0, 5), (3, 4)]),
    )


def test_trained_spans_are_the_action_head_on_any_range() -> None:
    assert action_span_embedder("trained") is trained_spans
    params = LevelParams()
    clips = _clips(21)
    (_, action, _) = trained_levels(clips, 42.0, params)
    windows = clip_ranges(clips, params)["action"]
    np.testing.assert_allclose(trained_spans(clips, windows), action.vectors, atol=1e-6)
    odd = [(0, 1), (3, 12), (20, 21), (0, 21)]  # lengths the index never uses
    vectors = trained_spans(clips, odd)
    assert vectors.shape == (4, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # each range alone gives the same vector as in a batch (padding does not leak)
    np.testing.assert_allclose(trained_spans(clips, [(3, 12)])[0], vectors[1], atol=1e-6)
    with pytest.raises(InputError, match="take 128-d clip features"):
        trained_spans(_clips(15, dim=64), [(0, 4)])


def test_untrained_heads_equal_mean_pooling() -> None:
    torch.manual_seed(0)
    heads = LevelHeads(HeadConfig(dim=128, hidden=32)).eval()
    clips = _clips(19)
    params = LevelParams()
    for a, b in zip(
        apply_heads(heads, clips, 38.0, params), pooling_levels(clips, 38.0, params), strict=True
    ):
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
    ranges = clip_ranges(clips, params)
    assert span_layout(params).spans(clips) == ranges
    assert ranges["action"][0] == (0, 4)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="take 128-d clip features"):
        trained_levels(_clips(15, dim=64), 30.0, LevelParams())
    with pytest.raises(InputError):
        trained_levels(np.zeros((0, 128), np.float32), 1.0, LevelParams())
    with pytest.raises(ModelError, match="no encoder checkpoint"):
        trained_levels_from(tmp_path / "none.pt")(_clips(15), 30.0, LevelParams())
    with pytest.raises(ModelError, match="no encoder checkpoint"):
        trained_spans_from(tmp_path / "none.pt")(_clips(15), [(0, 4)])


def test_shipped_heads_load_once() -> None:
    heads = load_level_heads(shipped_checkpoint())
    assert heads is load_level_heads(shipped_checkpoint())
    assert heads.config.dim == 128 and not heads.training


def test_trained_global_head_finds_the_planted_video(tmp_path: Path) -> None:
    """Two generated videos, clip features through the ingest path (decode, preprocess,
    encode, float16 storage); every query scores its own video above the other one."""
    corpus = plan_corpus(2, seed=3, min_seconds=30, max_seconds=60)
    encoder = create_encoder("vtr-synth-s", "cpu")
    params = LevelParams()
    global_vectors = []
    for video in corpus.videos:
        path = render_video(video, tmp_path / f"{video.vid}.mp4")
        clips = encode_video_clips(encoder, iter_clips(path, 2.0, 1, encoder.image_size))
        stored = clips.astype(np.float16).astype(np.float32)
        levels = {lv.level: lv for lv in trained_levels(stored, video.duration_s, params)}
        global_vectors.append(levels["global"].vectors[0])
    scores = (
        encoder.encode_text([q.text for q in corpus.queries], 32).sentence
        @ np.stack(global_vectors).T
    )  # (queries, 2)
    vids = [v.vid for v in corpus.videos]
    assert len(corpus.queries) >= 2
    for query, row in zip(corpus.queries, scores, strict=True):
        assert vids[int(np.argmax(row))] == query.vid, (query.text, row)


def test_config_name_resolves_without_importing_the_heads_first() -> None:
    code = "from index.levels import level_strategy; print(level_strategy('trained').__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "trained_levels"
