"""Background ingest jobs for the HTTP API.

`IngestJobs.start` runs `index.ingest.ingest` in a thread and returns the job row that
ingest creates, handed over by ingest's `on_job` hook as soon as it exists (ingest
records progress in it as videos finish, and `GET /v1/jobs/{id}` reads it). Errors
raised before the row exists (an unknown collection, another ingest holding the
collection's lock) are raised to the caller, so the request fails with their status
instead of creating a job. When the run ends, the search service forgets the
collection's cached indexes, and uploaded copies of videos that were already in the
collection are deleted.

A server stopped mid-ingest leaves the job `running`; the next ingest of the collection
marks it failed and finishes its videos (ingest is resumable).
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.config import Settings
from engine.encoders import create_encoder
from engine.errors import CatalogError
from index.catalog import Catalog, CollectionRecord, JobRecord
from index.ingest import EncoderFactory, IngestResult, ingest

log = logging.getLogger(__name__)


class IngestJobs:
    """Starts ingests in threads; one instance per app."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        on_finished: Callable[[int], None],
        encoder_factory: EncoderFactory = create_encoder,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.on_finished = on_finished
        self.encoder_factory = encoder_factory
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(
        self,
        collection: CollectionRecord,
        paths: Sequence[Path],
        *,
        uploads: Sequence[Path] = (),
        on_cleanup: Callable[[IngestResult | None], None] | None = None,
    ) -> JobRecord:
        """Start ingesting `paths` (resolved files) and return its job once it exists."""
        inputs = [str(p) for p in paths]
        done = threading.Event()
        failure: list[BaseException] = []
        created: list[JobRecord] = []

        def job_created(job: JobRecord) -> None:
            created.append(job)
            done.set()

        def run() -> None:
            result: IngestResult | None = None
            try:
                result = ingest(
                    self.catalog,
                    self.settings,
                    collection.name,
                    inputs,
                    encoder_factory=self.encoder_factory,
                    on_job=job_created,
                )
                log.info(
                    "job %d on %s: %d indexed, %d already there, %d failed",
                    result.job.id,
                    collection.name,
                    len(result.ready),
                    len(result.skipped),
                    len(result.failed),
                )
            except BaseException as e:
                failure.append(e)
                log.warning("ingest into %s failed: %s", collection.name, e, exc_info=True)
            finally:
                done.set()
                try:
                    self.on_finished(collection.id)
                    if on_cleanup is not None:
                        on_cleanup(result)
                finally:
                    with self._lock:
                        self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"ingest-{collection.name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        done.wait()
        if created:
            return created[0]
        if failure:
            raise failure[0]
        raise CatalogError("ingest ended without recording a job")

    def running(self) -> int:
        with self._lock:
            return len(self._threads)

    def wait(self, timeout_s: float) -> bool:
        """Wait for running ingests to end (True) or for `timeout_s` to pass (False)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            threads[0].join(remaining)
