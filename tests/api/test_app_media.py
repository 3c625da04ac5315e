"""HTTP media: byte-range streaming and JPEG thumbnails of indexed videos.

Streaming is checked byte for byte against the file (whole, first bytes, open-ended,
suffix, clamped end, several ranges) and for its 416 answers; thumbnails are decoded
back with PyAV to check size and that the frame comes from the asked second (the test
videos show one known colour per second).
"""

import io
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.media import RangeNotSatisfiableError, parse_range, safe_filename, thumbnail_jpeg
from engine.decode import iter_clips
from engine.sources import local_path
from tests.api.app_env import World, error_of, serving, shared_world, with_api
from tests.media import colour_at, corner_marker, make_video


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return shared_world(tmp_path_factory)


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with serving(world.settings) as client:
        yield client


@pytest.fixture(scope="module")
def video(world: World, client: TestClient) -> tuple[int, bytes]:
    video_id = world.videos["v2.mp4"]
    uri = client.get(f"/v1/videos/{video_id}").json()["uri"]
    return video_id, local_path(uri).read_bytes()


def test_whole_file(client: TestClient, video: tuple[int, bytes]) -> None:
    video_id, data = video
    response = client.get(f"/v1/videos/{video_id}/stream")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(data)


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),  # first bytes
        ("bytes=100-", 100, None),  # open-ended
        ("bytes=-100", -100, None),  # suffix: the last 100 bytes
        ("bytes=5-5", 5, 5),  # one byte
        ("bytes=10-999999999", 10, None),  # end clamped to the file
    ],
)
def test_ranges(
    client: TestClient, video: tuple[int, bytes], header: str, first: int, last: int | None
) -> None:
    video_id, data = video
    expected = data[first : (last + 1 if last is not None else None)]
    response = client.get(f"/v1/videos/{video_id}/stream", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == expected
    start = first % len(data)
    assert (
        response.headers["content-range"]
        == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"
    )
    assert int(response.headers["content-length"]) == len(expected)


@pytest.mark.parametrize(
    "header",
    ["bytes=999999999-", "bytes=-0", "bytes=20-10", "bytes=abc", "items=0-10", "bytes=", "bytes=-"],
)
def test_bad_ranges_are_416(client: TestClient, video: tuple[int, bytes], header: str) -> None:
    video_id, data = video
    response = client.get(f"/v1/videos/{video_id}/stream", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(data)}"
    assert error_of(response)["code"] == "range_not_satisfiable"


def test_several_ranges_get_the_whole_file(client: TestClient, video: tuple[int, bytes]) -> None:
    video_id, data = video
    response = client.get(f"/v1/videos/{video_id}/stream", headers={"Range": "bytes=0-1,5-9"})
    assert response.status_code == 200 and response.content == data


def test_parse_range_unit() -> None:
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=-20", 10) == (0, 9)  # a suffix longer than the file
    assert parse_range(" bytes = 2 - 4 ", 10) is not None
    with pytest.raises(RangeNotSatisfiableError):
        parse_range("bytes=10-", 10)
    with pytest.raises(RangeNotSatisfiableError):
        parse_range("bytes=0-1", 0)


def test_stream_errors(client: TestClient) -> None:
    response = client.get("/v1/videos/99999/stream")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


def test_stream_refuses_files_outside_media_roots(world: World) -> None:
    elsewhere = with_api(world.settings, media_roots=[world.root / "outside"])
    with serving(elsewhere) as client:
        response = client.get(f"/v1/videos/{world.videos['v0.mp4']}/stream")
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
        thumb = client.get(f"/v1/videos/{world.videos['v0.mp4']}/thumbnail")
        assert thumb.status_code == 403


def _decode_jpeg(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), "r") as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")  # (height, width, 3)


@pytest.mark.parametrize("t", [0.0, 2.5, 5.2, 9.6])
def test_thumbnail_shows_the_frame_at_t(client: TestClient, world: World, t: float) -> None:
    response = client.get(f"/v1/videos/{world.videos['v2.mp4']}/thumbnail", params={"t": t})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"
    image = _decode_jpeg(response.content)
    assert image.shape == (240, 320, 3)  # 320 wide (api.thumbnail_width), 64x48 aspect kept
    mean = image.reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - np.array(colour_at(t))).max() < 40, (mean, colour_at(t))


def test_thumbnail_width_cache_and_end(client: TestClient, world: World) -> None:
    url = f"/v1/videos/{world.videos['v0.mp4']}/thumbnail"
    small = client.get(url, params={"t": 1.0, "width": 64})
    assert _decode_jpeg(small.content).shape == (48, 64, 3)
    assert client.get(url, params={"t": 1.0, "width": 64}).content == small.content
    past_end = client.get(url, params={"t": 1000})  # the last frame
    assert past_end.status_code == 200
    assert (
        np.abs(
            _decode_jpeg(past_end.content).reshape(-1, 3).mean(axis=0) - np.array(colour_at(5.9))
        ).max()
        < 40
    )
    for params in ({"t": -1}, {"width": 4}, {"t": "x"}):
        bad = client.get(url, params=params)
        assert bad.status_code == 422 and error_of(bad)["code"] == "validation_error"
    assert client.get("/v1/videos/99999/thumbnail").status_code == 404


def test_safe_filename() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..") == "upload"
    assert safe_filename("a b\\c?.mp4") == "c_.mp4"
    assert safe_filename(".hidden.mp4") == "hidden.mp4"


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_thumbnail_is_upright_like_the_decoder(tmp_path: Path, rotation: int) -> None:
    """Rotated videos: the thumbnail shows what ingest's decoder sees, same way up."""
    path = make_video(
        tmp_path / "r.mp4",
        seconds=1.0,
        fps=8,
        size=(64, 48),
        pattern=corner_marker((64, 48)),
        rotation=rotation,
    )
    (clip,) = iter_clips(path, clip_seconds=1.0, short_side=None)
    decoded = clip.frames[0]  # (H, W, 3) upright
    thumb = _decode_jpeg(thumbnail_jpeg(path, 0.5, decoded.shape[1]))
    assert thumb.shape == decoded.shape

    def bright_quadrant(image: np.ndarray) -> tuple[int, int]:
        h, w = image.shape[0] // 2, image.shape[1] // 2
        quads = {
            (r, c): image[r * h : (r + 1) * h, c * w : (c + 1) * w].mean()
            for r in (0, 1)
            for c in (0, 1)
        }
        return max(quads, key=lambda k: quads[k])

    assert bright_quadrant(thumb) == bright_quadrant(decoded)
