"""Long-video windowing around the similarity localizer: 2 hours of 2 s clips."""

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from engine.errors import InputError
from localize.postprocess import temporal_iou
from localize.similarity import SimilarityLocalizer
from localize.types import Localizer, QueryText, VideoClips, VideoMoments
from localize.windowing import WindowedLocalizer, _coarse_to_fine

DIM = 32
CLIPS = 3600  # 2 hours of 2 s clips


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def query() -> QueryText:
    rng = np.random.default_rng(123)
    return QueryText("event", unit(rng.normal(size=DIM)), np.zeros((2, 4), np.float32))


def long_video(
    query: QueryText,
    span: tuple[int, int],
    focus_s: Sequence[tuple[float, float]] = (),
    video_id: int = 1,
    n_clips: int = CLIPS,
) -> VideoClips:
    rng = np.random.default_rng(span[0] + 1)
    clips = unit(rng.normal(size=(n_clips, DIM)))  # (T, D)
    s, e = span
    clips[s:e] = unit(0.6 * query.sentence + 0.4 * unit(rng.normal(size=(e - s, DIM))))
    return VideoClips(video_id, clips.astype(np.float16), 2.0, n_clips * 2.0, tuple(focus_s))


def found(answer: VideoMoments, span: tuple[int, int]) -> bool:
    top = answer.moments[0]
    return temporal_iou([[top.start_s, top.end_s]], [[span[0] * 2.0, span[1] * 2.0]])[0, 0] >= 0.5


class Recording:
    """A Localizer that records every call and forwards to the similarity localizer."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = SimilarityLocalizer()
        self.calls: list[list[VideoClips]] = []

    def localize(
        self, query: QueryText, videos: Sequence[VideoClips], top_k: int
    ) -> list[VideoMoments]:
        self.calls.append(list(videos))
        return self.inner.localize(query, videos, top_k)


@pytest.mark.parametrize("span", [(0, 12), (1795, 1815), (2461, 2490), (3585, 3600)])
def test_planted_moment_found_anywhere_without_hints(
    query: QueryText, span: tuple[int, int]
) -> None:
    loc = WindowedLocalizer(SimilarityLocalizer(), max_clips=150, overlap_clips=30)
    (answer,) = loc.localize(query, [long_video(query, span)], top_k=5)
    assert found(answer, span)
    assert answer.saliency.shape == (CLIPS,)
    assert span[0] <= int(np.argmax(answer.saliency)) < span[1]
    assert all(0.0 <= m.start_s <= m.end_s <= CLIPS * 2.0 for m in answer.moments)
    assert len(answer.moments) <= 5


def test_hints_come_first_within_a_window_budget(query: QueryText) -> None:
    span = (2461, 2490)
    hint = (span[0] * 2.0 + 4, span[1] * 2.0 - 6)  # stage 1 roughly knows where
    loc = WindowedLocalizer(SimilarityLocalizer(), max_clips=150, overlap_clips=30, max_windows=1)
    (with_hint,) = loc.localize(query, [long_video(query, span, [hint])], top_k=3)
    assert found(with_hint, span)
    # The same budget without the hint only sees the start of the video.
    (without,) = loc.localize(query, [long_video(query, span)], top_k=3)
    assert not found(without, span)
    # A wrong hint first, the right one second, budget 2.
    loc2 = WindowedLocalizer(SimilarityLocalizer(), max_clips=150, overlap_clips=30, max_windows=2)
    (two,) = loc2.localize(query, [long_video(query, span, [(100.0, 120.0), hint])], top_k=3)
    assert found(two, span)


def test_one_batched_call_and_short_videos_pass_through(query: QueryText) -> None:
    inner = Recording()
    loc = WindowedLocalizer(inner, max_clips=150, overlap_clips=30)
    short = long_video(query, (10, 20), video_id=7, n_clips=100)
    videos = [
        long_video(query, (500, 520), video_id=1, n_clips=600),
        short,
        long_video(query, (50, 60), video_id=3, n_clips=400),
    ]
    answers = loc.localize(query, videos, top_k=4)
    assert len(inner.calls) == 1
    (batch,) = inner.calls
    assert short in batch  # the very same object, uncut
    assert all(len(v.clips) <= 150 for v in batch)
    # 600 clips: starts 0, 120, 240, 360, 450 -> 5 windows; 400: 0, 120, 240, 250 -> 4.
    assert len(batch) == 5 + 1 + 4
    assert [a.video_id for a in answers] == [1, 7, 3]
    assert [len(a.saliency) for a in answers] == [600, 100, 400]
    assert found(answers[0], (500, 520)) and found(answers[2], (50, 60))


def test_windows_cover_the_video(query: QueryText) -> None:
    loc = WindowedLocalizer(SimilarityLocalizer(), max_clips=150, overlap_clips=30)
    video = long_video(query, (0, 1), n_clips=1000)
    windows = loc.windows(video)
    assert all(e - s == 150 for s, e in windows)
    covered = np.zeros(1000, dtype=bool)
    for s, e in windows:
        covered[s:e] = True
    assert covered.all()
    ordered = sorted(windows)
    assert all(b[0] <= a[1] - 30 for a, b in itertools.pairwise(ordered))
    # Hinted windows first, centred on the hint; a hint inside a chosen window is skipped.
    hinted = long_video(query, (0, 1), focus_s=[(1000.0, 1010.0), (1002.0, 1004.0)], n_clips=1000)
    first, second = loc.windows(hinted)[:2]
    assert first == (428, 578)  # clips 500..504 centred: round(502.5 - 75)
    assert second == (0, 150)


def test_saliency_is_stitched_with_max() -> None:
    class Constant:
        name = "constant"

        def localize(
            self, query: QueryText, videos: Sequence[VideoClips], top_k: int
        ) -> list[VideoMoments]:
            # Saliency = the window's first clip index, so overlaps show which one wins.
            return [
                VideoMoments(
                    v.video_id,
                    [],
                    np.full(len(v.clips), float(v.clips[0, 0]), dtype=np.float32),
                )
                for v in videos
            ]

    clips = np.arange(10, dtype=np.float32)[:, None]  # (10, 1): clip i holds value i
    video = VideoClips(1, clips, 1.0, 10.0)
    loc = WindowedLocalizer(Constant(), max_clips=4, overlap_clips=2)
    (answer,) = loc.localize(
        QueryText("x", np.ones(1, np.float32), np.zeros((1, 1), np.float32)), [video], 3
    )
    # Windows start at 0, 2, 4, 6: the later window wins each overlap.
    np.testing.assert_array_equal(answer.saliency, [0, 0, 2, 2, 4, 4, 6, 6, 6, 6])
    assert answer.moments == []


def test_coarse_to_fine_order() -> None:
    assert _coarse_to_fine(5) == [0, 4, 2, 1, 3]
    assert sorted(_coarse_to_fine(30)) == list(range(30))
    assert _coarse_to_fine(1) == [0]


def test_is_a_localizer_and_checks_arguments() -> None:
    loc: Localizer = WindowedLocalizer(SimilarityLocalizer(), max_clips=75, overlap_clips=25)
    assert loc.name == "similarity"
    with pytest.raises(InputError, match="overlap_clips"):
        WindowedLocalizer(SimilarityLocalizer(), max_clips=10, overlap_clips=10)
    with pytest.raises(InputError, match="max_windows"):
        WindowedLocalizer(SimilarityLocalizer(), max_clips=10, overlap_clips=2, max_windows=0)
