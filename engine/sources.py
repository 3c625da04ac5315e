"""Finding the video files to ingest: paths, directories, list files, and content hashes."""

import hashlib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

from engine.errors import InputError, NotFoundError


def local_path(uri: str | Path) -> Path:
    """A local path from a path or `file://` URI; other schemes are refused."""
    text = str(uri)
    if "://" in text:
        parsed = urlparse(text)
        if parsed.scheme != "file":
            raise InputError(f"unsupported URI scheme {parsed.scheme!r} in {text!r}: use a path")
        text = unquote(parsed.path)
    return Path(text).expanduser()


def discover_videos(
    inputs: Iterable[str | Path], extensions: Iterable[str], recursive: bool = False
) -> list[Path]:
    """Resolve files and directories into a sorted, duplicate-free list of video files.

    A file named explicitly is taken whatever its extension (decoding will judge it);
    directories contribute the files with a video extension (subdirectories when
    `recursive`). A path that does not exist is an error naming it.
    """
    suffixes = {ext.lower() for ext in extensions}
    found: dict[Path, None] = {}
    for item in inputs:
        path = local_path(item)
        if path.is_file():
            found[path.resolve()] = None
        elif path.is_dir():
            pattern = "**/*" if recursive else "*"
            for child in sorted(path.glob(pattern)):
                if child.is_file() and child.suffix.lower() in suffixes:
                    found[child.resolve()] = None
        else:
            raise NotFoundError(f"no such file or directory: {path}")
    return list(found)


def read_list_file(path: Path) -> list[str]:
    """Paths or URIs from a list file: one per line, blank lines and `#` comments ignored."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise NotFoundError(f"cannot read list file {path}: {e.strerror}") from e
    base = path.resolve().parent
    entries = []
    for line in lines:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            entries.append(entry if "://" in entry else str(base / entry))
    return entries


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
