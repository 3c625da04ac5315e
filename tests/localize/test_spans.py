"""The span localizer: multi-length spans embedded like the action level, scored by cosine."""

import numpy as np
import pytest

from engine.errors import ConfigError, InputError
from index.levels import mean_spans
from localize.postprocess import temporal_iou
from localize.registry import LocalizerOptions, create_localizer
from localize.spans import SpanLocalizer, span_ranges
from localize.types import Localizer, QueryText, VideoClips

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def query_and_video(
    seed: int, n_clips: int, span: tuple[int, int], strength: float = 0.6
) -> tuple[QueryText, VideoClips]:
    """Random unit clips; clips span[0]..span[1]-1 pulled towards the query's sentence."""
    rng = np.random.default_rng(seed)
    query = QueryText("an event", unit(rng.normal(size=DIM)), np.zeros((3, 8), np.float32))
    clips = unit(rng.normal(size=(n_clips, DIM)))  # (T, D)
    s, e = span
    clips[s:e] = unit(
        strength * query.sentence + (1 - strength) * unit(rng.normal(size=(e - s, DIM)))
    )
    return query, VideoClips(1, clips.astype(np.float16), 2.0, n_clips * 2.0)


def test_is_a_localizer() -> None:
    loc: Localizer = SpanLocalizer(mean_spans)
    assert loc.name == "spans"


def test_span_ranges() -> None:
    ranges = span_ranges(10, (4, 2), stride_fraction=0.75)
    assert ranges == [(0, 4), (3, 7), (6, 10), (0, 2), (1, 3), (2, 4)] + [
        (s, s + 2) for s in range(3, 9)
    ]
    assert span_ranges(10, (8,), 0.25) == [(0, 8), (2, 10)]
    assert span_ranges(3, (4, 8), 0.25) == [(0, 3)]  # shorter than every length
    every = span_ranges(7, (1, 2, 3), stride_fraction=0.0)
    assert len(every) == len(set(every)) == 7 + 6 + 5


@pytest.mark.parametrize("span", [(0, 3), (20, 26), (38, 46), (45, 50), (12, 13)])
def test_finds_the_planted_span_exactly(span: tuple[int, int]) -> None:
    query, video = query_and_video(span[0] + 1, 50, span)
    (answer,) = SpanLocalizer(mean_spans).localize(query, [video], top_k=5)
    top = answer.moments[0]
    assert (top.start_s, top.end_s) == (span[0] * 2.0, span[1] * 2.0)
    assert [m.score for m in answer.moments] == sorted(
        (m.score for m in answer.moments), reverse=True
    )
    spans = [[m.start_s, m.end_s] for m in answer.moments]
    overlap = temporal_iou(spans, spans)[np.triu_indices(len(spans), 1)]
    assert (overlap <= 0.5).all()  # NMS
    # saliency: a clip's best span score, highest inside the planted span
    assert answer.saliency.shape == (50,) and answer.saliency.dtype == np.float32
    inside = answer.saliency[span[0] : span[1]]
    np.testing.assert_allclose(inside, top.score, rtol=1e-5)
    assert np.delete(answer.saliency, np.arange(*span)).max() < top.score


def test_saliency_is_each_clips_best_span_score() -> None:
    query, video = query_and_video(7, 23, (4, 9))
    loc = SpanLocalizer(mean_spans, lengths_clips=(1, 3, 5, 8))
    (answer,) = loc.localize(query, [video], top_k=2)
    ranges = span_ranges(23, loc.lengths_clips, loc.stride_fraction)
    scores = mean_spans(video.clips.astype(np.float32), ranges) @ query.sentence
    pairs = list(zip(ranges, scores, strict=True))
    naive = [max(sc for (s, e), sc in pairs if s <= t < e) for t in range(23)]
    np.testing.assert_allclose(answer.saliency, naive, rtol=1e-6)


def test_score_is_the_cosine_of_the_span_vector() -> None:
    query, video = query_and_video(0, 20, (5, 9))
    (answer,) = SpanLocalizer(mean_spans, lengths_clips=(4,)).localize(query, [video], top_k=1)
    clips = video.clips.astype(np.float32)
    expected = unit(clips[5:9].mean(axis=0)) @ query.sentence
    assert answer.moments[0].score == pytest.approx(float(expected), rel=1e-5)


def test_batch_order_top_k_and_edges() -> None:
    pairs = [query_and_video(i, 20 + 5 * i, (3, 8)) for i in range(3)]
    query = pairs[0][0]
    videos = [VideoClips(i, v.clips, 2.0, v.duration_s) for i, (_, v) in enumerate(pairs)]
    loc = SpanLocalizer(mean_spans)
    answers = loc.localize(query, videos, top_k=2)
    assert [a.video_id for a in answers] == [0, 1, 2]
    assert all(len(a.moments) <= 2 for a in answers)
    assert [len(a.saliency) for a in answers] == [20, 25, 30]
    assert loc.localize(query, videos, top_k=0)[0].moments == []
    short = VideoClips(7, videos[0].clips, 2.0, 39.0)  # the last clip is 1 s long
    (answer,) = loc.localize(query, [short], top_k=50)
    assert all(0.0 <= m.start_s < m.end_s <= 39.0 for m in answer.moments)
    empty = VideoClips(8, np.zeros((0, DIM), np.float32), 2.0, 0.0)
    (none,) = loc.localize(query, [empty], top_k=3)
    assert none.moments == [] and none.saliency.shape == (0,)


def test_bad_inputs() -> None:
    query, video = query_and_video(0, 10, (2, 4))
    loc = SpanLocalizer(mean_spans)
    with pytest.raises(InputError, match="do not match"):
        loc.localize(query, [VideoClips(1, np.ones((4, DIM + 1), np.float32), 2.0, 8.0)], 1)
    with pytest.raises(InputError, match="zero"):
        loc.localize(QueryText("x", np.zeros(DIM, np.float32), np.zeros((1, 1))), [video], 1)
    with pytest.raises(InputError, match="top_k"):
        loc.localize(query, [video], top_k=-1)
    for kwargs, message in (
        ({"lengths_clips": ()}, "lengths_clips"),
        ({"lengths_clips": (0, 2)}, "lengths_clips"),
        ({"stride_fraction": -0.5}, "stride_fraction"),
        ({"nms_iou": 1.5}, "nms_iou"),
        ({"max_proposals": 0}, "max_proposals"),
    ):
        with pytest.raises(InputError, match=message):
            SpanLocalizer(mean_spans, **kwargs)  # type: ignore[arg-type]


def test_registry_builds_it_for_videos_of_any_length() -> None:
    query, video = query_and_video(4, 200, (150, 156))  # 400 s: several windows
    loc = create_localizer("spans", LocalizerOptions(span_embedder=mean_spans, max_clips=75))
    (answer,) = loc.localize(query, [video], top_k=3)
    assert (answer.moments[0].start_s, answer.moments[0].end_s) == (300.0, 312.0)
    with pytest.raises(ConfigError, match="span embedding"):
        create_localizer("spans", LocalizerOptions())
