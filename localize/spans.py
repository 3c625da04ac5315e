"""Span localizer: every span of a video embedded like an action window, scored against the query.

Stage 1 embeds fixed action windows (`[levels] action_window_clips`, e.g. 8 s) with the
collection's level strategy. This localizer embeds, with the same function, every span
of each length in `lengths_clips` (starting every `stride_fraction` of the length, at
least every clip) of a candidate video, and
scores each span by its cosine with the query's sentence embedding, so moments take
the length of the event instead of the window's and scores stay comparable across
videos. With the `trained` level strategy the spans go through the trained action head;
with `pooling` a span is the normalised mean of its clips (`index.levels.action_span_embedder`
gives the function for a strategy). The best `max_proposals`
spans go through NMS; the saliency of a clip is the best score of a span holding it.
Cost: linear in the video's length (about T / max(1, stride_fraction x L) spans of each
length L); no long-video windowing is needed.

    loc = SpanLocalizer(action_span_embedder("pooling"))
    [answer] = loc.localize(query, [video], top_k=5)
"""

from collections.abc import Callable, Sequence

import numpy as np

from engine.errors import InputError
from localize.postprocess import check_proposal_options, nms
from localize.types import Moment, QueryText, VideoClips, VideoMoments

# (T, D) clips and [start, end) clip ranges -> (N, D) L2-normalised span vectors
SpanEmbedder = Callable[[np.ndarray, Sequence[tuple[int, int]]], np.ndarray]


def span_ranges(
    n_clips: int, lengths: Sequence[int], stride_fraction: float
) -> list[tuple[int, int]]:
    """[start, end) spans of each length L, longest first, starting every
    max(1, int(stride_fraction x L)) clips, the last one flush with the end; a video
    shorter than every length gives the whole video."""
    ranges: list[tuple[int, int]] = []
    for length in sorted(set(lengths), reverse=True):  # longest first: they win ties
        if length > n_clips:
            continue
        stride = max(1, int(stride_fraction * length))
        starts = list(range(0, n_clips - length + 1, stride))
        if starts[-1] != n_clips - length:
            starts.append(n_clips - length)
        ranges.extend((s, s + length) for s in starts)
    return ranges or [(0, n_clips)]


class SpanLocalizer:
    """`Localizer` scoring multi-length spans with the collection's span embedding."""

    name = "spans"

    def __init__(
        self,
        embed: SpanEmbedder,
        lengths_clips: Sequence[int] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32),
        stride_fraction: float = 0.25,
        nms_iou: float = 0.5,
        max_proposals: int = 256,
    ) -> None:
        if not lengths_clips or any(n < 1 for n in lengths_clips):
            raise InputError(f"lengths_clips must be >= 1, got {tuple(lengths_clips)}")
        if not 0.0 <= stride_fraction <= 1.0:
            raise InputError(f"stride_fraction must be in [0, 1], got {stride_fraction}")
        check_proposal_options(nms_iou, max_proposals)
        self.embed = embed
        self.lengths_clips = tuple(lengths_clips)
        self.stride_fraction = stride_fraction
        self.nms_iou = nms_iou
        self.max_proposals = max_proposals

    def localize(
        self, query: QueryText, videos: Sequence[VideoClips], top_k: int
    ) -> list[VideoMoments]:
        if top_k < 0:
            raise InputError(f"top_k must be >= 0, got {top_k}")
        sentence = query.unit_sentence()  # (D,)
        return [self._one(sentence, video, top_k) for video in videos]

    def _one(self, sentence: np.ndarray, video: VideoClips, top_k: int) -> VideoMoments:
        clips = video.matrix(len(sentence))  # (T, D)
        n = len(clips)
        if n == 0:
            return VideoMoments(video.video_id, [], np.zeros(0, np.float32))
        ranges = span_ranges(n, self.lengths_clips, self.stride_fraction)
        scores = self.embed(clips, ranges) @ sentence  # (P,)
        spans = np.asarray(ranges)  # (P, 2)
        saliency = np.full(n, -np.inf, np.float32)
        lengths = spans[:, 1] - spans[:, 0]
        first = np.repeat(np.cumsum(lengths) - lengths, lengths)  # each clip's span offset
        held = np.repeat(spans[:, 0], lengths) + np.arange(len(first)) - first
        np.maximum.at(saliency, held, np.repeat(scores.astype(np.float32), lengths))
        if top_k == 0:
            return VideoMoments(video.video_id, [], saliency)
        best = np.argsort(-scores, kind="stable")[: self.max_proposals]
        cs = video.clip_seconds
        end_cap = video.duration_s if video.duration_s > 0 else n * cs
        starts = spans[best, 0] * cs
        ends = np.minimum(spans[best, 1] * cs, np.maximum(end_cap, starts))
        moments = [
            Moment(a, b, c)
            for a, b, c in zip(
                starts.tolist(), ends.tolist(), scores[best].astype(float).tolist(), strict=True
            )
        ]
        return VideoMoments(video.video_id, nms(moments, self.nms_iou, top_k), saliency)
