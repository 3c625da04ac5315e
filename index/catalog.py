"""The SQL catalog: one `Catalog` object per process, over SQLite or PostgreSQL.

`Catalog.initialise(url)` creates or upgrades the schema (Alembic, `vtr init`);
`Catalog.open(url)` refuses a database that is missing or at an older schema, so every
command but `init` fails with a one-line hint instead of a SQL error. Methods return
plain records (dataclasses), never ORM objects, so callers hold no session state.
"""

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, delete, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import (
    CatalogError,
    CatalogNotInitialisedError,
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
)
from engine.feature_store import FeatureAddress
from index.catalog_schema import Collection, Job, JobStatus, Segment, Video, VideoStatus, utcnow

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@dataclass(frozen=True)
class Record:
    """Base of catalog records: `to_dict()` gives JSON-ready data."""

    def to_dict(self) -> dict[str, Any]:
        return {key: _plain(value) for key, value in asdict(self).items()}


R = TypeVar("R", bound=Record)


class VideoProbe(Protocol):
    """What ingest learned about a file (engine.decode.VideoInfo satisfies this)."""

    @property
    def duration_s(self) -> float: ...
    @property
    def fps(self) -> float: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


@dataclass(frozen=True)
class CollectionRecord(Record):
    id: int
    name: str
    encoder_spec: str
    created_at: datetime
    n_videos: int = 0


@dataclass(frozen=True)
class VideoRecord(Record):
    id: int
    collection_id: int
    uri: str
    sha256: str
    status: str
    duration_s: float | None
    fps: float | None
    width: int | None
    height: int | None
    n_clips: int | None
    error: str | None
    user_metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JobRecord(Record):
    id: int
    kind: str
    collection_id: int | None
    status: str
    progress: float
    n_total: int
    n_done: int
    n_failed: int
    n_skipped: int
    error: str | None
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


def _record(cls: type[R], row: Any, **extra: Any) -> R:
    """Copy a row's columns into a record; `extra` supplies computed fields."""
    values = {f.name: getattr(row, f.name) for f in fields(cls) if f.name not in extra}
    return cls(**values, **extra)


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _make_engine(url: str, busy_timeout_s: float) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise ConfigError(f"catalog.url is not a valid database URL: {url!r}") from e
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": busy_timeout_s})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except ImportError as e:
        raise ConfigError(f"no database driver for {safe_url(url)}: {e}") from e


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this vtr knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise CatalogError("no catalog migrations found")
    return head


class Catalog:
    """Access to the catalog database. Build with `open` or `initialise`."""

    def __init__(self, url: str, busy_timeout_s: float = 30.0) -> None:
        self.url = url
        self.engine = _make_engine(url, busy_timeout_s)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def initialise(cls, url: str, busy_timeout_s: float = 30.0) -> "Catalog":
        """Create the database (SQLite: its directory too) and migrate it to head."""
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        catalog = cls(url, busy_timeout_s)
        try:
            with catalog.engine.begin() as connection:
                command.upgrade(_alembic_config(connection), "head")
        except OperationalError as e:
            raise CatalogError(f"cannot reach the catalog at {safe_url(url)}: {e.orig}") from e
        return catalog

    @classmethod
    def open(cls, url: str, busy_timeout_s: float = 30.0) -> "Catalog":
        """Open an initialised catalog at the current schema, or raise a clear error."""
        path = _sqlite_path(url)
        if path is not None and not path.is_file():
            raise CatalogNotInitialisedError(f"no catalog at {path}; run `vtr init` first")
        catalog = cls(url, busy_timeout_s)
        current = catalog.schema_revision()
        if current is None:
            raise CatalogNotInitialisedError(
                f"the catalog at {safe_url(url)} is empty; run `vtr init` first"
            )
        if current != head_revision():
            raise CatalogNotInitialisedError(
                f"the catalog at {safe_url(url)} has schema {current}, this vtr needs "
                f"{head_revision()}; run `vtr init` to upgrade it"
            )
        return catalog

    def schema_revision(self) -> str | None:
        """The database's Alembic revision, None when it has never been initialised."""
        try:
            with self.engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except OperationalError as e:
            raise CatalogError(f"cannot reach the catalog at {safe_url(self.url)}: {e.orig}") from e

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    # Collections -------------------------------------------------------------------

    def create_collection(self, name: str, encoder_spec: str) -> CollectionRecord:
        if not COLLECTION_NAME.match(name):
            raise InputError(
                f"invalid collection name {name!r}: use 1-100 letters, digits, '_', '.', '-'"
                " starting with a letter or digit"
            )
        try:
            with self.session() as session:
                row = Collection(name=name, encoder_spec=encoder_spec)
                session.add(row)
                session.flush()
                return _record(CollectionRecord, row, n_videos=0)
        except IntegrityError as e:
            raise ConflictError(f"collection {name!r} already exists") from e

    def _collection_row(self, session: Session, name: str) -> Collection:
        row = session.scalar(select(Collection).where(Collection.name == name))
        if row is None:
            known = session.scalars(select(Collection.name).order_by(Collection.name)).all()
            hint = f"; known: {', '.join(known)}" if known else "; none exist yet"
            raise NotFoundError(f"unknown collection {name!r}{hint}")
        return row

    def get_collection(self, name: str) -> CollectionRecord:
        with self.session() as session:
            row = self._collection_row(session, name)
            return _record(CollectionRecord, row, n_videos=self._count_videos(session, row.id))

    def count_videos(self, name: str, status: VideoStatus | None = None) -> int:
        """Videos of collection `name`, only those with `status` when given."""
        with self.session() as session:
            return self._count_videos(session, self._collection_row(session, name).id, status)

    def _count_videos(
        self, session: Session, collection_id: int, status: VideoStatus | None = None
    ) -> int:
        query = select(func.count(Video.id)).where(Video.collection_id == collection_id)
        if status is not None:
            query = query.where(Video.status == status)
        return session.scalar(query) or 0

    def collection_of_video(self, video_id: int) -> CollectionRecord:
        """The collection a video belongs to (`n_videos` left at 0: not counted)."""
        with self.session() as session:
            row = session.get(Collection, self._video_row(session, video_id).collection_id)
            if row is None:  # the foreign key makes this unreachable short of corruption
                raise NotFoundError(f"video {video_id} has no collection")
            return _record(CollectionRecord, row, n_videos=0)

    def list_collections(self) -> list[CollectionRecord]:
        with self.session() as session:
            rows = session.execute(
                select(Collection, func.count(Video.id))
                .outerjoin(Video, Video.collection_id == Collection.id)
                .group_by(Collection.id)
                .order_by(Collection.name)
            ).all()
            return [_record(CollectionRecord, row, n_videos=count) for row, count in rows]

    def delete_collection(self, name: str) -> CollectionRecord:
        """Delete a collection with its videos, segments and job links."""
        record = self.get_collection(name)
        with self.session() as session:
            session.delete(self._collection_row(session, name))
        return record

    # Videos ------------------------------------------------------------------------

    def list_videos(
        self,
        collection: str | None = None,
        status: VideoStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[VideoRecord]:
        if limit < 1 or offset < 0:
            raise InputError("limit must be >= 1 and offset >= 0")
        with self.session() as session:
            query = select(Video).order_by(Video.id).limit(limit).offset(offset)
            if collection is not None:
                query = query.where(
                    Video.collection_id == self._collection_row(session, collection).id
                )
            if status is not None:
                query = query.where(Video.status == status)
            return [_record(VideoRecord, row) for row in session.scalars(query)]

    def _video_row(self, session: Session, video_id: int) -> Video:
        row = session.get(Video, video_id)
        if row is None:
            raise NotFoundError(f"unknown video id {video_id}")
        return row

    def get_video(self, video_id: int) -> VideoRecord:
        with self.session() as session:
            return _record(VideoRecord, self._video_row(session, video_id))

    def delete_video(self, video_id: int) -> VideoRecord:
        """Delete a video and its segments from the catalog."""
        with self.session() as session:
            row = self._video_row(session, video_id)
            record = _record(VideoRecord, row)
            session.delete(row)
        return record

    # Ingest ------------------------------------------------------------------------

    def register_video(
        self, collection_id: int, uri: str, sha256: str, user_metadata: dict[str, Any] | None = None
    ) -> tuple[VideoRecord, bool]:
        """The video with this content in the collection, inserted as pending if new.

        Returns (record, created). The (collection, sha256) unique makes this idempotent
        even when two ingests race: the loser reads the winner's row.
        """
        try:
            with self.session() as session:
                row = Video(
                    collection_id=collection_id,
                    uri=uri,
                    sha256=sha256,
                    status=VideoStatus.PENDING,
                    user_metadata=user_metadata or {},
                )
                session.add(row)
                session.flush()
                return _record(VideoRecord, row), True
        except IntegrityError:
            with self.session() as session:
                existing = session.scalar(
                    select(Video).where(
                        Video.collection_id == collection_id, Video.sha256 == sha256
                    )
                )
                if existing is None:
                    raise
                return _record(VideoRecord, existing), False

    def set_video_status(
        self, video_id: int, status: VideoStatus, error: str | None = None
    ) -> None:
        with self.session() as session:
            row = self._video_row(session, video_id)
            row.status = status
            row.error = error

    def finish_video(
        self,
        video_id: int,
        probe: VideoProbe,
        address: FeatureAddress,
        segments: Sequence[tuple[str, float, float]] = (),
    ) -> list[int]:
        """Mark a video ready with its probe data, feature address and segments, atomically.

        Any segments from an earlier attempt are replaced. Returns the new segment ids.
        """
        with self.session() as session:
            row = self._video_row(session, video_id)
            row.duration_s = probe.duration_s
            row.fps = probe.fps
            row.width = probe.width
            row.height = probe.height
            row.n_clips = address.length
            row.feature_shard = address.shard
            row.feature_offset = address.offset
            row.feature_length = address.length
            row.status = VideoStatus.READY
            row.error = None
            return self._replace_segments(session, video_id, segments)

    def replace_segments(
        self, video_id: int, segments: Sequence[tuple[str, float, float]]
    ) -> list[int]:
        """Replace a video's segments (level, start_s, end_s); returns the new ids."""
        with self.session() as session:
            self._video_row(session, video_id)
            return self._replace_segments(session, video_id, segments)

    @staticmethod
    def _replace_segments(
        session: Session, video_id: int, segments: Sequence[tuple[str, float, float]]
    ) -> list[int]:
        session.execute(delete(Segment).where(Segment.video_id == video_id))
        rows = [
            Segment(video_id=video_id, level=level, start_s=start_s, end_s=end_s)
            for level, start_s, end_s in segments
        ]
        session.add_all(rows)
        session.flush()
        return [segment.id for segment in rows]

    def feature_address(self, video_id: int) -> FeatureAddress:
        """Where a ready video's clip features are stored."""
        with self.session() as session:
            row = self._video_row(session, video_id)
            if row.status != VideoStatus.READY or row.feature_shard is None:
                raise NotFoundError(f"video {video_id} has no features (status {row.status})")
            return FeatureAddress(
                row.feature_shard, row.feature_offset or 0, row.feature_length or 0
            )

    def recover_interrupted(self, collection_id: int) -> int:
        """After a crash: processing videos back to pending, running jobs to failed.

        Call only while holding the collection's ingest lock. Returns the videos reset.
        """
        with self.session() as session:
            videos = session.scalars(
                select(Video).where(
                    Video.collection_id == collection_id, Video.status == VideoStatus.PROCESSING
                )
            ).all()
            for video in videos:
                video.status = VideoStatus.PENDING
            for job in session.scalars(
                select(Job).where(
                    Job.collection_id == collection_id, Job.status == JobStatus.RUNNING
                )
            ):
                job.status = JobStatus.FAILED
                job.error = "interrupted before finishing; rerun the same ingest to complete it"
                job.finished_at = utcnow()
            return len(videos)

    # Jobs --------------------------------------------------------------------------

    def create_job(
        self, kind: str, collection_id: int | None, n_total: int, params: dict[str, Any]
    ) -> JobRecord:
        with self.session() as session:
            row = Job(
                kind=kind,
                collection_id=collection_id,
                status=JobStatus.RUNNING,
                n_total=n_total,
                params=params,
            )
            session.add(row)
            session.flush()
            return _record(JobRecord, row)

    def update_job(
        self,
        job_id: int,
        *,
        n_done: int,
        n_failed: int,
        n_skipped: int,
        status: JobStatus | None = None,
        error: str | None = None,
    ) -> JobRecord:
        """Record a job's counts (progress follows from them) and optionally its end."""
        with self.session() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise NotFoundError(f"unknown job id {job_id}")
            row.n_done, row.n_failed, row.n_skipped = n_done, n_failed, n_skipped
            finished = n_done + n_failed + n_skipped
            row.progress = finished / row.n_total if row.n_total else 1.0
            if status is not None:
                row.status = status
                row.error = error
                if status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
                    row.finished_at = utcnow()
            session.flush()
            return _record(JobRecord, row)

    def get_job(self, job_id: int) -> JobRecord:
        with self.session() as session:
            row = session.get(Job, job_id)
            if row is None:
                raise NotFoundError(f"unknown job id {job_id}")
            return _record(JobRecord, row)

    def list_jobs(self, limit: int = 20) -> list[JobRecord]:
        with self.session() as session:
            rows = session.scalars(select(Job).order_by(Job.id.desc()).limit(limit))
            return [_record(JobRecord, row) for row in rows]
