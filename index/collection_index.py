"""The FAISS indexes of one collection (one per level), kept in step with the catalog.

Layout: `<data_dir>/indexes/<collection id>/<level>/` (see index/index_store.py). The
catalog is the source of truth: a segment's `vector_id` is set only after the index
holding it has been saved, so after a crash `reconcile` can tell what is missing (ready
videos' segments with no `vector_id`: re-added from the feature store) and what is stale
(ids in an index with no segment: removed). Level vectors are always computed from the
float16 features as stored, so a recomputation gives the same vectors as the first run.
"""

import fcntl
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select, update

from engine.config import IndexSettings, LevelSettings
from engine.errors import ConflictError
from engine.feature_store import FeatureStore
from index.catalog import Catalog, CollectionRecord, VideoRecord
from index.catalog_schema import Segment, Video, VideoStatus
from index.index_factory import spec_from_settings
from index.levels import LEVELS, LevelParams, LevelVectors, level_strategy
from index.vector_index import VectorIndex

log = logging.getLogger(__name__)


def indexes_dir(data_dir: Path, collection_id: int) -> Path:
    """Where a collection's FAISS indexes live."""
    return data_dir / "indexes" / str(collection_id)


def features_dir(data_dir: Path, collection_id: int) -> Path:
    """Where a collection's clip features live."""
    return data_dir / "features" / str(collection_id)


def ready_video_features(
    catalog: Catalog, data_dir: Path, collection: CollectionRecord
) -> Iterator[tuple[VideoRecord, np.ndarray]]:
    """Each ready video of `collection` (id order) with its clip features, float32."""
    root = features_dir(data_dir, collection.id)
    dim = FeatureStore.stored_dim(root)
    if dim is None:
        return
    store = FeatureStore.open(root, dim)
    offset = 0
    while videos := catalog.list_videos(collection.name, VideoStatus.READY, 500, offset):
        offset += len(videos)
        for video in videos:
            address = catalog.feature_address(video.id)
            yield video, np.asarray(store.read(address), dtype=np.float32)


@contextmanager
def collection_lock(data_dir: Path, collection: CollectionRecord) -> Iterator[None]:
    """Hold the collection's writer lock (ingest, reindex), or fail at once if taken."""
    lock_dir = data_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / f"ingest-{collection.id}.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise ConflictError(
                f"another ingest or reindex is running on collection {collection.name!r};"
                " wait for it to finish"
            ) from e
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def level_params(levels: LevelSettings, clip_seconds: float) -> LevelParams:
    return LevelParams(
        clip_seconds=clip_seconds,
        action_window_clips=levels.action_window_clips,
        action_stride_clips=levels.action_stride_clips,
        entity_threshold=levels.entity_threshold,
    )


@dataclass
class LevelComputer:
    """Clip features -> level vectors, with the configured strategy and parameters."""

    strategy: str
    params: LevelParams

    def __call__(self, clips: np.ndarray, duration_s: float) -> list[LevelVectors]:
        stored = np.asarray(clips, dtype=np.float16).astype(np.float32)  # as the store holds them
        return level_strategy(self.strategy)(stored, duration_s, self.params)


def segment_rows(levels: Iterable[LevelVectors]) -> list[tuple[str, float, float]]:
    """(level, start_s, end_s) per vector, in the order `finish_video` gets them."""
    return [(lv.level, float(start), float(end)) for lv in levels for start, end in lv.spans_s]


class CollectionIndexes:
    """Per-level `VectorIndex`es of one collection; created on first add."""

    def __init__(self, root: Path, encoder: str, dim: int, settings: IndexSettings) -> None:
        self.root = root
        self.encoder = encoder
        self.dim = dim
        self.settings = settings
        self._indexes: dict[str, VectorIndex] = {}
        self._dirty: set[str] = set()

    @classmethod
    def open(
        cls, root: Path, encoder: str, dim: int, settings: IndexSettings
    ) -> "CollectionIndexes":
        """Load every saved level index (refusing another encoder or dimension)."""
        indexes = cls(root, encoder, dim, settings)
        for level in LEVELS:
            directory = root / level
            if VectorIndex.exists(directory):
                indexes._indexes[level] = VectorIndex.load(
                    directory,
                    encoder,
                    dim,
                    device=settings.device,
                    search_threads=settings.search_threads,
                )
        return indexes

    def get(self, level: str) -> VectorIndex | None:
        return self._indexes.get(level)

    def add(self, level: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        index = self._indexes.get(level)
        if index is None:
            spec = spec_from_settings(len(ids), self.dim, self.settings)
            self._indexes[level] = VectorIndex.build(
                ids,
                vectors,
                spec,
                encoder=self.encoder,
                device=self.settings.device,
                search_threads=self.settings.search_threads,
            )
        else:
            index.add(ids, vectors)
        self._dirty.add(level)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids from every level; returns how many vectors went."""
        removed = 0
        for level, index in self._indexes.items():
            count = index.remove(ids)
            if count:
                removed += count
                self._dirty.add(level)
        return removed

    def save(self) -> None:
        """Write the changed levels atomically."""
        for level in sorted(self._dirty):
            self._indexes[level].save(self.root / level)
        self._dirty.clear()

    def replace(self, level: str, index: VectorIndex) -> None:
        self._indexes[level] = index
        self._dirty.add(level)


def add_video_vectors(
    indexes: CollectionIndexes, levels: list[LevelVectors], segment_ids: list[int]
) -> None:
    """Add one video's level vectors under the ids `finish_video` gave its segments."""
    start = 0
    for lv in levels:
        ids = np.asarray(segment_ids[start : start + len(lv.vectors)], dtype=np.int64)
        indexes.add(lv.level, ids, lv.vectors)
        start += len(lv.vectors)


def mark_indexed(catalog: Catalog, segment_ids: list[int]) -> None:
    """Record that these segments' vectors are in a saved index."""
    if not segment_ids:
        return
    with catalog.session() as session:
        for chunk_start in range(0, len(segment_ids), 5000):
            chunk = segment_ids[chunk_start : chunk_start + 5000]
            session.execute(
                update(Segment).where(Segment.id.in_(chunk)).values(vector_id=Segment.id)
            )


def reconcile(
    catalog: Catalog,
    collection_id: int,
    indexes: CollectionIndexes,
    store: FeatureStore,
    compute_levels: Callable[[np.ndarray, float], list[LevelVectors]],
) -> tuple[int, int]:
    """Bring the indexes in line with the catalog after a crash or a deletion.

    Returns (stale vectors removed, videos re-added).
    """
    with catalog.session() as session:
        known = np.array(
            session.scalars(
                select(Segment.id).join(Video).where(Video.collection_id == collection_id)
            ).all(),
            dtype=np.int64,
        )
        unindexed_videos = session.scalars(
            select(Video.id)
            .join(Segment, Segment.video_id == Video.id, isouter=True)
            .where(
                Video.collection_id == collection_id,
                Video.status == VideoStatus.READY,
                Segment.vector_id.is_(None),
            )
            .distinct()
        ).all()
    stale = 0
    for level in LEVELS:
        index = indexes.get(level)
        if index is not None:
            orphans = np.setdiff1d(index.ids(), known)
            if len(orphans):
                stale += indexes.remove(orphans)
    done: list[int] = []
    for video_id in unindexed_videos:
        video = catalog.get_video(video_id)
        address = catalog.feature_address(video_id)
        levels = compute_levels(np.asarray(store.read(address)), video.duration_s or 0.0)
        old = _segment_ids(catalog, video_id)
        indexes.remove(np.asarray(old, dtype=np.int64))
        new_ids = catalog.replace_segments(video_id, segment_rows(levels))
        add_video_vectors(indexes, levels, new_ids)
        done.extend(new_ids)
    indexes.save()
    mark_indexed(catalog, done)
    if stale or unindexed_videos:
        log.info(
            "reconciled indexes: %d stale vectors removed, %d videos re-added",
            stale,
            len(unindexed_videos),
        )
    return stale, len(unindexed_videos)


def _segment_ids(catalog: Catalog, video_id: int) -> list[int]:
    with catalog.session() as session:
        return list(session.scalars(select(Segment.id).where(Segment.video_id == video_id)))
