"""HTTP catalog routes: collections, videos, jobs, ingest by path or upload, deletion.

Ingest requests run real background jobs with the tiny random encoder; path-based
ingest is confined to `api.media_roots` (`..`, absolute paths outside, symlinks that
lead out, directories holding such symlinks: all 403). Deleting a video removes its
vectors from the collection's FAISS indexes, not only its catalog rows.
"""

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from engine.feature_store import FeatureStore
from index.catalog import Catalog
from index.collection_index import CollectionIndexes, collection_lock, features_dir, indexes_dir
from index.levels import LEVELS
from tests.api.app_env import (
    COLLECTION,
    World,
    error_of,
    serving,
    shared_world,
    wait_for_job,
    with_api,
)

_names = itertools.count()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return shared_world(tmp_path_factory)


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with serving(world.settings) as client:
        yield client


def _new_collection(client: TestClient) -> str:
    name = f"scratch-{next(_names)}"
    assert client.post("/v1/collections", json={"name": name}).status_code == 201
    return name


def _ingest(client: TestClient, name: str, paths: list[str], **extra: Any) -> Any:
    return client.post(f"/v1/collections/{name}/videos", json={"paths": paths, **extra})


def _all_index_ids(world: World, collection_id: int) -> np.ndarray:
    data_dir = world.settings.storage.data_dir
    dim = FeatureStore.stored_dim(features_dir(data_dir, collection_id))
    assert dim is not None
    indexes = CollectionIndexes.open(
        indexes_dir(data_dir, collection_id), "tiny-random", dim, world.settings.index
    )
    found = [indexes.get(level) for level in LEVELS]
    return np.concatenate([index.ids() for index in found if index is not None])


# Collections -----------------------------------------------------------------------


def test_list_and_get_collections(client: TestClient, world: World) -> None:
    listed = client.get("/v1/collections").json()
    main = next(c for c in listed if c["name"] == COLLECTION)
    assert main["n_videos"] == len(world.videos) and main["encoder_spec"] == "tiny-random"
    assert client.get(f"/v1/collections/{COLLECTION}").json() == main
    missing = client.get("/v1/collections/nope")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"


def test_create_collection_and_its_errors(client: TestClient) -> None:
    created = client.post("/v1/collections", json={"name": "fresh", "encoder": "tiny-random"})
    assert created.status_code == 201
    assert created.json()["name"] == "fresh" and created.json()["n_videos"] == 0
    again = client.post("/v1/collections", json={"name": "fresh"})
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"
    bad_name = client.post("/v1/collections", json={"name": "no spaces"})
    assert bad_name.status_code == 400 and error_of(bad_name)["code"] == "bad_request"
    bad_encoder = client.post("/v1/collections", json={"name": "x1", "encoder": "nope"})
    assert bad_encoder.status_code == 400 and "unknown encoder" in error_of(bad_encoder)["message"]
    no_name = client.post("/v1/collections", json={})
    assert no_name.status_code == 422 and "name" in error_of(no_name)["message"]


def test_list_videos_pages(client: TestClient, world: World) -> None:
    first = client.get(f"/v1/collections/{COLLECTION}/videos", params={"limit": 3}).json()
    assert len(first["videos"]) == 3 and first["next_offset"] == 3
    rest = client.get(
        f"/v1/collections/{COLLECTION}/videos", params={"limit": 3, "offset": 3}
    ).json()
    assert rest["next_offset"] is None
    ids = [v["id"] for v in first["videos"] + rest["videos"]]
    assert sorted(ids) == sorted(world.videos.values())
    ready = client.get(f"/v1/collections/{COLLECTION}/videos", params={"status": "ready"})
    assert len(ready.json()["videos"]) == len(world.videos)
    bad = client.get(f"/v1/collections/{COLLECTION}/videos", params={"status": "nope"})
    assert bad.status_code == 422


def test_get_video_and_job_errors(client: TestClient, world: World) -> None:
    video = client.get(f"/v1/videos/{world.videos['v2.mp4']}").json()
    assert video["status"] == "ready" and video["duration_s"] == pytest.approx(10.0)
    assert video["n_clips"] == 5 and video["uri"].endswith("v2.mp4")
    for path in ("/v1/videos/99999", "/v1/jobs/99999"):
        response = client.get(path)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert client.get("/v1/videos/abc").status_code == 422


# Ingest ----------------------------------------------------------------------------


def test_ingest_directory_runs_a_job(client: TestClient, world: World) -> None:
    name = _new_collection(client)
    response = _ingest(client, name, [str(world.media / "clean")])
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["kind"] == "ingest" and job["n_total"] == 2
    done = wait_for_job(client, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == 1.0 and done["n_done"] == 2
    assert client.get(f"/v1/collections/{name}").json()["n_videos"] == 2
    listed = client.get("/v1/jobs").json()
    assert listed[0]["id"] == job["id"]
    # searchable at once: the service dropped its cached (empty) view of the collection
    found = client.post("/v1/search", json={"query": "red", "collection": name}).json()
    assert {r["title"] for r in found["results"]} == {"n0.mp4", "n1.mp4"}
    # a rerun (file:// URIs this time) skips what is indexed
    uris = [(world.media / "clean" / f"n{i}.mp4").as_uri() for i in range(2)]
    rerun = wait_for_job(client, _ingest(client, name, uris).json()["id"])
    assert rerun["status"] == "succeeded" and rerun["n_skipped"] == 2


def test_ingest_errors(client: TestClient, world: World) -> None:
    clean = str(world.media / "clean")
    unknown = _ingest(client, "nope", [clean])
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"
    name = _new_collection(client)
    missing = _ingest(client, name, [str(world.media / "absent.mp4")])
    assert missing.status_code == 404
    relative = _ingest(client, name, ["media/v0.mp4"])
    assert relative.status_code == 400 and "absolute" in error_of(relative)["message"]
    scheme = _ingest(client, name, ["http://example.org/a.mp4"])
    assert scheme.status_code == 400
    bodies: list[dict[str, Any]] = [{"paths": []}, {"paths": "x"}, {"nope": 1}]
    for body in bodies:
        bad = client.post(f"/v1/collections/{name}/videos", json=body)
        assert bad.status_code == 422 and error_of(bad)["code"] == "validation_error"
    empty = world.root / "media" / "empty-dir"
    empty.mkdir(exist_ok=True)
    nothing = _ingest(client, name, [str(empty)])
    assert nothing.status_code == 400 and "no video files" in error_of(nothing)["message"]
    text = client.post(
        f"/v1/collections/{name}/videos", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 400 and "content type" in error_of(text)["message"]
    assert client.get(f"/v1/collections/{name}").json()["n_videos"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "{media}/../outside/x.mp4",  # `..`, even though it names a real file
        "{media}/clean/../v0.mp4",  # `..` that stays inside is refused too
        "{root}/outside/x.mp4",  # absolute, outside the roots
        "{media}/escape/out.mp4",  # a symlink pointing outside
        "{media}/linkdir/x.mp4",  # through a symlinked directory
        "{media}/escape",  # a directory whose files lead outside
        "/etc/passwd",
    ],
)
def test_ingest_is_confined_to_media_roots(client: TestClient, world: World, path: str) -> None:
    name = _new_collection(client)
    text = path.format(media=world.media, root=world.root)
    response = _ingest(client, name, [text])
    assert response.status_code == 403, response.text
    assert error_of(response)["code"] == "forbidden"
    as_uri = _ingest(client, name, ["file://" + text])
    assert as_uri.status_code == 403
    assert client.get(f"/v1/collections/{name}").json()["n_videos"] == 0


def test_ingest_by_path_disabled_without_media_roots(world: World) -> None:
    with serving(with_api(world.settings, media_roots=[])) as client:
        response = _ingest(client, COLLECTION, [str(world.media / "v0.mp4")])
        assert response.status_code == 403 and "media_roots" in error_of(response)["message"]


def test_ingest_conflicts_with_a_running_writer(client: TestClient, world: World) -> None:
    name = _new_collection(client)
    catalog = Catalog.open(world.settings.catalog_url)
    try:
        record = catalog.get_collection(name)
        with collection_lock(world.settings.storage.data_dir, record):
            busy = _ingest(client, name, [str(world.media / "clean")])
            deleting = client.delete(f"/v1/collections/{name}")
    finally:
        catalog.close()
    assert busy.status_code == 409 and error_of(busy)["code"] == "conflict"
    assert deleting.status_code == 409


def test_upload_ingests_and_stores_under_data_dir(client: TestClient, world: World) -> None:
    name = _new_collection(client)
    data = (world.media / "clean" / "n1.mp4").read_bytes()
    response = client.post(
        f"/v1/collections/{name}/videos",
        files=[("files", ("../../evil name.mp4", data, "video/mp4"))],
    )
    assert response.status_code == 202
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "succeeded" and job["n_done"] == 1
    (video,) = client.get(f"/v1/collections/{name}/videos").json()["videos"]
    stored = Path(video["uri"])
    uploads = (world.settings.storage.data_dir / "uploads").resolve()
    assert stored.is_relative_to(uploads) and stored.name == "evil_name.mp4"
    assert stored.read_bytes() == data
    stream = client.get(f"/v1/videos/{video['id']}/stream")
    assert stream.status_code == 200 and stream.content == data
    # the same bytes again: skipped, and the redundant copy is not kept
    again = client.post(
        f"/v1/collections/{name}/videos", files=[("files", ("copy.mp4", data, "video/mp4"))]
    )
    assert wait_for_job(client, again.json()["id"])["n_skipped"] == 1
    # the copy is removed right after the job row is final: wait for the job's thread
    assert client.app.state.vtr.jobs().wait(30.0)  # type: ignore[attr-defined]
    assert sorted(p.name for p in uploads.glob("*/*")).count("copy.mp4") == 0
    # deleting the video deletes the uploaded file
    assert client.delete(f"/v1/videos/{video['id']}").status_code == 200
    assert not stored.exists()


def test_upload_errors(client: TestClient, world: World) -> None:
    name = _new_collection(client)
    wrong = client.post(
        f"/v1/collections/{name}/videos", files=[("files", ("notes.txt", b"hello", "text/plain"))]
    )
    assert wrong.status_code == 400 and "extension" in error_of(wrong)["message"]
    other_field = client.post(
        f"/v1/collections/{name}/videos", files=[("video", ("a.mp4", b"x", "video/mp4"))]
    )
    assert other_field.status_code == 422 and "files" in error_of(other_field)["message"]
    garbage = client.post(
        f"/v1/collections/{name}/videos",
        files=[("files", ("bad.mp4", b"not a video at all" * 10, "video/mp4"))],
    )
    job = wait_for_job(client, garbage.json()["id"])
    assert job["n_failed"] == 1
    (video,) = client.get(f"/v1/collections/{name}/videos").json()["videos"]
    assert video["status"] == "failed" and video["error"]


def test_request_size_limits_are_413(world: World) -> None:
    limited = with_api(world.settings, max_upload_mb=1, max_request_kb=1)
    with serving(limited) as client:
        big_query = client.post("/v1/search", json={"query": "x" * 2000, "collection": COLLECTION})
        assert big_query.status_code == 413
        assert error_of(big_query)["code"] == "payload_too_large"
        # the same without a Content-Length (chunked): counted as it arrives
        chunked = client.post(
            "/v1/search",
            content=iter([b'{"query": "', b"x" * 2000, b'"}']),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in chunked.request.headers
        assert chunked.status_code == 413
        assert error_of(chunked)["code"] == "payload_too_large"
        upload = client.post(
            f"/v1/collections/{COLLECTION}/videos",
            files=[("files", ("big.mp4", b"\0" * (1 << 20) + b"x" * 4096, "video/mp4"))],
        )
        assert upload.status_code == 413 and error_of(upload)["code"] == "payload_too_large"
        # an upload under the upload limit passes although it exceeds max_request_kb
        name = _new_collection(client)
        small = (world.media / "clean" / "n0.mp4").read_bytes()
        assert len(small) > 1024
        ok = client.post(
            f"/v1/collections/{name}/videos", files=[("files", ("n0.mp4", small, "video/mp4"))]
        )
        assert ok.status_code == 202
        assert wait_for_job(client, ok.json()["id"])["status"] == "succeeded"


# Deletion --------------------------------------------------------------------------


def test_delete_video_removes_rows_and_vectors(client: TestClient, world: World) -> None:
    name = _new_collection(client)
    wait_for_job(client, _ingest(client, name, [str(world.media / "clean")]).json()["id"])
    collection_id = client.get(f"/v1/collections/{name}").json()["id"]
    videos = client.get(f"/v1/collections/{name}/videos").json()["videos"]
    victim, keeper = videos
    before = _all_index_ids(world, collection_id)
    response = client.delete(f"/v1/videos/{victim['id']}")
    assert response.status_code == 200 and response.json()["id"] == victim["id"]
    assert client.get(f"/v1/videos/{victim['id']}").status_code == 404
    after = _all_index_ids(world, collection_id)
    assert 0 < len(after) < len(before)
    found = client.post("/v1/search", json={"query": "red", "collection": name, "top_k": 50})
    assert {r["video_id"] for r in found.json()["results"]} == {keeper["id"]}
    again = client.delete(f"/v1/videos/{victim['id']}")
    assert again.status_code == 404 and error_of(again)["code"] == "not_found"
    # the media file itself (not an upload) is left alone
    assert Path(victim["uri"]).exists()


def test_delete_collection_removes_everything(client: TestClient, world: World) -> None:
    name = _new_collection(client)
    wait_for_job(
        client, _ingest(client, name, [str(world.media / "clean" / "n0.mp4")]).json()["id"]
    )
    collection_id = client.get(f"/v1/collections/{name}").json()["id"]
    data_dir = world.settings.storage.data_dir
    assert indexes_dir(data_dir, collection_id).exists()
    response = client.delete(f"/v1/collections/{name}")
    assert response.status_code == 200 and response.json()["name"] == name
    assert client.get(f"/v1/collections/{name}").status_code == 404
    assert not indexes_dir(data_dir, collection_id).exists()
    assert not features_dir(data_dir, collection_id).exists()
    assert client.delete(f"/v1/collections/{name}").status_code == 404


def test_nothing_in_the_data_directory_is_ingested_or_served(world: World) -> None:
    """Even with media roots that contain it, the catalog and index files stay private."""
    data_dir = world.settings.storage.data_dir
    planted = data_dir / "planted.mp4"
    planted.write_bytes((world.media / "clean" / "n0.mp4").read_bytes())
    with serving(with_api(world.settings, media_roots=[world.root])) as client:
        name = _new_collection(client)
        database = _ingest(client, name, [str(data_dir / "vtr.db")])
        assert database.status_code == 400 and "extension" in error_of(database)["message"]
        for path in (planted, data_dir):
            refused = _ingest(client, name, [str(path)], recursive=True)
            assert refused.status_code == 403, path
            assert "data directory" in error_of(refused)["message"]
        # a row pointing into the data directory (e.g. from an older server) is not served
        catalog = Catalog.open(world.settings.catalog_url)
        try:
            collection_id = catalog.get_collection(name).id
            row, _ = catalog.register_video(collection_id, str(planted), "0" * 64)
        finally:
            catalog.close()
        stream = client.get(f"/v1/videos/{row.id}/stream")
        assert stream.status_code == 403 and error_of(stream)["code"] == "forbidden"
    planted.unlink()
