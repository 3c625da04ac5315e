"""Level embeddings: from a video's clip embeddings to its global, action and entity vectors.

- global: one vector for the whole video.
- action: one vector per temporal window of `action_window_clips`, stride
  `action_stride_clips` (events that take a few seconds).
- entity: one vector per distinct visual state: consecutive clips whose cosine to the
  running state mean stays >= `entity_threshold` are merged (objects and scenes).
Each vector comes with its time span, stored as a catalog segment. Strategies are
registered by name; `pooling` (training-free means of the CLIP clip embeddings) is the
default, and trained level heads register under their own names.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import InputError

LEVELS = ("global", "action", "entity")


@dataclass(frozen=True)
class LevelParams:
    clip_seconds: float = 2.0
    action_window_clips: int = 4
    action_stride_clips: int = 2
    entity_threshold: float = 0.9


@dataclass(frozen=True)
class LevelVectors:
    """The vectors of one level for one video, with their time spans."""

    level: str
    vectors: np.ndarray  # (n, D) float32, L2-normalised
    spans_s: np.ndarray  # (n, 2) float64 start/end seconds


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    result: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return result


def _clip_spans(
    starts: np.ndarray, ends: np.ndarray, params: LevelParams, duration_s: float
) -> np.ndarray:
    spans = np.stack([starts * params.clip_seconds, ends * params.clip_seconds], axis=1)
    return np.minimum(spans, duration_s)


def action_windows(n_clips: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) clip ranges covering every clip; the last window ends at n_clips."""
    if n_clips <= window:
        return [(0, n_clips)]
    starts = list(range(0, n_clips - window + 1, stride))
    if starts[-1] + window < n_clips:
        starts.append(n_clips - window)
    return [(s, s + window) for s in starts]


def entity_states(clips: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """[start, end) runs of consecutive clips close to their running mean."""
    runs: list[tuple[int, int]] = []
    start = 0
    total = clips[0].astype(np.float64)
    for index in range(1, len(clips)):
        mean = total / np.linalg.norm(total)
        if float(clips[index] @ mean) < threshold:
            runs.append((start, index))
            start, total = index, clips[index].astype(np.float64)
        else:
            total = total + clips[index]
    runs.append((start, len(clips)))
    return runs


def mean_spans(clips: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """`pooling`'s action embedding of any clip ranges: normalised means -> (N, D)."""
    clips = np.asarray(clips, dtype=np.float32)
    csum = np.concatenate(
        [np.zeros((1, clips.shape[1])), np.cumsum(clips, axis=0, dtype=np.float64)]
    )  # (T + 1, D)
    bounds = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)  # (N, 2)
    means = (csum[bounds[:, 1]] - csum[bounds[:, 0]]) / (bounds[:, 1] - bounds[:, 0])[:, None]
    return _normalise(means)


def pooling_levels(clips: np.ndarray, duration_s: float, params: LevelParams) -> list[LevelVectors]:
    """Training-free levels: normalised means of clip embeddings over each span."""
    if clips.ndim != 2 or len(clips) == 0:
        raise InputError(f"expected (clips, dim) embeddings, got shape {clips.shape}")
    clips = np.asarray(clips, dtype=np.float32)
    result = []
    for level, ranges in (
        ("global", [(0, len(clips))]),
        (
            "action",
            action_windows(len(clips), params.action_window_clips, params.action_stride_clips),
        ),
        ("entity", entity_states(clips, params.entity_threshold)),
    ):
        bounds = np.array(ranges)  # (n, 2) clip indices
        result.append(
            LevelVectors(
                level,
                mean_spans(clips, ranges),
                _clip_spans(bounds[:, 0], bounds[:, 1], params, duration_s),
            )
        )
    return result


LevelStrategy = Callable[[np.ndarray, float, LevelParams], list[LevelVectors]]
# (T, D) clips and [start, end) clip ranges -> (N, D) action vectors of those ranges
SpanEmbedder = Callable[[np.ndarray, Sequence[tuple[int, int]]], np.ndarray]
_STRATEGIES: dict[str, LevelStrategy] = {"pooling": pooling_levels}
_SPAN_EMBEDDERS: dict[str, SpanEmbedder] = {"pooling": mean_spans}


def register_level_strategy(name: str, strategy: LevelStrategy, spans: SpanEmbedder) -> None:
    """Make a level strategy (e.g. trained heads) available by name, with the function
    that embeds any clip range as its action level does (the span localizer uses it)."""
    _STRATEGIES[name] = strategy
    _SPAN_EMBEDDERS[name] = spans


def level_strategy(name: str) -> LevelStrategy:
    """The strategy registered as `name` (`trained` loads the shipped level heads)."""
    if name not in _STRATEGIES:
        import index.level_heads  # noqa: F401  (registers `trained`; imports this module)
    try:
        return _STRATEGIES[name]
    except KeyError as e:
        raise InputError(
            f"unknown level strategy {name!r}; known: {', '.join(sorted(_STRATEGIES))}"
        ) from e


def strategy_for_encoder(name: str, encoder: str) -> str:
    """The registered strategy that `[levels] strategy = name` means with `encoder`:
    `trained` is the level heads stored in the encoder's own checkpoint (see
    `index.level_heads.trained_strategy_for`); other names mean themselves."""
    if name != "trained":
        return name
    from index.level_heads import trained_strategy_for

    return trained_strategy_for(encoder)


def action_span_embedder(name: str) -> SpanEmbedder:
    """How strategy `name` embeds an arbitrary clip range at the action level."""
    level_strategy(name)  # loads or rejects the name
    return _SPAN_EMBEDDERS[name]
