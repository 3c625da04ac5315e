"""Crash-safe persistence of one vector index directory: manifest + versioned data files.

Layout of one collection level's directory:

    manifest.json          what is stored and where (atomically replaced)
    data-<version>/        the files of that version (e.g. base.faiss, refine.faiss)
    write.lock             advisory lock: one writer at a time

A save writes a fresh `data-<version>/`, fsyncs every file and the directory, then
writes `manifest.json.tmp-<version>`, fsyncs it and renames it over `manifest.json` (the
single commit point), fsyncs the directory, and only then deletes older data versions.
A crash or an error at any earlier point leaves the previous manifest and its files
intact; leftovers of a failed save are removed by the next one. The manifest records each
file's size and sha256, so a truncated or altered file is reported, not loaded.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import IndexUnreadableError, VectorIndexError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
LOCK_NAME = "write.lock"
DATA_PREFIX = "data-"
_TMP_MARK = ".tmp-"


@dataclass(frozen=True)
class StoredFile:
    bytes: int
    sha256: str


@dataclass(frozen=True)
class IndexManifest:
    """What one index directory holds; written as JSON next to the data."""

    encoder: str
    dim: int
    metric: str
    factory: str
    count: int
    nprobe: int | None
    refine_k_factor: float
    settings_hash: str
    format_version: int = FORMAT_VERSION
    data_dir: str = ""
    files: dict[str, StoredFile] = field(default_factory=dict)
    created_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "IndexManifest":
        raw: dict[str, Any] = json.loads(text)
        files = {name: StoredFile(**entry) for name, entry in raw.pop("files").items()}
        return cls(files=files, **raw)

    @property
    def total_bytes(self) -> int:
        return sum(entry.bytes for entry in self.files.values())


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextlib.contextmanager
def _write_lock(directory: Path) -> Iterator[None]:
    with (directory / LOCK_NAME).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def index_exists(directory: Path) -> bool:
    """True when `directory` holds a committed index (a manifest)."""
    return (directory / MANIFEST_NAME).is_file()


def _remove_stale(directory: Path, keep: str) -> None:
    for entry in directory.iterdir():
        stale_data = entry.name.startswith(DATA_PREFIX) and entry.name != keep
        stale_tmp = entry.name.startswith(MANIFEST_NAME + _TMP_MARK)
        if not (stale_data or stale_tmp):
            continue
        try:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as e:
            log.warning("cannot remove stale index data %s: %s", entry, e)


def write_index_dir(
    directory: Path,
    manifest: IndexManifest,
    writers: Mapping[str, Callable[[Path], None]],
) -> IndexManifest:
    """Atomically replace the index in `directory`: each writer fills one data file.

    Returns the committed manifest (with `data_dir`, `files` and `created_at` filled in).
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VectorIndexError(f"cannot create index directory {directory}: {e}") from e
    with _write_lock(directory):
        version = f"{time.time_ns():x}-{secrets.token_hex(4)}"
        data_name = DATA_PREFIX + version
        data = directory / data_name
        tmp_manifest = directory / f"{MANIFEST_NAME}{_TMP_MARK}{version}"
        try:
            data.mkdir()
            files: dict[str, StoredFile] = {}
            for name, write in writers.items():
                path = data / name
                write(path)
                _fsync_path(path)
                files[name] = StoredFile(bytes=path.stat().st_size, sha256=_sha256(path))
            _fsync_path(data, directory=True)
            committed = IndexManifest(
                **{
                    **asdict(manifest),
                    "files": files,
                    "data_dir": data_name,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
            with tmp_manifest.open("w") as fh:
                fh.write(committed.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_manifest, directory / MANIFEST_NAME)
        except BaseException as e:
            shutil.rmtree(data, ignore_errors=True)
            with contextlib.suppress(OSError):
                tmp_manifest.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise VectorIndexError(f"cannot write index to {directory}: {e}") from e
            raise
        _fsync_path(directory, directory=True)
        _remove_stale(directory, keep=data_name)
    log.debug("saved index %s (%d vectors) in %s", manifest.factory, manifest.count, data)
    return committed


def read_manifest(directory: Path) -> IndexManifest:
    """The committed manifest of `directory`; IndexUnreadableError when missing or bad."""
    path = directory / MANIFEST_NAME
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise IndexUnreadableError(
            f"no vector index at {directory} (missing {MANIFEST_NAME}); "
            "rebuild it with `vtr reindex`"
        ) from e
    except OSError as e:
        raise IndexUnreadableError(f"cannot read {path}: {e}") from e
    try:
        manifest = IndexManifest.from_json(text)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise IndexUnreadableError(
            f"damaged index manifest {path}: {e}; rebuild it with `vtr reindex`"
        ) from e
    if manifest.format_version != FORMAT_VERSION:
        raise IndexUnreadableError(
            f"index {directory} has format version {manifest.format_version}, this vtr reads "
            f"{FORMAT_VERSION}; rebuild it with `vtr reindex`"
        )
    return manifest


def data_file(directory: Path, manifest: IndexManifest, name: str, *, verify: bool) -> Path:
    """Path of one data file of `manifest`, checked for size (and sha256 when `verify`)."""
    entry = manifest.files.get(name)
    if entry is None:
        raise IndexUnreadableError(f"index manifest in {directory} lists no file {name!r}")
    path = directory / manifest.data_dir / name
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise IndexUnreadableError(
            f"index file {path} is missing; rebuild the index with `vtr reindex`"
        ) from e
    if size != entry.bytes or (verify and _sha256(path) != entry.sha256):
        raise IndexUnreadableError(
            f"index file {path} is damaged ({size} bytes, manifest says {entry.bytes}"
            f"{'' if size != entry.bytes else ', checksum differs'}); "
            "rebuild the index with `vtr reindex`"
        )
    return path
