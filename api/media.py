"""Media for the HTTP API: path confinement, byte-range streaming, thumbnails, uploads.

Confinement: a path from a request (or a catalog URI about to be served) is refused if
it names a `..` component, then resolved (symlinks followed) and accepted only when
the real file lies under one of the allowed roots, so neither `..` nor a symlink can
escape them. Streaming follows RFC 9110 byte ranges (`bytes=a-b`, `bytes=a-`,
`bytes=-n`): 206 with Content-Range for one satisfiable range, 416 with
`Content-Range: bytes */size` for a malformed or unsatisfiable one, the whole file (200)
when several ranges are asked. Thumbnails are one frame decoded with PyAV near the
asked time, scaled and encoded as JPEG by FFmpeg's mjpeg encoder, kept in a small LRU.
"""

import logging
import mimetypes
import os
import re
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.video.stream
import numpy as np
from fastapi.responses import Response, StreamingResponse

from engine.errors import DecodeError, InputError, NotFoundError, VtrError
from engine.sources import local_path

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 << 10  # streamed per read
UPLOADS_DIR = "uploads"  # under storage.data_dir
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ForbiddenError(VtrError):
    """A path outside the directories the server may read."""

    code = "forbidden"


class RangeNotSatisfiableError(VtrError):
    """A Range header that is malformed or lies past the end of the file."""

    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


def uploads_dir(data_dir: Path) -> Path:
    return data_dir / UPLOADS_DIR


def request_path(text: str) -> Path:
    """A path named by a client: absolute, or a file:// URI; never with `..`."""
    path = local_path(text)
    if ".." in path.parts:
        raise ForbiddenError(f"{text!r}: '..' is not allowed in paths")
    if not path.is_absolute():
        raise InputError(f"{text!r}: give an absolute path or a file:// URI")
    return path


def is_within(path: Path, roots: Sequence[Path]) -> bool:
    """Whether the resolved `path` lies in (or is) one of the resolved `roots`."""
    return any(path == root or path.is_relative_to(root) for root in roots)


def confine(path: Path, roots: Sequence[Path]) -> Path:
    """`path` resolved, if it exists and lies under one of `roots` (resolved dirs)."""
    if ".." in path.parts:
        raise ForbiddenError(f"{path}: '..' is not allowed in paths")
    if not roots:
        raise ForbiddenError(f"{path}: this server reads no directories (set api.media_roots)")
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError as e:
        raise NotFoundError(f"no such file or directory: {path}") from e
    except (OSError, RuntimeError) as e:  # a symlink loop, a permission problem
        raise ForbiddenError(f"{path}: cannot be resolved ({e})") from e
    if not is_within(resolved, roots):
        raise ForbiddenError(f"{path} is outside the directories this server may read")
    return resolved


# Byte ranges ---------------------------------------------------------------------------


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a one-range header; None for several ranges."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        raise RangeNotSatisfiableError(f"malformed Range header {header!r}", size)
    parts = spec.split(",")
    if len(parts) > 1:
        return None
    match = _RANGE.match(parts[0])
    if match is None or match.group(1) == match.group(2) == "":
        raise RangeNotSatisfiableError(f"malformed Range header {header!r}", size)
    first_text, last_text = match.groups()
    if first_text == "":  # suffix: the last n bytes
        n = int(last_text)
        if n == 0 or size == 0:
            raise RangeNotSatisfiableError(f"range {header!r} selects no bytes", size)
        return max(0, size - n), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last < first:
        raise RangeNotSatisfiableError(f"malformed Range header {header!r}", size)
    if first >= size:
        raise RangeNotSatisfiableError(
            f"range {header!r} starts past the end of the {size}-byte file", size
        )
    return first, min(last, size - 1)


def _chunks(path: Path, first: int, last: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(first)
        remaining = last - first + 1
        while remaining > 0:
            data = fh.read(min(CHUNK_BYTES, remaining))
            if not data:  # the file shrank while being served
                return
            remaining -= len(data)
            yield data


def media_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def stream_file(path: Path, range_header: str | None) -> Response:
    """The file, or the one byte range asked, as a streamed response."""
    size = path.stat().st_size
    headers = {"Accept-Ranges": "bytes"}
    span = parse_range(range_header, size) if range_header else None
    if span is None:
        first, last, status = 0, size - 1, 200
    else:
        (first, last), status = span, 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1)
    return StreamingResponse(
        _chunks(path, first, last), status_code=status, headers=headers, media_type=media_type(path)
    )


# Thumbnails ----------------------------------------------------------------------------


def _encode_jpeg(frame: av.VideoFrame) -> bytes:
    image = frame.reformat(format="yuvj420p")
    codec = av.CodecContext.create("mjpeg", "w")
    if not isinstance(codec, av.VideoCodecContext):
        raise DecodeError("this FFmpeg build has no mjpeg encoder")
    codec.width, codec.height, codec.pix_fmt = image.width, image.height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"qmin": "2", "qmax": "6"}
    packets = codec.encode(image) + codec.encode(None)
    if not packets:
        raise DecodeError("the mjpeg encoder returned no image")
    return bytes(packets[0])


def _frame_at(path: Path, time_s: float) -> av.VideoFrame:
    """The first frame shown at or after `time_s` (the last frame when past the end)."""
    try:
        container = av.open(str(path), "r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise DecodeError(f"cannot decode {path}: {e}") from e
    with container:
        streams = [s for s in container.streams.video]
        if not streams:
            raise DecodeError(f"cannot decode {path}: no video stream")
        stream: av.video.stream.VideoStream = streams[0]
        base = stream.time_base or Fraction(1, 1000)
        start = stream.start_time or 0
        chosen: av.VideoFrame | None = None
        try:
            if time_s > 0:
                container.seek(start + int(time_s / base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                chosen = frame
                if float((frame.pts - start) * base) >= time_s - 1e-3:
                    break
        except av.FFmpegError as e:
            if chosen is None:
                raise DecodeError(f"cannot decode {path} at {time_s:.2f} s: {e}") from e
        if chosen is None:
            raise DecodeError(f"cannot decode {path}: no frame at {time_s:.2f} s")
        return chosen


def thumbnail_jpeg(path: Path, time_s: float, width: int) -> bytes:
    """A JPEG of the frame at `time_s`, `width` pixels wide (aspect and rotation kept)."""
    frame = _frame_at(path, max(0.0, time_s))
    quarter_turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise
    shown_w, shown_h = (
        (frame.height, frame.width) if quarter_turns % 2 else (frame.width, frame.height)
    )
    height = max(2, round(width * shown_h / shown_w / 2) * 2)  # even, for 4:2:0
    width = max(2, width // 2 * 2)
    if quarter_turns:
        scaled = frame.reformat(
            width=height if quarter_turns % 2 else width,
            height=width if quarter_turns % 2 else height,
            format="rgb24",
        )
        upright = np.ascontiguousarray(np.rot90(scaled.to_ndarray(), k=quarter_turns), np.uint8)
        frame = av.VideoFrame.from_ndarray(upright, format="rgb24")  # (height, width, 3)
    else:
        frame = frame.reformat(width=width, height=height)
    return _encode_jpeg(frame)


class ThumbnailCache:
    """Thread-safe LRU of JPEG bytes keyed by (video id, content hash, time in 0.1 s)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[int, str, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, key: tuple[int, str], time_s: float, width: int) -> bytes:
        full = (*key, round(time_s * 10), width)
        with self._lock:
            if full in self._items:
                self._items.move_to_end(full)
                return self._items[full]
        data = thumbnail_jpeg(path, round(time_s * 10) / 10, width)
        if self.capacity:
            with self._lock:
                self._items[full] = data
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        return data


# Uploads -------------------------------------------------------------------------------


def safe_filename(name: str) -> str:
    """A client's file name reduced to a harmless base name."""
    base = Path(name.replace("\\", "/")).name
    cleaned = _SAFE_NAME.sub("_", base).lstrip(".")
    return cleaned[:120] or "upload"


def save_upload(source: BinaryIO, filename: str, data_dir: Path, extensions: Sequence[str]) -> Path:
    """Copy an uploaded file to `<data_dir>/uploads/<random>/<name>`; returns the path."""
    name = safe_filename(filename)
    suffix = Path(name).suffix.lower()
    if suffix not in {e.lower() for e in extensions}:
        raise InputError(
            f"upload {filename!r}: extension {suffix or '(none)'} is not a video extension "
            f"({', '.join(extensions)})"
        )
    folder = uploads_dir(data_dir) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    target = folder / name
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)
        out.flush()
        os.fsync(out.fileno())
    return target


def remove_upload(path: Path, data_dir: Path) -> None:
    """Delete an uploaded file and its folder (only inside the uploads directory)."""
    root = uploads_dir(data_dir).resolve()
    try:
        resolved = path.resolve()
    except OSError:
        return
    if resolved.parent.parent != root:
        return
    shutil.rmtree(resolved.parent, ignore_errors=True)
