"""Types every localizer shares: what goes in (query text, video clips), what comes out.

A localizer takes one query and a batch of candidate videos and returns, per video, its
best moments (seconds, best first) and a per-clip saliency curve. Stage-1 hints
(`VideoClips.focus_s`) tell long-video windowing where to look first.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from engine.errors import InputError

if TYPE_CHECKING:
    from engine.encoders import TextFeatures


@dataclass(frozen=True)
class Moment:
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class QueryText:
    """One encoded sentence."""

    text: str
    sentence: np.ndarray  # (D,) float32, L2-normalised, same space as the clip embeddings
    tokens: np.ndarray  # (L, W) float32 token features after ln_final; L valid tokens incl. SOT/EOT

    @classmethod
    def from_features(cls, text: str, features: "TextFeatures", row: int = 0) -> "QueryText":
        """Row `row` of an encoder's `encode_text` output: its sentence and valid tokens."""
        return cls(text, features.sentence[row], features.tokens[row][features.mask[row]])

    def unit_sentence(self) -> np.ndarray:
        """The sentence embedding as a float32 unit vector (D,); refuses a zero one."""
        sentence = np.asarray(self.sentence, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(sentence))
        if norm == 0.0 or not np.isfinite(norm):
            raise InputError("the query's sentence embedding is zero or not finite")
        return sentence / norm


@dataclass(frozen=True)
class VideoClips:
    """One candidate video: its clip features and timing."""

    video_id: int
    clips: np.ndarray  # (T, D) clip embeddings, L2-normalised; float16 or float32
    clip_seconds: float
    duration_s: float
    focus_s: Sequence[tuple[float, float]] = field(default=())  # stage-1 best segments

    def matrix(self, dim: int) -> np.ndarray:
        """The clip features as float32 (T, dim); refuses features of another size."""
        clips = np.asarray(self.clips, dtype=np.float32)
        if clips.ndim != 2 or clips.shape[1] != dim:
            raise InputError(
                f"video {self.video_id}: clips of shape {clips.shape} do not match a {dim}-d query"
            )
        return clips


@dataclass(frozen=True)
class VideoMoments:
    """A localizer's answer for one video."""

    video_id: int
    moments: list[Moment]  # best first
    saliency: np.ndarray  # (T,) float32, one score per clip


class Localizer(Protocol):
    """Stage 2: finds moments of `query` inside each of `videos`."""

    name: str

    def localize(
        self, query: QueryText, videos: Sequence[VideoClips], top_k: int
    ) -> list[VideoMoments]:
        """One `VideoMoments` per input video, in input order, at most `top_k` moments each."""
        ...
