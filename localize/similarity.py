"""Training-free moment localizer: the query-clip similarity curve, smoothed and cut.

Works before any localizer is trained. Per video: cosine similarity between the query's
sentence embedding and each clip embedding (a curve over time), a moving average over
`smooth_clips` clips (the saliency returned), then moment proposals of two kinds:

- threshold runs: maximal runs of clips whose smoothed score is >= min + r * (max - min)
  for each relative level r in `relative_thresholds`;
- sliding windows of each length in `window_clips`, stride half the length.

A proposal [s, e) is scored by its contrast with its surroundings: the mean smoothed
score inside minus `context_weight` times the mean over up to (e - s) clips on each side
(the whole curve's mean when it has no surroundings). The best `max_proposals` go through
NMS (`nms_iou`) and the top k are returned, in seconds. A flat curve (range <= 1e-6)
yields the whole video. Cost: O(T) per video plus NMS on at most `max_proposals` spans.

    loc = SimilarityLocalizer(smooth_clips=3)
    [answer] = loc.localize(query, [video], top_k=5)
    answer.moments[0].start_s, answer.saliency  # (T,)
"""

from collections.abc import Sequence

import numpy as np

from engine.errors import InputError
from localize.postprocess import check_proposal_options, nms
from localize.types import Moment, QueryText, VideoClips, VideoMoments

FLAT_RANGE = 1e-6  # a curve whose max - min is below this has no moment inside


def smooth(curve: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over `window` clips; edges average the clips that exist."""
    n = len(curve)
    if window <= 1 or n == 0:
        return curve.astype(np.float32)
    csum = np.concatenate([[0.0], np.cumsum(curve, dtype=np.float64)])  # (T + 1,)
    idx = np.arange(n)
    lo = np.maximum(0, idx - window // 2)  # (T,)
    hi = np.minimum(n, idx + (window - 1 - window // 2) + 1)  # (T,)
    return ((csum[hi] - csum[lo]) / (hi - lo)).astype(np.float32)


def _runs(mask: np.ndarray) -> np.ndarray:
    """[start, end) of each maximal run of True in `mask` -> (R, 2) int."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))  # (2R,)
    return edges.reshape(-1, 2)


class SimilarityLocalizer:
    """`Localizer` from text-clip cosine similarity; no trained weights."""

    name = "similarity"

    def __init__(
        self,
        smooth_clips: int = 3,
        relative_thresholds: Sequence[float] = (0.5, 0.65, 0.8),
        window_clips: Sequence[int] = (2, 4, 8, 16, 32, 64),
        context_weight: float = 1.0,
        nms_iou: float = 0.5,
        max_proposals: int = 256,
    ) -> None:
        if smooth_clips < 1:
            raise InputError(f"smooth_clips must be >= 1, got {smooth_clips}")
        if any(not 0.0 <= r <= 1.0 for r in relative_thresholds):
            raise InputError(f"relative_thresholds must be in [0, 1], got {relative_thresholds}")
        if any(w < 1 for w in window_clips):
            raise InputError(f"window_clips must be >= 1, got {window_clips}")
        if not relative_thresholds and not window_clips:
            raise InputError("need relative_thresholds or window_clips to propose moments")
        check_proposal_options(nms_iou, max_proposals)
        self.smooth_clips = smooth_clips
        self.relative_thresholds = tuple(relative_thresholds)
        self.window_clips = tuple(window_clips)
        self.context_weight = context_weight
        self.nms_iou = nms_iou
        self.max_proposals = max_proposals

    def localize(
        self, query: QueryText, videos: Sequence[VideoClips], top_k: int
    ) -> list[VideoMoments]:
        if top_k < 0:
            raise InputError(f"top_k must be >= 0, got {top_k}")
        sentence = query.unit_sentence()  # (D,)
        return [self._one(sentence, video, top_k) for video in videos]

    def curve(self, sentence: np.ndarray, video: VideoClips) -> np.ndarray:
        """Smoothed cosine similarity per clip -> (T,) float32."""
        clips = video.matrix(len(sentence))  # (T, D)
        norms = np.linalg.norm(clips, axis=1)  # (T,)
        cosine = clips @ sentence / np.maximum(norms, 1e-12)  # (T,)
        return smooth(cosine, self.smooth_clips)

    def proposals(self, curve: np.ndarray) -> np.ndarray:
        """Candidate spans in clips, [start, end) rows -> (P, 2) int, deduplicated."""
        n = len(curve)
        spans = [np.array([[0, n]])]
        low, high = float(curve.min()), float(curve.max())
        if high - low <= FLAT_RANGE:
            return spans[0]  # nothing stands out: the whole video
        for r in self.relative_thresholds:
            spans.append(_runs(curve >= low + r * (high - low)))
        for length in self.window_clips:
            if length > n:
                continue
            starts = np.arange(0, n - length + 1, max(1, length // 2))  # (W,)
            if starts[-1] != n - length:
                starts = np.append(starts, n - length)
            spans.append(np.stack([starts, starts + length], axis=1))
        return np.unique(np.concatenate(spans), axis=0)

    def score(self, curve: np.ndarray, spans: np.ndarray) -> np.ndarray:
        """Inside mean minus `context_weight` x surrounding mean, per span -> (P,)."""
        n = len(curve)
        csum = np.concatenate([[0.0], np.cumsum(curve, dtype=np.float64)])  # (T + 1,)
        s, e = spans[:, 0], spans[:, 1]  # (P,), (P,)
        length = e - s
        inside = (csum[e] - csum[s]) / length
        left = np.maximum(0, s - length)
        right = np.minimum(n, e + length)
        ctx_sum = (csum[s] - csum[left]) + (csum[right] - csum[e])
        ctx_count = (s - left) + (right - e)
        mean_all = csum[n] / n
        context = np.where(ctx_count > 0, ctx_sum / np.maximum(ctx_count, 1), mean_all)
        return inside - self.context_weight * context

    def _one(self, sentence: np.ndarray, video: VideoClips, top_k: int) -> VideoMoments:
        curve = self.curve(sentence, video)  # (T,)
        if len(curve) == 0 or top_k == 0:
            return VideoMoments(video.video_id, [], curve)
        spans = self.proposals(curve)  # (P, 2)
        scores = self.score(curve, spans)  # (P,)
        best = np.argsort(-scores, kind="stable")[: self.max_proposals]
        cs = video.clip_seconds
        end_cap = video.duration_s if video.duration_s > 0 else len(curve) * cs
        moments = [
            Moment(
                float(spans[i, 0] * cs),
                float(min(spans[i, 1] * cs, max(end_cap, spans[i, 0] * cs))),
                float(scores[i]),
            )
            for i in best
        ]
        return VideoMoments(video.video_id, nms(moments, self.nms_iou, top_k), curve)
