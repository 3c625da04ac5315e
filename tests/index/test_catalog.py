"""Catalog on SQLite and PostgreSQL: schema, migrations, uniques, cascades, errors."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine.errors import CatalogNotInitialisedError, ConflictError, InputError, NotFoundError
from engine.feature_store import FeatureAddress
from index.catalog import Catalog, head_revision
from index.catalog_schema import Base, JobStatus, Segment, Video, VideoStatus


def _add_video(catalog: Catalog, collection_id: int, sha: str) -> int:
    with catalog.session() as session:
        video = Video(collection_id=collection_id, uri=f"/videos/{sha}.mp4", sha256=sha)
        session.add(video)
        session.flush()
        session.add(Segment(video_id=video.id, level="global", start_s=0.0, end_s=4.0))
        return video.id


def test_migrations_produce_exactly_the_models(catalog: Catalog) -> None:
    with catalog.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert catalog.schema_revision() == head_revision()


def test_initialise_is_idempotent(catalog_url: str) -> None:
    Catalog.initialise(catalog_url).close()
    catalog = Catalog.initialise(catalog_url)
    assert catalog.schema_revision() == head_revision()
    catalog.close()


def test_open_refuses_uninitialised(catalog_url: str) -> None:
    with pytest.raises(CatalogNotInitialisedError, match="vtr init"):
        Catalog.open(catalog_url)


def test_open_missing_sqlite_file_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "vtr.db"
    with pytest.raises(CatalogNotInitialisedError, match="no catalog at"):
        Catalog.open(f"sqlite:///{path}")
    assert not path.exists()


def test_collection_lifecycle(catalog: Catalog) -> None:
    created = catalog.create_collection("news", "clip-vit-b32")
    assert created.name == "news" and created.n_videos == 0
    _add_video(catalog, created.id, "a" * 64)
    listed = catalog.list_collections()
    assert [(c.name, c.n_videos) for c in listed] == [("news", 1)]
    assert catalog.get_collection("news").n_videos == 1
    with pytest.raises(ConflictError, match="already exists"):
        catalog.create_collection("news", "clip-vit-b32")
    deleted = catalog.delete_collection("news")
    assert deleted.n_videos == 1
    assert catalog.list_collections() == []
    with catalog.session() as session:  # videos and segments went with it
        assert session.scalars(select(Video)).all() == []
        assert session.scalars(select(Segment)).all() == []


def test_unknown_collection_lists_known_ones(catalog: Catalog) -> None:
    catalog.create_collection("alpha", "clip-vit-b32")
    with pytest.raises(NotFoundError, match="unknown collection 'beta'; known: alpha"):
        catalog.get_collection("beta")
    with pytest.raises(NotFoundError):
        catalog.list_videos(collection="beta")


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "x" * 101, "../etc"])
def test_invalid_collection_names(catalog: Catalog, name: str) -> None:
    with pytest.raises(InputError, match="invalid collection name"):
        catalog.create_collection(name, "clip-vit-b32")


def test_same_file_once_per_collection(catalog: Catalog) -> None:
    first = catalog.create_collection("one", "clip-vit-b32")
    second = catalog.create_collection("two", "clip-vit-b32")
    _add_video(catalog, first.id, "b" * 64)
    _add_video(catalog, second.id, "b" * 64)  # another collection: allowed
    with pytest.raises(IntegrityError):
        _add_video(catalog, first.id, "b" * 64)


def test_videos_list_show_delete(catalog: Catalog) -> None:
    collection = catalog.create_collection("c", "clip-vit-b32")
    ids = [_add_video(catalog, collection.id, ch * 64) for ch in "abc"]
    assert [v.id for v in catalog.list_videos()] == ids
    assert [v.id for v in catalog.list_videos("c", limit=2, offset=1)] == ids[1:]
    assert catalog.list_videos(status=VideoStatus.READY) == []
    assert [v.status for v in catalog.list_videos(status=VideoStatus.PENDING)] == ["pending"] * 3
    video = catalog.get_video(ids[0])
    assert video.to_dict()["sha256"] == "a" * 64
    assert video.user_metadata == {}
    catalog.delete_video(ids[0])
    with pytest.raises(NotFoundError, match=f"unknown video id {ids[0]}"):
        catalog.get_video(ids[0])
    with catalog.session() as session:
        remaining = session.scalars(select(Segment.video_id)).all()
    assert sorted(remaining) == ids[1:]


def test_invalid_paging(catalog: Catalog) -> None:
    with pytest.raises(InputError):
        catalog.list_videos(limit=0)


class _Probe:
    duration_s, fps, width, height = 9.5, 25.0, 320, 240


def test_ingest_bookkeeping(catalog: Catalog) -> None:
    collection = catalog.create_collection("c", "clip-vit-b32")
    video, created = catalog.register_video(collection.id, "/v/a.mp4", "a" * 64)
    again, created_again = catalog.register_video(collection.id, "/elsewhere/a.mp4", "a" * 64)
    assert created
    assert not created_again
    assert again.id == video.id
    assert again.uri == "/v/a.mp4"

    catalog.set_video_status(video.id, VideoStatus.PROCESSING)
    first = catalog.finish_video(video.id, _Probe(), FeatureAddress(0, 10, 5), [("global", 0, 9.5)])
    second = catalog.finish_video(
        video.id, _Probe(), FeatureAddress(1, 0, 5), [("global", 0, 9.5), ("action", 0, 8)]
    )
    assert len(first) == 1
    assert len(second) == 2
    with catalog.session() as session:  # a retry replaces segments, never duplicates them
        assert sorted(session.scalars(select(Segment.id)).all()) == sorted(second)
    ready = catalog.get_video(video.id)
    assert ready.status == "ready"
    assert ready.n_clips == 5
    assert ready.duration_s == 9.5
    assert catalog.feature_address(video.id) == FeatureAddress(1, 0, 5)

    other, _ = catalog.register_video(collection.id, "/v/b.mp4", "b" * 64)
    with pytest.raises(NotFoundError, match="has no features"):
        catalog.feature_address(other.id)


def test_recover_interrupted_and_jobs(catalog: Catalog) -> None:
    collection = catalog.create_collection("c", "clip-vit-b32")
    video, _ = catalog.register_video(collection.id, "/v/a.mp4", "a" * 64)
    catalog.set_video_status(video.id, VideoStatus.PROCESSING)
    job = catalog.create_job("ingest", collection.id, n_total=4, params={"inputs": ["/v"]})
    assert job.status == "running"
    updated = catalog.update_job(job.id, n_done=1, n_failed=1, n_skipped=0)
    assert updated.progress == 0.5
    assert catalog.recover_interrupted(collection.id) == 1
    assert catalog.get_video(video.id).status == "pending"
    crashed = catalog.get_job(job.id)
    assert crashed.status == "failed"
    assert crashed.error is not None
    assert "interrupted" in crashed.error
    assert crashed.finished_at is not None
    done = catalog.update_job(job.id, n_done=3, n_failed=1, n_skipped=0, status=JobStatus.SUCCEEDED)
    assert done.progress == 1.0
    assert [j.id for j in catalog.list_jobs()] == [job.id]
