"""Long-video windowing: run any localizer on overlapping windows of a long video.

Localizers such as MESM are trained on short videos (QVHighlights: 150 s = 75 clips)
and expect a bounded number of clips. `WindowedLocalizer` wraps one: a video of at most
`max_clips` clips passes through unchanged; a longer one is cut into windows of
`max_clips` clips that overlap by `overlap_clips`:

1. first, one window centred on each stage-1 hint (`VideoClips.focus_s`, best first),
   unless an earlier window already contains the hinted span;
2. then a sweep covering the whole video with stride `max_clips - overlap_clips`, in a
   coarse-to-fine order (first, last, middle, quarters, ...) so that a budget cut still
   samples the whole video evenly;
3. at most `max_windows` windows per video (None: no limit).

All windows of all videos go to the inner localizer in one batched call. Moments are
shifted back to video time and merged with NMS (`nms_iou`); the saliency curve is
stitched, taking the max where windows overlap (clips no window covered get the lowest
stitched value). A moment longer than `overlap_clips` can be cut at a window border:
choose the overlap longer than the moments you expect.

    loc = WindowedLocalizer(SimilarityLocalizer(), max_clips=75, overlap_clips=25)
    answers = loc.localize(query, videos, top_k=10)
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import InputError
from localize.postprocess import merge_moments, shift_moments
from localize.types import Localizer, QueryText, VideoClips, VideoMoments

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Window:
    video: int  # index of the video in the request
    start: int  # first clip
    end: int  # one past the last clip


def _coarse_to_fine(n: int) -> list[int]:
    """0..n-1 ordered so that every prefix is spread over the range: 0, n-1, mid, ..."""
    if n <= 2:
        return list(range(n))
    order = [0, n - 1]
    seen = {0, n - 1}
    intervals = [(0, n - 1)]
    while intervals:
        next_intervals = []
        for lo, hi in intervals:
            if hi - lo < 2:
                continue
            mid = (lo + hi) // 2
            if mid not in seen:
                seen.add(mid)
                order.append(mid)
            next_intervals += [(lo, mid), (mid, hi)]
        intervals = next_intervals
    return order


class WindowedLocalizer:
    """A `Localizer` that runs `inner` on windows of at most `max_clips` clips."""

    def __init__(
        self,
        inner: Localizer,
        max_clips: int,
        overlap_clips: int,
        max_windows: int | None = None,
        nms_iou: float = 0.5,
    ) -> None:
        if max_clips < 1:
            raise InputError(f"max_clips must be >= 1, got {max_clips}")
        if not 0 <= overlap_clips < max_clips:
            raise InputError(
                f"overlap_clips must be in [0, max_clips), got {overlap_clips} "
                f"with max_clips {max_clips}"
            )
        if max_windows is not None and max_windows < 1:
            raise InputError(f"max_windows must be >= 1 or None, got {max_windows}")
        if not 0.0 <= nms_iou <= 1.0:
            raise InputError(f"nms_iou must be in [0, 1], got {nms_iou}")
        self.inner = inner
        self.name = inner.name
        self.max_clips = max_clips
        self.overlap_clips = overlap_clips
        self.max_windows = max_windows
        self.nms_iou = nms_iou

    def windows(self, video: VideoClips) -> list[tuple[int, int]]:
        """[start, end) clip ranges for `video`, in the order they are chosen."""
        n = len(video.clips)
        size = self.max_clips
        if n <= size:
            return [(0, n)]
        chosen: list[tuple[int, int]] = []
        budget = self.max_windows if self.max_windows is not None else float("inf")
        for focus_start_s, focus_end_s in video.focus_s:
            if len(chosen) >= budget:
                return chosen
            lo = int(np.floor(max(0.0, focus_start_s) / video.clip_seconds))
            hi = int(np.ceil(max(focus_start_s, focus_end_s) / video.clip_seconds))
            lo, hi = min(lo, n - 1), min(max(hi, lo + 1), n)
            if any(s <= lo and hi <= e for s, e in chosen):
                continue
            start = round((lo + hi) / 2 - size / 2)
            start = min(max(0, start), n - size)
            chosen.append((start, start + size))
        stride = size - self.overlap_clips
        starts = [*range(0, n - size, stride), n - size]
        for i in _coarse_to_fine(len(starts)):
            if len(chosen) >= budget:
                break
            window = (starts[i], starts[i] + size)
            if window not in chosen:
                chosen.append(window)
        return chosen

    def localize(
        self, query: QueryText, videos: Sequence[VideoClips], top_k: int
    ) -> list[VideoMoments]:
        if top_k < 0:
            raise InputError(f"top_k must be >= 0, got {top_k}")
        plan: list[_Window] = []
        requests: list[VideoClips] = []
        for v, video in enumerate(videos):
            ranges = self.windows(video)
            if ranges == [(0, len(video.clips))]:
                plan.append(_Window(v, 0, len(video.clips)))
                requests.append(video)
                continue
            for start, end in ranges:
                plan.append(_Window(v, start, end))
                requests.append(self._cut(video, start, end))
        log.debug("%d videos -> %d localizer inputs", len(videos), len(requests))
        answers = self.inner.localize(query, requests, top_k) if requests else []
        if len(answers) != len(requests):
            raise InputError(
                f"localizer {self.inner.name!r} answered {len(answers)} of {len(requests)} inputs"
            )

        per_video: list[list[tuple[_Window, VideoMoments]]] = [[] for _ in videos]
        for window, answer in zip(plan, answers, strict=True):
            per_video[window.video].append((window, answer))
        return [
            self._stitch(video, parts, top_k)
            for video, parts in zip(videos, per_video, strict=True)
        ]

    def _cut(self, video: VideoClips, start: int, end: int) -> VideoClips:
        cs = video.clip_seconds
        offset_s = start * cs
        end_s = min(end * cs, video.duration_s) if video.duration_s > 0 else end * cs
        focus = tuple(
            (max(0.0, s - offset_s), min(end_s - offset_s, e - offset_s))
            for s, e in video.focus_s
            if e > offset_s and s < end_s
        )
        return VideoClips(
            video_id=video.video_id,
            clips=video.clips[start:end],  # (end - start, D)
            clip_seconds=cs,
            duration_s=max(0.0, end_s - offset_s),
            focus_s=focus,
        )

    def _stitch(
        self, video: VideoClips, parts: list[tuple[_Window, VideoMoments]], top_k: int
    ) -> VideoMoments:
        n = len(video.clips)
        if len(parts) == 1 and (parts[0][0].start, parts[0][0].end) == (0, n):
            return parts[0][1]
        saliency = np.full(n, -np.inf, dtype=np.float32)  # (T,)
        groups = []
        for window, answer in parts:
            piece = np.asarray(answer.saliency, dtype=np.float32)[: window.end - window.start]
            span = saliency[window.start : window.start + len(piece)]
            np.maximum(span, piece, out=span)
            groups.append(shift_moments(answer.moments, window.start * video.clip_seconds))
        covered = np.isfinite(saliency)
        saliency[~covered] = saliency[covered].min() if covered.any() else 0.0
        moments = merge_moments(groups, self.nms_iou, top_k)
        return VideoMoments(video.video_id, moments, saliency)
