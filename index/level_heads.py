"""The `trained` level strategy: level heads from an encoder checkpoint applied to clips.

`vtr train encoder` stores level heads next to the encoder's weights
(engine/train_encoder/model.py): global = attention pooling over every clip, action = a
temporal convolution + attention over each window, entity = attention pooling over each
visual state. This module cuts a video exactly as the `pooling` strategy does (same
windows, same entity states, same spans: it takes them from `pooling_levels`) and
replaces each mean by the head's vector. The heads are about 0.25 M weights and run on
the CPU in a few milliseconds per video (about 4 ms for 90 clips).

`trained` is registered with the heads shipped with the `vtr-synth-s` encoder; with any
other checkpoint of `vtr train encoder` (`[encoder] name = "vtr:PATH"`), ingest, reindex
and search resolve `[levels] strategy = "trained"` to that checkpoint's own heads
(`trained_strategy_for`, registered as `trained:PATH`). An encoder without level heads
cannot use `trained`.

    from index.level_heads import trained_levels_from
    levels = trained_levels_from(Path("enc.pt"))(clips, duration_s, LevelParams())
"""

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from engine.encoder_checkpoint import read_checkpoint
from engine.encoder_registry import resolve_encoder
from engine.errors import InputError, ModelError
from engine.train_encoder.model import LevelHeads, heads_from_checkpoint
from engine.train_encoder.train import SpanLayout
from index.levels import (
    LevelParams,
    LevelStrategy,
    LevelVectors,
    SpanEmbedder,
    action_windows,
    entity_states,
    pooling_levels,
    register_level_strategy,
)

log = logging.getLogger(__name__)

SHIPPED_ENCODER = "vtr-synth-s"
TRAINED = "trained"


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> LevelHeads:
    del mtime_ns  # part of the cache key: a rewritten checkpoint is read again
    return heads_from_checkpoint(read_checkpoint(Path(path)))


def load_level_heads(checkpoint: Path) -> LevelHeads:
    """The level heads of an encoder checkpoint (read once per file version)."""
    path = Path(checkpoint).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError as e:
        raise ModelError(
            f"no encoder checkpoint at {path} for the trained level heads; "
            "train one with `vtr train encoder` or use [levels] strategy = 'pooling'"
        ) from e
    return _load(str(path), mtime)


def clip_ranges(clips: np.ndarray, params: LevelParams) -> dict[str, list[tuple[int, int]]]:
    """The `pooling` layout's clip ranges: action windows and entity states."""
    return {
        "action": action_windows(
            len(clips), params.action_window_clips, params.action_stride_clips
        ),
        "entity": entity_states(clips, params.entity_threshold),
    }


def span_layout(params: LevelParams) -> SpanLayout:
    """The index's layout for training the heads (`engine.train_encoder.train`)."""
    return SpanLayout(
        spans=functools.partial(clip_ranges, params=params),
        params={
            "action_window_clips": params.action_window_clips,
            "action_stride_clips": params.action_stride_clips,
            "entity_threshold": params.entity_threshold,
            "clip_seconds": params.clip_seconds,
        },
    )


def apply_heads(
    heads: LevelHeads, clips: np.ndarray, duration_s: float, params: LevelParams
) -> list[LevelVectors]:
    """Level vectors from `heads`, with the spans and order of `pooling_levels`."""
    pooled = pooling_levels(clips, duration_s, params)  # validates; gives the spans
    clips = np.asarray(clips, dtype=np.float32)
    if clips.shape[1] != heads.config.dim:
        raise InputError(
            f"the trained level heads take {heads.config.dim}-d clip features, these are "
            f"{clips.shape[1]}-d: index with the heads' encoder or use the pooling strategy"
        )
    ranges = clip_ranges(clips, params)
    with torch.inference_mode():
        vectors = heads.levels(torch.from_numpy(clips), ranges["action"], ranges["entity"])
    out = []
    for level in pooled:
        v = vectors[level.level].numpy().astype(np.float32)  # (n, D)
        if len(v) != len(level.spans_s):
            raise ModelError(f"internal: {level.level} heads gave {len(v)} vectors")
        out.append(LevelVectors(level.level, v, level.spans_s))
    return out


def head_spans(
    heads: LevelHeads, clips: np.ndarray, ranges: Sequence[tuple[int, int]]
) -> np.ndarray:
    """The action head's vectors of any clip ranges of one video -> (N, D) float32, all in
    one pass over the video (`LevelHeads.action_span_vectors`)."""
    clips = np.asarray(clips, dtype=np.float32)
    if clips.ndim != 2 or clips.shape[1] != heads.config.dim:
        raise InputError(
            f"the trained level heads take {heads.config.dim}-d clip features, got shape "
            f"{clips.shape}: index with the heads' encoder or use the pooling strategy"
        )
    bounds = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)  # (N, 2)
    if len(bounds) and not ((bounds[:, 0] >= 0) & (bounds[:, 0] < bounds[:, 1])).all():
        raise InputError("clip ranges must satisfy 0 <= start < end")
    if len(bounds) and bounds[:, 1].max() > len(clips):
        raise InputError(f"clip ranges past the video's {len(clips)} clips")
    with torch.inference_mode():
        span = torch.from_numpy(bounds)
        vectors = heads.action_span_vectors(torch.from_numpy(clips), span[:, 0], span[:, 1])
    return vectors.numpy()


def trained_levels_from(checkpoint: Path) -> LevelStrategy:
    """A level strategy using the heads of `checkpoint`."""
    path = Path(checkpoint)

    def strategy(clips: np.ndarray, duration_s: float, params: LevelParams) -> list[LevelVectors]:
        return apply_heads(load_level_heads(path), clips, duration_s, params)

    return strategy


def trained_spans_from(checkpoint: Path) -> SpanEmbedder:
    """The action-span embedding of the heads of `checkpoint`."""
    path = Path(checkpoint)

    def spans(clips: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
        return head_spans(load_level_heads(path), clips, ranges)

    return spans


def shipped_checkpoint() -> Path:
    """Where the shipped encoder's checkpoint (with its heads) lives."""
    return Path(resolve_encoder(SHIPPED_ENCODER).weights)


def trained_levels(clips: np.ndarray, duration_s: float, params: LevelParams) -> list[LevelVectors]:
    """The `trained` strategy: the heads shipped with the vtr-synth-s encoder."""
    return apply_heads(load_level_heads(shipped_checkpoint()), clips, duration_s, params)


def trained_spans(clips: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """The `trained` strategy's action vectors of any clip ranges (span localizer)."""
    return head_spans(load_level_heads(shipped_checkpoint()), clips, ranges)


def register_trained_levels(name: str, checkpoint: Path) -> None:
    """Make the heads of `checkpoint` available as level strategy `name`."""
    register_level_strategy(name, trained_levels_from(checkpoint), trained_spans_from(checkpoint))


def trained_strategy_for(encoder: str) -> str:
    """The strategy name of the level heads in `encoder`'s checkpoint, registered on
    first use; `trained` itself for the shipped encoder."""
    spec = resolve_encoder(encoder)
    if spec.backend != "vtr":
        raise InputError(
            f"[levels] strategy 'trained' needs an encoder trained by `vtr train encoder` "
            f"(vtr-synth-s4, vtr-synth-s or vtr:CHECKPOINT), whose checkpoint holds the "
            f"level heads; {encoder!r} has none: use strategy 'pooling'"
        )
    path = Path(spec.weights).resolve()
    if path == shipped_checkpoint().resolve():
        return TRAINED
    name = f"{TRAINED}:{path}"
    register_trained_levels(name, path)
    return name


def as_level_fn(
    strategy: LevelStrategy, params: LevelParams
) -> Callable[[np.ndarray, float], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A strategy as the evaluator's function: (clips, duration) -> level -> (vectors, spans)."""

    def fn(clips: np.ndarray, duration_s: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {lv.level: (lv.vectors, lv.spans_s) for lv in strategy(clips, duration_s, params)}

    return fn


register_level_strategy(TRAINED, trained_levels, trained_spans)
