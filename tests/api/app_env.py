"""A small real world for the HTTP API tests: generated videos, an indexed collection.

`build_world(root)` writes four short h264 videos (6, 8, 10 and 12 s, one colour per
second) under `root/media`, a config with the `tiny-random` encoder and
`api.media_roots = ["media"]`, initialises the catalog and indexes the videos into
collection `c` (the second video gets user metadata `{"topic": "birds"}`). Around them:
`media/clean/` (two more videos, for ingest tests), `outside/` (a video outside the
media roots) and symlinks that lead there (`media/escape/out.mp4`, `media/linkdir`).
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from engine.config import ApiSettings, Settings, load_settings
from index.catalog import Catalog
from index.catalog_schema import Video
from index.ingest import ingest
from tests.media import make_video

COLLECTION = "c"
DURATIONS_S = (6.0, 8.0, 10.0, 12.0)
API_KEY = "k3y-for-tests-0123456789"


@dataclass(frozen=True)
class World:
    root: Path
    settings: Settings
    videos: dict[str, int]  # file name -> video id in collection `c`

    @property
    def media(self) -> Path:
        return self.root / "media"


def build_world(root: Path) -> World:
    media = root / "media"
    (media / "clean").mkdir(parents=True)
    (media / "escape").mkdir()
    (root / "outside").mkdir()
    files = []
    for i, seconds in enumerate(DURATIONS_S):
        files.append(make_video(media / f"v{i}.mp4", seconds=seconds, fps=8, size=(64, 48)))
    for i in range(2):
        make_video(media / "clean" / f"n{i}.mp4", seconds=4.0 + i, fps=8, size=(64, 48))
    make_video(root / "outside" / "x.mp4", seconds=3.0, fps=8, size=(64, 48))
    (media / "escape" / "out.mp4").symlink_to(root / "outside" / "x.mp4")
    (media / "linkdir").symlink_to(root / "outside", target_is_directory=True)
    config = root / "config.toml"
    config.write_text(
        '[encoder]\nname = "tiny-random"\ndevice = "cpu"\n'
        "[ingest]\nbatch_size = 8\nworkers = 1\n"
        '[api]\nmedia_roots = ["media"]\n'
    )
    settings = load_settings(config)
    catalog = Catalog.initialise(settings.catalog_url)
    try:
        catalog.create_collection(COLLECTION, settings.encoder.name)
        result = ingest(catalog, settings, COLLECTION, files)
        if result.failed or len(result.ready) != len(files):
            raise RuntimeError(f"test world ingest failed: {result.to_dict()}")
        videos = {Path(catalog.get_video(i).uri).name: i for i in result.ready}
        with catalog.session() as session:
            session.execute(
                update(Video)
                .where(Video.id == videos["v1.mp4"])
                .values(user_metadata={"topic": "birds"})
            )
    finally:
        catalog.close()
    return World(root, settings, videos)


def with_api(settings: Settings, **changes: Any) -> Settings:
    """`settings` with some `[api]` keys changed (validated like the config file)."""
    api = ApiSettings.model_validate({**settings.api.model_dump(), **changes})
    return settings.model_copy(update={"api": api})


@contextmanager
def serving(settings: Settings) -> Iterator[TestClient]:
    """A client of a fresh app (lifespan run); server errors come back as responses."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def wait_for_job(client: TestClient, job_id: int, timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until the job is no longer running."""
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] != "running":
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still running: {job}")
        time.sleep(0.05)


def error_of(response: Any) -> dict[str, str]:
    """The `error` object of an error response, after checking the shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, str] = body["error"]
    return error


_SHARED: dict[str, World] = {}


def shared_world(factory: Any) -> World:
    """One world per test session, built on first use (`factory`: tmp_path_factory).

    Tests may add collections to it but must leave collection `c` as it is.
    """
    if "world" not in _SHARED:
        _SHARED["world"] = build_world(factory.mktemp("api-world"))
    return _SHARED["world"]
