"""MesmLocalizer: input preparation, official post-processing, cache, precision, errors."""

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.encoder_registry import EncoderSpec
from engine.errors import ConfigError, InputError
from engine.sources import sha256_file
from localize import registry
from localize.mesm.checkpoint import save_checkpoint
from localize.mesm.config import MesmConfig
from localize.mesm.inference import (
    MesmLocalizer,
    prepare_clips,
    prepare_text,
    spans_to_seconds,
)
from localize.mesm.model import MesmModel, build_model
from localize.registry import LocalizerOptions, create_localizer
from localize.types import Localizer, QueryText, VideoClips
from localize.windowing import WindowedLocalizer

CLIP_S = 2.0


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread avoids OpenMP stalls on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(**changes: object) -> MesmConfig:
    values: dict = dict(
        v_feat_dim=14, t_feat_dim=12, hidden_dim=32, nheads=4, dim_feedforward=48,
        max_v_l=20, max_q_l=8, vocab_size=10, v_feat_splits=(4, 8), clip_seconds=CLIP_S,
        ss_video="row", name="tiny",
    )  # fmt: skip
    values.update(changes)
    return MesmConfig(**values)


@pytest.fixture(scope="module")
def model() -> MesmModel:
    return build_model(_config(), seed=0)


def _query(rng: np.random.Generator, tokens: int = 6) -> QueryText:
    raw = rng.standard_normal((tokens, 12)).astype(np.float32) * 3
    return QueryText("a query", raw.mean(0), raw)


def _video(rng: np.random.Generator, vid: int, clips: int, duration_s: float) -> VideoClips:
    feats = rng.standard_normal((clips, 12)).astype(np.float16)
    return VideoClips(vid, feats, CLIP_S, duration_s)


def _videos(seed: int = 0) -> list[VideoClips]:
    rng = np.random.default_rng(seed)
    return [
        _video(rng, 1, 20, 40.0),
        _video(rng, 2, 19, 37.0),  # duration not a multiple of the clip length
        _video(rng, 3, 7, 13.5),
        _video(rng, 4, 1, 1.2),
        _video(rng, 5, 12, 0.0),  # unknown duration: clips * clip_seconds
    ]


def test_prepare_text_normalises_tokens_and_builds_the_sentence() -> None:
    tokens = np.arange(1, 31, dtype=np.float32).reshape(10, 3)
    words, sentence = prepare_text(tokens, max_tokens=4)
    assert words.shape == (4, 3)
    np.testing.assert_allclose(np.linalg.norm(words, axis=1), 1.0, rtol=1e-6)
    mean = tokens[:4].mean(0)
    np.testing.assert_allclose(sentence, mean / np.linalg.norm(mean), rtol=1e-6)
    with pytest.raises(InputError):
        prepare_text(np.zeros((0, 3), dtype=np.float32), 4)


def test_prepare_clips_normalises_each_block_and_appends_tef() -> None:
    config = _config()
    clips = np.random.default_rng(0).standard_normal((5, 12)).astype(np.float16)
    rows = prepare_clips(clips, config)
    assert rows.shape == (5, 14)
    np.testing.assert_allclose(np.linalg.norm(rows[:, :4], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rows[:, 4:12], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(rows[:, 12], np.arange(5) / 5, rtol=1e-6)
    np.testing.assert_allclose(rows[:, 13], np.arange(5) / 5 + 0.2, rtol=1e-6)
    with pytest.raises(InputError, match="clips must be"):
        prepare_clips(clips[:, :10], config)


def test_spans_to_seconds_clamps_rounds_and_widens() -> None:
    spans = np.array([[[0.5, 0.2], [0.02, 0.3], [0.99, 0.2], [0.5, 0.001]]])  # (1, 4, 2)
    start, end = spans_to_seconds(spans, np.array([37.2]), CLIP_S)
    assert start.tolist() == [[14.0, 0.0, 34.0, 18.0]]
    # 40.2 -> clamped 37.2 -> rounded 38 -> clamped again; [18, 18] widened to one clip
    assert end.tolist() == [[22.0, 6.0, 37.2, 20.0]]


def test_localize_returns_sorted_valid_moments(model: MesmModel) -> None:
    loc: Localizer = MesmLocalizer(model, device="auto")
    assert loc.name == "mesm"
    assert isinstance(loc, MesmLocalizer)
    assert loc.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    videos = _videos()
    answers = loc.localize(_query(np.random.default_rng(1)), videos, top_k=6)
    assert [a.video_id for a in answers] == [v.video_id for v in videos]
    for video, answer in zip(videos, answers, strict=True):
        duration = video.duration_s or len(video.clips) * CLIP_S
        assert 1 <= len(answer.moments) <= 6
        scores = [m.score for m in answer.moments]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 < s < 1.0 for s in scores)
        for m in answer.moments:
            assert 0.0 <= m.start_s < m.end_s <= duration
            for t in (m.start_s, m.end_s):
                assert t == duration or t / CLIP_S == round(t / CLIP_S)
        assert answer.saliency.shape == (len(video.clips),)
        assert answer.saliency.dtype == np.float32


def test_localize_equals_the_model_forward_on_prepared_inputs(model: MesmModel) -> None:
    """The localizer feeds the model as documented: the same scores as a plain forward."""
    videos = _videos(seed=2)
    query = _query(np.random.default_rng(3), tokens=11)  # cut to max_q_l = 8
    answers = MesmLocalizer(model, device="cpu").localize(query, videos, top_k=10)
    words, _ = prepare_text(query.tokens, 8)
    for video, answer in zip(videos, answers, strict=True):
        rows = torch.from_numpy(prepare_clips(video.clips, model.config))[None]
        with torch.no_grad():
            out = model(
                rows,
                torch.ones(rows.shape[:2], dtype=torch.bool),
                torch.from_numpy(words)[None],
                torch.ones(1, 8, dtype=torch.bool),
                official_masks=False,
            )
        scores = out["pred_logits"][0].softmax(-1)[:, 0].sort(descending=True).values
        np.testing.assert_allclose([m.score for m in answer.moments], scores, atol=1e-5)
        np.testing.assert_allclose(answer.saliency, out["saliency_scores"][0], atol=1e-5)


def test_cache_hits_give_identical_results(model: MesmModel) -> None:
    loc = MesmLocalizer(model, device="cpu", cache_size=8)
    videos = _videos()
    query = _query(np.random.default_rng(4))
    first = loc.localize(query, videos, top_k=10)
    assert loc.cache_info().misses == 5
    second = loc.localize(query, videos, top_k=10)
    info = loc.cache_info()
    assert (info.hits, info.misses, info.size) == (5, 5, 5)
    for a, b in zip(first, second, strict=True):
        assert a.moments == b.moments
        assert np.array_equal(a.saliency, b.saliency)
    # Another window of video 1 (same id, same length, other clips) is a separate entry.
    window = VideoClips(1, np.roll(videos[0].clips, 3, axis=0), CLIP_S, 40.0)
    loc.localize(query, [window], top_k=10)
    assert loc.cache_info().misses == 6
    uncached = MesmLocalizer(model, device="cpu", cache_size=0).localize(query, videos, 10)
    assert [a.moments for a in uncached] == [a.moments for a in first]


def test_the_cache_is_bounded(model: MesmModel) -> None:
    loc = MesmLocalizer(model, device="cpu", cache_size=2)
    loc.localize(_query(np.random.default_rng(5)), _videos(), top_k=1)
    assert loc.cache_info().size == 2
    loc.clear_cache()
    assert loc.cache_info().size == 0


def test_nms_and_top_k(model: MesmModel) -> None:
    videos = _videos()[:2]
    query = _query(np.random.default_rng(6))
    plain = MesmLocalizer(model, device="cpu").localize(query, videos, top_k=10)
    assert len(plain[0].moments) == 10  # no NMS by default, as the official evaluation
    strict = MesmLocalizer(model, device="cpu", nms_iou=0.0).localize(query, videos, top_k=10)
    for answer in strict:
        spans = sorted((m.start_s, m.end_s) for m in answer.moments)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
        assert answer.moments[0] == plain[videos.index(_by_id(videos, answer.video_id))].moments[0]
    none = MesmLocalizer(model, device="cpu").localize(query, videos, top_k=0)
    assert [a.moments for a in none] == [[], []]
    assert MesmLocalizer(model, device="cpu").localize(query, [], top_k=3) == []


def _by_id(videos: list[VideoClips], vid: int) -> VideoClips:
    return next(v for v in videos if v.video_id == vid)


def test_bad_requests_raise_clear_errors(model: MesmModel) -> None:
    loc = MesmLocalizer(model, device="cpu")
    rng = np.random.default_rng(7)
    query = _query(rng)
    with pytest.raises(InputError, match="WindowedLocalizer"):
        loc.localize(query, [_video(rng, 9, 21, 42.0)], top_k=1)
    with pytest.raises(InputError, match="1 s clips"):
        loc.localize(query, [VideoClips(9, np.ones((4, 12), np.float32), 1.0, 4.0)], top_k=1)
    with pytest.raises(InputError, match="clips must be"):
        loc.localize(query, [VideoClips(9, np.ones((4, 7), np.float32), CLIP_S, 8.0)], top_k=1)
    bad = QueryText("x", np.ones(5, np.float32), np.ones((3, 5), np.float32))
    with pytest.raises(InputError, match="12-d CLIP token"):
        loc.localize(bad, [_video(rng, 9, 4, 8.0)], top_k=1)
    with pytest.raises(InputError, match="top_k"):
        loc.localize(query, [_video(rng, 9, 4, 8.0)], top_k=-1)
    with pytest.raises(ConfigError, match="fp16"):
        MesmLocalizer(model, device="cpu", precision="fp16")
    with pytest.raises(ConfigError, match="precision"):
        MesmLocalizer(model, device="cpu", precision="int8")  # type: ignore[arg-type]


def _scores(loc: MesmLocalizer, query: QueryText, videos: list[VideoClips]) -> np.ndarray:
    """(videos, queries) foreground scores in query order, straight from the model."""
    words, _ = prepare_text(query.tokens, loc.config.max_q_l)
    rows = np.stack([prepare_clips(v.clips, loc.config) for v in videos])
    with loc._autocast():
        text = loc.model.encode_text(torch.from_numpy(words)[None])
        state = loc.model.encode_videos(
            torch.from_numpy(rows), torch.ones(rows.shape[:2], dtype=torch.bool)
        )
        logits = loc.model.localize(text, state)["pred_logits"].float()
    return logits.softmax(-1)[..., 0].detach().numpy()


def _discordant_pairs(reference: np.ndarray, other: np.ndarray, min_gap: float) -> int:
    """Moment pairs of one video ordered differently, among pairs > min_gap apart."""
    d_ref = reference[:, :, None] - reference[:, None, :]  # (N, Q, Q)
    d_other = other[:, :, None] - other[:, None, :]
    return int(((d_ref * d_other < 0) & (np.abs(d_ref) > min_gap)).sum() // 2)


def test_the_default_precision_keeps_the_fp32_ranking() -> None:
    """ "auto" is fp32; its fast oneDNN path ranks moments as plain fp32 (MKL) does.

    Pairs closer than 1e-5 are ties at fp32 rounding (summation order); reduced precision
    (bf16, ~1e-3 score error) reorders many near-tied pairs of random weights, so it is
    opt-in only and merely checked to stay close.
    """
    model = build_model(_config(hidden_dim=64, dim_feedforward=128), seed=4)
    rng = np.random.default_rng(8)
    videos = [_video(rng, i, 20, 40.0) for i in range(12)]
    query = _query(rng)
    loc = MesmLocalizer(model, device="cpu")
    assert loc.precision == "fp32"
    with torch.inference_mode():
        fast = _scores(loc, query, videos)
    with torch.enable_grad():  # autograd on: plain F.linear, no oneDNN packing
        reference = _scores(loc, query, videos)
    assert np.abs(fast - reference).max() < 1e-5
    assert _discordant_pairs(reference, fast, min_gap=1e-5) == 0
    assert (np.abs(np.diff(np.sort(reference, axis=1), axis=1)) > 1e-5).mean() > 0.5
    low = MesmLocalizer(model, device="cpu", precision="bf16")
    with torch.inference_mode():
        reduced = _scores(low, query, videos)
    assert np.isfinite(reduced).all()
    assert np.abs(reduced - reference).max() < 0.02
    answers = low.localize(query, videos, top_k=3)
    assert all(len(a.moments) == 3 for a in answers)


def test_from_checkpoint(tmp_path: Path, model: MesmModel) -> None:
    save_checkpoint(tmp_path / "m.pt", model)
    loc = MesmLocalizer.from_checkpoint(tmp_path / "m.pt", device="cpu", nms_iou=0.5)
    query = _query(np.random.default_rng(9))
    videos = _videos()[:2]
    again = MesmLocalizer(model, device="cpu", nms_iou=0.5).localize(query, videos, 5)
    assert [a.moments for a in loc.localize(query, videos, 5)] == [a.moments for a in again]


def test_mesm_without_a_checkpoint_uses_the_one_shipped_for_the_encoder(
    tmp_path: Path, model: MesmModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path)
    save_checkpoint(tmp_path / "mesm-enc-a.pt", model)
    weights = tmp_path / "enc-a.pt"  # the encoder weights whose features it learnt from
    weights.write_bytes(b"enc-a weights")
    (tmp_path / "features.json").write_text(json.dumps({"enc-a": sha256_file(weights)}))
    monkeypatch.setattr(
        registry, "resolve_encoder", lambda name: EncoderSpec(name, "vtr", "", str(weights))
    )
    windowed = create_localizer("mesm", LocalizerOptions(encoder="enc-a", device="cpu"))
    assert isinstance(windowed, WindowedLocalizer)
    assert isinstance(windowed.inner, MesmLocalizer) and windowed.max_clips == model.config.max_v_l
    with pytest.raises(ConfigError, match="ships one for enc-a, not for enc-b"):
        create_localizer("mesm", LocalizerOptions(encoder="enc-b"))
    with pytest.raises(ConfigError, match="not found"):  # an explicit checkpoint wins
        create_localizer(
            "mesm", LocalizerOptions(checkpoint=str(tmp_path / "x.pt"), encoder="enc-a")
        )
