"""Rebuilding a collection's FAISS indexes from the catalog and the feature store.

`vtr reindex` runs it: after changing `[levels]` or `[index]` settings, to recover a
missing or damaged index file, or when a growing collection has outgrown the index type
chosen when it was small (ingest calls `needs_rebuild` and rebuilds by itself then).
Every ready video's level vectors are recomputed from its stored features, its
segments replaced, fresh indexes built (type chosen for the full size) and saved, and
only then are the segments marked indexed; a crash part-way is reconciled by the next
ingest or rerun, like any ingest.
"""

import logging
from collections.abc import Callable

import numpy as np

from engine.config import Settings
from engine.feature_store import FeatureStore
from index.catalog import Catalog, CollectionRecord
from index.catalog_schema import VideoStatus
from index.collection_index import (
    CollectionIndexes,
    LevelComputer,
    collection_lock,
    features_dir,
    indexes_dir,
    level_params,
    mark_indexed,
    ready_video_features,
    segment_rows,
)
from index.index_factory import spec_from_settings
from index.levels import LEVELS, strategy_for_encoder
from index.vector_index import VectorIndex

log = logging.getLogger(__name__)


def _kind(factory: str) -> str:
    base = factory.split(",Refine")[0]
    if "IVF" not in base:
        return "flat"
    return "ivf_pq" if "PQ" in base else "ivf_flat"


def needs_rebuild(indexes: CollectionIndexes) -> list[str]:
    """Levels whose index type no longer fits their size under the current settings."""
    stale = []
    for level in LEVELS:
        index = indexes.get(level)
        if index is None or len(index) == 0:
            continue
        wanted = spec_from_settings(len(index), index.dim, indexes.settings)
        if _kind(wanted.factory) != _kind(index.factory) or (
            indexes.settings.factory and wanted.factory != index.factory
        ):
            stale.append(level)
    return stale


def reindex(
    catalog: Catalog,
    settings: Settings,
    collection: str,
    on_video: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Rebuild every level index of `collection`; returns vectors per level."""
    record = catalog.get_collection(collection)
    with collection_lock(settings.storage.data_dir, record):
        return rebuild_levels(catalog, settings, record, on_video)


def rebuild_levels(
    catalog: Catalog,
    settings: Settings,
    record: CollectionRecord,
    on_video: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """`reindex` for a caller that already holds the collection's lock."""
    data_dir = settings.storage.data_dir
    dim = FeatureStore.stored_dim(features_dir(data_dir, record.id))
    if dim is None:
        return {}
    compute = LevelComputer(
        strategy_for_encoder(settings.levels.strategy, settings.encoder.name),
        level_params(settings.levels, settings.ingest.clip_seconds),
    )
    n_videos = catalog.count_videos(record.name, VideoStatus.READY)
    ids: dict[str, list[np.ndarray]] = {level: [] for level in LEVELS}
    vectors: dict[str, list[np.ndarray]] = {level: [] for level in LEVELS}
    for done, (video, clips) in enumerate(ready_video_features(catalog, data_dir, record), 1):
        levels = compute(clips, video.duration_s or 0.0)
        segment_ids = catalog.replace_segments(video.id, segment_rows(levels))
        start = 0
        for lv in levels:
            ids[lv.level].append(np.asarray(segment_ids[start : start + len(lv.vectors)]))
            vectors[lv.level].append(lv.vectors)
            start += len(lv.vectors)
        if on_video is not None:
            on_video(done, n_videos)
    indexes = CollectionIndexes(
        indexes_dir(data_dir, record.id), record.encoder_spec, dim, settings.index
    )
    counts: dict[str, int] = {}
    for level in LEVELS:
        if not ids[level]:
            continue
        level_ids = np.concatenate(ids[level])
        spec = spec_from_settings(len(level_ids), dim, settings.index)
        indexes.replace(
            level,
            VectorIndex.build(
                level_ids,
                np.concatenate(vectors[level]),
                spec,
                encoder=record.encoder_spec,
                device=settings.index.device,
                search_threads=settings.index.search_threads,
            ),
        )
        counts[level] = len(level_ids)
        log.info(
            "rebuilt the %s index of %s: %d vectors, %s",
            level,
            record.name,
            len(level_ids),
            spec.factory,
        )
    indexes.save()
    mark_indexed(catalog, [int(i) for level in LEVELS for chunk in ids[level] for i in chunk])
    return counts
