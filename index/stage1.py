"""Stage 1: candidate videos from the per-level FAISS indexes, with fused scores.

For each level (global, action, entity) the query vector searches that level's index
for `k_per_level` segments; a video's level score is the best score of its segments in
those results. Scores are normalised per level (`none`: raw cosine; `minmax` or `zscore`
over the level's returned scores) and fused as a weighted mean over levels. A video that
a level did not return gets that level's lowest returned score: its true score is at most
that, so this is the tightest bound the search gives. Catalog filters (duration range,
user-metadata equality) become an id selector inside the FAISS search, so they act before
the top-k cut, not after it. Each candidate keeps its best segments per level: the
long-video windowing of stage 2 centres its windows on them.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sqlalchemy import Float, cast, select

from engine.errors import InputError
from index.catalog import Catalog
from index.catalog_schema import Segment, Video, VideoStatus
from index.collection_index import CollectionIndexes
from index.levels import LEVELS

Normalisation = Literal["none", "minmax", "zscore"]


@dataclass(frozen=True)
class SearchFilters:
    """Catalog conditions a result must meet."""

    min_duration_s: float | None = None
    max_duration_s: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)  # key -> required value

    def is_empty(self) -> bool:
        return self.min_duration_s is None and self.max_duration_s is None and not self.metadata


@dataclass(frozen=True)
class FusionParams:
    weights: Mapping[str, float]  # level -> weight; a level with weight 0 is not searched
    normalisation: Normalisation = "minmax"
    k_per_level: int = 200


@dataclass(frozen=True)
class SegmentHit:
    level: str
    segment_id: int
    start_s: float
    end_s: float
    score: float


@dataclass(frozen=True)
class Candidate:
    video_id: int
    score: float  # fused, higher is better
    level_scores: dict[str, float]  # raw cosine per level (None-free: imputed as described)
    segments: list[SegmentHit]  # best first, all levels


def _normalise(scores: np.ndarray, how: Normalisation) -> np.ndarray:
    if how == "none" or len(scores) == 0:
        return scores
    if how == "minmax":
        span = float(scores.max() - scores.min())
        return (scores - scores.min()) / span if span > 1e-9 else np.ones_like(scores)
    std = float(scores.std())
    return (scores - scores.mean()) / std if std > 1e-9 else np.zeros_like(scores)


def allowed_segment_ids(catalog: Catalog, collection_id: int, filters: SearchFilters) -> np.ndarray:
    """Segment ids of the collection's ready videos that pass `filters`."""
    query = (
        select(Segment.id)
        .join(Video, Segment.video_id == Video.id)
        .where(Video.collection_id == collection_id, Video.status == VideoStatus.READY)
    )
    if filters.min_duration_s is not None:
        query = query.where(Video.duration_s >= filters.min_duration_s)
    if filters.max_duration_s is not None:
        query = query.where(Video.duration_s <= filters.max_duration_s)
    for key, value in filters.metadata.items():
        element = Video.user_metadata[key]
        if isinstance(value, bool):
            query = query.where(element.as_boolean() == value)
        elif isinstance(value, int | float):
            query = query.where(cast(element.as_float(), Float) == float(value))
        elif isinstance(value, str):
            query = query.where(element.as_string() == value)
        else:
            raise InputError(f"metadata filter {key!r} must be a string, number or boolean")
    with catalog.session() as session:
        return np.array(session.scalars(query).all(), dtype=np.int64)


def _segments(catalog: Catalog, ids: Sequence[int]) -> dict[int, tuple[int, float, float]]:
    """segment id -> (video id, start_s, end_s)."""
    result: dict[int, tuple[int, float, float]] = {}
    with catalog.session() as session:
        for start in range(0, len(ids), 5000):
            rows = session.execute(
                select(Segment.id, Segment.video_id, Segment.start_s, Segment.end_s).where(
                    Segment.id.in_(list(ids[start : start + 5000]))
                )
            )
            for seg_id, video_id, start_s, end_s in rows:
                result[seg_id] = (video_id, start_s, end_s)
    return result


def search_candidates(
    catalog: Catalog,
    collection_id: int,
    indexes: CollectionIndexes,
    queries: Mapping[str, np.ndarray],
    fusion: FusionParams,
    top_n: int,
    filters: SearchFilters | None = None,
) -> list[Candidate]:
    """The `top_n` best videos for the per-level query vectors `queries` (level -> (D,))."""
    if top_n < 1:
        raise InputError("top_n must be >= 1")
    allowed = None
    if filters is not None and not filters.is_empty():
        allowed = allowed_segment_ids(catalog, collection_id, filters)
        if len(allowed) == 0:
            return []
    level_hits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for level in LEVELS:
        weight = fusion.weights.get(level, 0.0)
        index = indexes.get(level)
        if weight <= 0 or index is None or level not in queries:
            continue
        found_scores, found_ids = index.search(
            queries[level], fusion.k_per_level, allowed_ids=allowed
        )
        level_hits[level] = (found_scores[0], found_ids[0])
    where = _segments(catalog, [int(i) for _, ids in level_hits.values() for i in ids])
    per_video: dict[int, dict[str, float]] = {}
    hits_by_video: dict[int, list[SegmentHit]] = {}
    floors: dict[str, float] = {}
    normalised_floor: dict[str, float] = {}
    normalised: dict[int, dict[str, float]] = {}
    for level, (scores, ids) in level_hits.items():
        if len(scores) == 0:
            continue
        norm = _normalise(scores.astype(np.float64), fusion.normalisation)
        floors[level] = float(scores.min())
        normalised_floor[level] = float(norm.min())
        for raw, value, seg_id in zip(scores, norm, ids, strict=True):
            if int(seg_id) not in where:
                continue  # removed from the catalog since the index was saved
            video_id, start_s, end_s = where[int(seg_id)]
            best = per_video.setdefault(video_id, {})
            if level not in best or raw > best[level]:
                best[level] = float(raw)
                normalised.setdefault(video_id, {})[level] = float(value)
            hits_by_video.setdefault(video_id, []).append(
                SegmentHit(level, int(seg_id), start_s, end_s, float(raw))
            )
    total_weight = sum(fusion.weights.get(level, 0.0) for level in floors)
    candidates = []
    for video_id, raw_scores in per_video.items():
        fused = sum(
            fusion.weights[level] * normalised[video_id].get(level, normalised_floor[level])
            for level in floors
        ) / max(total_weight, 1e-12)
        level_scores = {level: raw_scores.get(level, floors[level]) for level in floors}
        segments = sorted(hits_by_video[video_id], key=lambda hit: -hit.score)
        candidates.append(Candidate(video_id, fused, level_scores, segments))
    candidates.sort(key=lambda c: (-c.score, c.video_id))
    return candidates[:top_n]
