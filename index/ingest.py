"""Ingest service: video files -> catalog rows -> clip features -> `ready`.

Used by `vtr index` and the HTTP API alike. Each video is one unit of work:
1. its content hash registers it once per collection (a rerun skips `ready` videos),
2. the pipeline decodes and encodes it (decode overlapping the encoder),
3. its features are appended to the feature store and fsynced,
4. one catalog transaction records the feature address and level segments, `ready`,
5. its level vectors go into the collection's FAISS indexes; the indexes are saved
   every SAVE_EVERY_S and at the end, and only then are the segments marked indexed.
A kill at any point leaves at most unreferenced feature bytes, `processing` rows and
segments not marked indexed; the next ingest of the collection resets and reconciles
those (index/collection_index.py) and finishes the work without duplicates. A file
that cannot be decoded ends `failed` with its error; the batch goes on.
One ingest per collection at a time (an advisory lock file in the data directory).
"""

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engine.config import Settings
from engine.decode import iter_clips, probe
from engine.encoders import create_encoder
from engine.errors import InputError, VtrError
from engine.feature_store import FeatureStore
from engine.pipeline import FailedVideo, ImageEncoder, VideoTask, encode_videos
from engine.sources import discover_videos, sha256_file
from index.catalog import Catalog, CollectionRecord, JobRecord, VideoProbe
from index.catalog_schema import JobStatus, VideoStatus
from index.collection_index import (
    CollectionIndexes,
    LevelComputer,
    add_video_vectors,
    collection_lock,
    features_dir,
    indexes_dir,
    level_params,
    mark_indexed,
    reconcile,
    segment_rows,
)
from index.levels import strategy_for_encoder
from index.reindex import needs_rebuild, rebuild_levels

log = logging.getLogger(__name__)

EncoderFactory = Callable[[str, str], ImageEncoder]
SAVE_EVERY_S = 30.0  # save indexes at most this often during a run (and at its end)


class IngestProgress(Protocol):
    """Receives progress as an ingest runs (the CLI draws bars from it)."""

    def started(self, n_videos: int, n_todo: int) -> None: ...

    def clips_encoded(self, n_clips: int) -> None: ...

    def video_finished(self, uri: str, status: str, error: str | None) -> None: ...


@dataclass
class IngestResult:
    job: JobRecord
    ready: list[int] = field(default_factory=list)  # video ids indexed by this run
    skipped: list[int] = field(default_factory=list)  # already ready before this run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (uri, error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job.to_dict(),
            "ready": self.ready,
            "skipped": self.skipped,
            "failed": [{"uri": uri, "error": error} for uri, error in self.failed],
        }


def ingest(
    catalog: Catalog,
    settings: Settings,
    collection: str,
    inputs: Sequence[str | Path],
    *,
    recursive: bool = False,
    progress: IngestProgress | None = None,
    encoder_factory: EncoderFactory = create_encoder,
    on_job: Callable[[JobRecord], None] | None = None,
) -> IngestResult:
    """Index `inputs` (files, directories, file:// URIs) into `collection`.

    `on_job` receives the job row as soon as it exists (the API answers with it).
    """
    paths = discover_videos(inputs, settings.ingest.extensions, recursive=recursive)
    params = {"inputs": [str(i) for i in inputs], "recursive": recursive}
    with _job(catalog, settings, collection, "ingest", len(paths), params, on_job) as run:
        run.progress, run.encoder_factory = progress, encoder_factory
        run.run(paths)
    return run.result


@dataclass(frozen=True)
class FeatureVideo:
    """A video given as precomputed clip embeddings (e.g. official feature files)."""

    uri: str
    clips: np.ndarray  # (n_clips, dim) L2-normalised, one row per clip_seconds
    duration_s: float
    fps: float = 0.0
    width: int = 0
    height: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


def ingest_features(
    catalog: Catalog, settings: Settings, collection: str, videos: Sequence[FeatureVideo]
) -> IngestResult:
    """Index videos from precomputed clip features, with the same guarantees as `ingest`.

    A video is identified by the hash of its features (a rerun skips it).
    """
    with _job(catalog, settings, collection, "ingest_features", len(videos), {}) as run:
        run.add_features(videos)
    return run.result


@contextmanager
def _job(
    catalog: Catalog,
    settings: Settings,
    collection: str,
    kind: str,
    n_total: int,
    params: dict[str, Any],
    on_job: Callable[[JobRecord], None] | None = None,
) -> Iterator["_Run"]:
    """Lock the collection, recover a crashed run, and record the work as a job."""
    record = catalog.get_collection(collection)
    with collection_lock(settings.storage.data_dir, record):
        reset = catalog.recover_interrupted(record.id)
        if reset:
            log.info("resuming %d videos interrupted by an earlier ingest", reset)
        result = IngestResult(catalog.create_job(kind, record.id, n_total, params))
        if on_job is not None:
            on_job(result.job)
        try:
            run = _Run(catalog, settings, record, result)
            yield run
            if run.indexes is not None and (stale := needs_rebuild(run.indexes)):
                log.info("the %s indexes outgrew their type: rebuilding", ", ".join(stale))
                rebuild_levels(catalog, settings, record)
        except BaseException as e:
            _update(catalog, result, JobStatus.FAILED, f"{type(e).__name__}: {e}")
            raise
        result.job = _update(catalog, result, JobStatus.SUCCEEDED)


def _update(
    catalog: Catalog,
    result: IngestResult,
    status: JobStatus | None = None,
    error: str | None = None,
) -> JobRecord:
    return catalog.update_job(
        result.job.id,
        n_done=len(result.ready),
        n_failed=len(result.failed),
        n_skipped=len(result.skipped),
        status=status,
        error=error,
    )


class _Run:
    """One ingest run's state: the store and indexes, opened once."""

    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        collection: CollectionRecord,
        result: IngestResult,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.collection = collection
        self.result = result
        self.progress: IngestProgress | None = None
        self.encoder_factory: EncoderFactory = create_encoder
        self.compute_levels = LevelComputer(
            strategy_for_encoder(settings.levels.strategy, settings.encoder.name),
            level_params(settings.levels, settings.ingest.clip_seconds),
        )
        self.store_root = features_dir(settings.storage.data_dir, collection.id)
        self.store: FeatureStore | None = None
        self.indexes: CollectionIndexes | None = None
        self.unsaved: list[int] = []  # segment ids added to indexes, not yet saved
        self.last_save = time.monotonic()

    def _open(self, dim: int) -> tuple[FeatureStore, CollectionIndexes]:
        if self.store is None or self.indexes is None:
            self.store = FeatureStore.open(
                self.store_root, dim, self.settings.ingest.shard_mb << 20
            )
            self.indexes = CollectionIndexes.open(
                indexes_dir(self.settings.storage.data_dir, self.collection.id),
                self.collection.encoder_spec,
                dim,
                self.settings.index,
            )
            reconcile(
                self.catalog, self.collection.id, self.indexes, self.store, self.compute_levels
            )
        return self.store, self.indexes

    def _save(self, force: bool = False) -> None:
        """Save the indexes, then record their segments as indexed (in that order)."""
        if self.indexes is None or not self.unsaved:
            return
        if force or time.monotonic() - self.last_save >= SAVE_EVERY_S:
            self.indexes.save()
            mark_indexed(self.catalog, self.unsaved)
            self.unsaved = []
            self.last_save = time.monotonic()

    def run(self, paths: list[Path]) -> None:
        stored_dim = FeatureStore.stored_dim(self.store_root)
        if stored_dim is not None:
            self._open(stored_dim)  # finish what a crashed run left before adding more
        tasks = self._register(paths)
        if self.progress is not None:
            self.progress.started(len(paths), len(tasks))
        if tasks:
            self._encode(tasks)
        self._save(force=True)

    def _register(self, paths: list[Path]) -> list[VideoTask]:
        tasks: list[VideoTask] = []
        queued: set[int] = set()
        for path in paths:
            try:
                sha = sha256_file(path)
            except OSError as e:
                self.result.failed.append((str(path), f"cannot read {path}: {e.strerror}"))
                continue
            video, _created = self.catalog.register_video(self.collection.id, str(path), sha)
            if video.status == VideoStatus.READY or video.id in queued:
                self.result.skipped.append(video.id)  # indexed before, or twice in this batch
            else:
                queued.add(video.id)
                tasks.append(VideoTask(video.id, path))
        return tasks

    def _encode(self, tasks: list[VideoTask]) -> None:
        ingest = self.settings.ingest
        encoder = self.encoder_factory(self.collection.encoder_spec, self.settings.encoder.device)
        self._open(encoder.embed_dim)
        for task in tasks:
            self.catalog.set_video_status(task.key, VideoStatus.PROCESSING)
        decode = functools.partial(
            iter_clips,
            clip_seconds=ingest.clip_seconds,
            frames_per_clip=ingest.frames_per_clip,
            short_side=encoder.image_size,
            motion_gap_s=encoder.motion_gap_s,
        )
        outputs = encode_videos(
            tasks,
            encoder,
            decode,
            probe,
            frames_per_clip=ingest.frames_per_clip,
            batch_size=ingest.batch_size,
            workers=ingest.workers,
            on_clips=self.progress.clips_encoded if self.progress is not None else None,
        )
        for output in outputs:
            error = (
                output.error
                if isinstance(output, FailedVideo)
                else self._store(output.key, output.clips, output.info)
            )
            if error is None:
                self.result.ready.append(output.key)
            else:
                self.catalog.set_video_status(output.key, VideoStatus.FAILED, error)
                self.result.failed.append((str(output.path), error))
            _update(self.catalog, self.result)
            self._save()
            if self.progress is not None:
                self.progress.video_finished(
                    str(output.path), "failed" if error else "ready", error
                )

    def add_features(self, videos: Sequence[FeatureVideo]) -> None:
        for video in videos:
            clips = np.ascontiguousarray(video.clips, dtype=np.float32)
            if clips.ndim != 2 or len(clips) == 0:
                raise InputError(f"{video.uri}: features must be (clips, dim), got {clips.shape}")
            sha = hashlib.sha256(clips.astype(np.float16).tobytes()).hexdigest()
            record, _ = self.catalog.register_video(
                self.collection.id, video.uri, sha, video.metadata
            )
            if record.status == VideoStatus.READY:
                self.result.skipped.append(record.id)
                continue
            error = self._store(record.id, clips, video)
            if error is None:
                self.result.ready.append(record.id)
            else:
                self.catalog.set_video_status(record.id, VideoStatus.FAILED, error)
                self.result.failed.append((video.uri, error))
            self._save()
        _update(self.catalog, self.result)
        self._save(force=True)

    def _store(self, video_id: int, clips: np.ndarray, info: VideoProbe) -> str | None:
        """Features -> store (synced) -> catalog (ready + segments) -> indexes; or an error."""
        store, indexes = self._open(clips.shape[1])
        try:
            levels = self.compute_levels(clips, info.duration_s)
            address = store.append(clips)
        except VtrError as e:
            return str(e)
        segment_ids = self.catalog.finish_video(video_id, info, address, segment_rows(levels))
        add_video_vectors(indexes, levels, segment_ids)
        self.unsaved.extend(segment_ids)
        return None
