"""The training-free similarity localizer finds a moment planted in synthetic clip features."""

import numpy as np
import pytest

from engine.errors import InputError
from localize.postprocess import temporal_iou
from localize.similarity import SimilarityLocalizer, smooth
from localize.types import Localizer, QueryText, VideoClips

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_query(rng: np.random.Generator) -> QueryText:
    return QueryText("a planted event", unit(rng.normal(size=DIM)), np.zeros((3, 8), np.float32))


def planted_video(
    rng: np.random.Generator,
    query: QueryText,
    n_clips: int,
    span: tuple[int, int],
    video_id: int = 1,
    strength: float = 0.6,
) -> VideoClips:
    """Random unit clips, with clips span[0]..span[1]-1 pulled towards the query."""
    clips = unit(rng.normal(size=(n_clips, DIM)))  # (T, D)
    s, e = span
    noise = unit(rng.normal(size=(e - s, DIM)))
    clips[s:e] = unit(strength * query.sentence + (1 - strength) * noise)
    return VideoClips(video_id, clips.astype(np.float16), 2.0, n_clips * 2.0)


def test_is_a_localizer() -> None:
    loc: Localizer = SimilarityLocalizer()
    assert loc.name == "similarity"


@pytest.mark.parametrize("span", [(0, 6), (30, 45), (60, 75), (88, 90)])
def test_finds_planted_moment(span: tuple[int, int]) -> None:
    rng = np.random.default_rng(span[0])
    query = make_query(rng)
    video = planted_video(rng, query, 90, span)
    (answer,) = SimilarityLocalizer().localize(query, [video], top_k=5)
    assert answer.video_id == 1
    assert 1 <= len(answer.moments) <= 5
    assert answer.moments == sorted(answer.moments, key=lambda m: -m.score)
    top = answer.moments[0]
    truth = [[span[0] * 2.0, span[1] * 2.0]]
    assert temporal_iou([[top.start_s, top.end_s]], truth)[0, 0] >= 0.5
    # Saliency is the smoothed cosine curve: highest inside the planted span.
    assert answer.saliency.shape == (90,) and answer.saliency.dtype == np.float32
    assert span[0] <= int(np.argmax(answer.saliency)) < span[1]


def test_batch_keeps_order_and_top_k() -> None:
    rng = np.random.default_rng(7)
    query = make_query(rng)
    videos = [planted_video(rng, query, 40 + 10 * i, (5 + i, 15 + i), video_id=i) for i in range(3)]
    answers = SimilarityLocalizer().localize(query, videos, top_k=2)
    assert [a.video_id for a in answers] == [0, 1, 2]
    assert all(len(a.moments) <= 2 for a in answers)
    assert [len(a.saliency) for a in answers] == [40, 50, 60]
    assert SimilarityLocalizer().localize(query, videos, top_k=0)[0].moments == []


def test_moments_stay_inside_the_video() -> None:
    rng = np.random.default_rng(3)
    query = make_query(rng)
    video = planted_video(rng, query, 20, (15, 20))
    short = VideoClips(1, video.clips, 2.0, 39.0)  # the last clip is 1 s long
    (answer,) = SimilarityLocalizer().localize(query, [short], top_k=10)
    for m in answer.moments:
        assert 0.0 <= m.start_s <= m.end_s <= 39.0


def test_empty_and_flat_videos() -> None:
    rng = np.random.default_rng(0)
    query = make_query(rng)
    empty = VideoClips(1, np.zeros((0, DIM), np.float32), 2.0, 0.0)
    flat = VideoClips(2, np.tile(unit(rng.normal(size=DIM)), (10, 1)), 2.0, 20.0)
    a, b = SimilarityLocalizer().localize(query, [empty, flat], top_k=3)
    assert a.moments == [] and a.saliency.shape == (0,)
    assert b.moments[0].start_s == 0.0 and b.moments[0].end_s == 20.0


def test_smooth() -> None:
    curve = np.array([0, 0, 3, 0, 0], dtype=np.float32)
    np.testing.assert_allclose(smooth(curve, 3), [0, 1, 1, 1, 0])
    np.testing.assert_allclose(smooth(np.array([3.0, 0.0]), 3), [1.5, 1.5])
    np.testing.assert_array_equal(smooth(curve, 1), curve)


def test_proposals_and_scores() -> None:
    loc = SimilarityLocalizer(relative_thresholds=(0.5,), window_clips=(2,), context_weight=1.0)
    curve = np.array([0, 0, 1, 1, 0, 0], dtype=np.float32)
    spans = loc.proposals(curve)
    assert [2, 4] in spans.tolist() and [0, 6] in spans.tolist()
    scores = loc.score(curve, np.array([[2, 4], [0, 6], [0, 2]]))
    # [2, 4): inside 1, context clips 0,1 and 4,5 -> 0. Whole video: minus its own mean.
    # [0, 2): inside 0, context clips 2,3 -> 1.
    np.testing.assert_allclose(scores, [1.0, 0.0, -1.0])


def test_bad_inputs() -> None:
    rng = np.random.default_rng(0)
    query = make_query(rng)
    wrong_dim = VideoClips(1, np.ones((4, DIM + 1), np.float32), 2.0, 8.0)
    with pytest.raises(InputError, match="do not match"):
        SimilarityLocalizer().localize(query, [wrong_dim], top_k=1)
    zero = QueryText("x", np.zeros(DIM, np.float32), np.zeros((1, 1), np.float32))
    with pytest.raises(InputError, match="zero"):
        SimilarityLocalizer().localize(zero, [], top_k=1)
    with pytest.raises(InputError, match="top_k"):
        SimilarityLocalizer().localize(query, [], top_k=-1)
    with pytest.raises(InputError, match="smooth_clips"):
        SimilarityLocalizer(smooth_clips=0)
    with pytest.raises(InputError, match="relative_thresholds"):
        SimilarityLocalizer(relative_thresholds=(1.5,))
