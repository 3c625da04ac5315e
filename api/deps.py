"""Per-app state and the FastAPI dependencies that hand it to routes.

`AppState` is built by the app's lifespan (api/app.py): one Catalog, one SearchService
(models and indexes loaded once, shared by every request thread), one ingest runner,
the metrics registry and the thumbnail cache. Routes take what they need through the
`Annotated` aliases below (`CatalogDep`, `SearcherDep`, ...), never from globals.

When the catalog is missing at start-up the server still starts: every route that needs
it answers 503 (catalog_not_initialised) until `vtr init` has run, then it opens.
Several server processes (uvicorn workers) each cache indexes; `refresh_indexes` notices
when another process saved a collection's indexes (their manifest files changed) and
drops the stale cache before a search.
"""

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from api.jobs import IngestJobs
from api.media import ForbiddenError, ThumbnailCache, confine, is_within, uploads_dir
from api.metrics import Metrics
from api.search import SearchService
from engine.config import Settings
from engine.encoders import Encoder, create_encoder
from engine.errors import VtrError
from index.catalog import Catalog, CollectionRecord
from index.collection_index import indexes_dir
from index.index_store import MANIFEST_NAME
from index.levels import LEVELS

log = logging.getLogger(__name__)

IndexMark = tuple[tuple[int, int, int] | None, ...]
EncoderFactory = Callable[[str, str], Encoder]  # (name or spec, device) -> encoder


class AppState:
    """Everything one app instance shares between requests."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        encoder_factory: EncoderFactory = create_encoder,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.encoder_factory = encoder_factory
        self.thumbnails = ThumbnailCache(settings.api.thumbnail_cache)
        self.data_dir = settings.storage.data_dir.resolve()
        self.uploads = uploads_dir(self.data_dir)
        self.media_roots = [Path(root).resolve() for root in settings.api.media_roots]
        self._catalog: Catalog | None = None
        self._search: SearchService | None = None
        self._jobs: IngestJobs | None = None
        self._marks: dict[int, IndexMark] = {}
        self._lock = threading.Lock()

    # Start-up and shut-down ------------------------------------------------------------

    def start(self) -> None:
        """Open the catalog and load the models of existing collections, if possible."""
        try:
            catalog = self.catalog()
        except VtrError as e:
            log.warning("serving without a catalog for now: %s", e)
            return
        search = self.search()
        for spec in sorted({c.encoder_spec for c in catalog.list_collections()}):
            try:
                search.encoder(spec)
                log.info("loaded encoder %s", spec)
            except VtrError as e:
                log.error("cannot load encoder %s (searches that need it will fail): %s", spec, e)

    def close(self, wait_s: float = 5.0) -> None:
        if self._jobs is not None and not self._jobs.wait(wait_s):
            log.warning(
                "stopping with %d ingest(s) running; rerun them to finish their jobs",
                self._jobs.running(),
            )
        if self._catalog is not None:
            self._catalog.close()

    # Shared objects --------------------------------------------------------------------

    def catalog(self) -> Catalog:
        with self._lock:
            if self._catalog is None:
                self._catalog = Catalog.open(
                    self.settings.catalog_url, self.settings.catalog.busy_timeout_s
                )
            return self._catalog

    def search(self) -> SearchService:
        catalog = self.catalog()
        with self._lock:
            if self._search is None:
                self._search = SearchService(
                    self.settings, catalog, encoder_factory=self.encoder_factory
                )
            return self._search

    def jobs(self) -> IngestJobs:
        catalog = self.catalog()
        with self._lock:
            if self._jobs is None:
                self._jobs = IngestJobs(
                    self.settings,
                    catalog,
                    self.forget_indexes,
                    encoder_factory=self.encoder_factory,
                )
            return self._jobs

    # Media files -----------------------------------------------------------------------

    def media_file(self, path: Path) -> Path:
        """A file the server may serve: under api.media_roots (but not in the data
        directory: the catalog, features, indexes), or an uploaded file."""
        resolved = confine(path, [*self.media_roots, self.uploads])
        if is_within(resolved, [self.data_dir]) and not is_within(resolved, [self.uploads]):
            raise ForbiddenError(f"{path} is inside the data directory")
        return resolved

    # Index caches ----------------------------------------------------------------------

    def _mark(self, collection_id: int) -> IndexMark:
        root = indexes_dir(self.settings.storage.data_dir, collection_id)
        marks: list[tuple[int, int, int] | None] = []
        for level in LEVELS:
            try:
                st = os.stat(root / level / MANIFEST_NAME)
                marks.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                marks.append(None)
        return tuple(marks)

    def forget_indexes(self, collection_id: int) -> None:
        """Drop a collection's cached indexes and features (after an ingest or deletion)."""
        with self._lock:
            self._marks.pop(collection_id, None)
            search = self._search
        if search is not None:
            search.invalidate(collection_id)

    def refresh_indexes(self, collection: CollectionRecord) -> None:
        """Drop the cache of a collection whose indexes changed on disk since last seen."""
        mark = self._mark(collection.id)
        with self._lock:
            previous = self._marks.get(collection.id)
            self._marks[collection.id] = mark
            search = self._search
        if previous is not None and previous != mark and search is not None:
            log.info("indexes of collection %s changed on disk; reloading", collection.name)
            search.invalidate(collection.id)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.vtr
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_catalog(state: StateDep) -> Catalog:
    return state.catalog()


def get_searcher(state: StateDep) -> SearchService:
    return state.search()


def get_jobs(state: StateDep) -> IngestJobs:
    return state.jobs()


def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
SearcherDep = Annotated[SearchService, Depends(get_searcher)]
JobsDep = Annotated[IngestJobs, Depends(get_jobs)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
