"""Append-only, memory-mapped float16 feature store.

Clip features of every video live in shard files `shard-NNNNNN.f16` under one directory
per collection; a video's features are addressed by `FeatureAddress(shard, offset,
length)` in rows, recorded in the catalog. Writes append and fsync *before* the caller
commits the address to the catalog, so a crash leaves at worst unreferenced bytes at a
shard's end, never a catalog row pointing at missing data. Reads map only the rows asked
for (no whole-shard reads). One writer per store at a time (an advisory file lock).
"""

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError, NotFoundError, VtrError

log = logging.getLogger(__name__)

DTYPE = np.dtype("<f2")
_MANIFEST = "store.json"
_LOCK = "write.lock"


class FeatureStoreError(VtrError):
    """The feature store is unreadable or does not match the request."""

    code = "feature_store_error"


@dataclass(frozen=True)
class FeatureAddress:
    shard: int
    offset: int  # first row
    length: int  # rows


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FeatureStore:
    """Rows of `dim` float16 values, appended in shards of at most `shard_bytes`."""

    def __init__(self, root: Path, dim: int, shard_bytes: int = 1 << 30) -> None:
        self.root = root
        self.dim = dim
        self.shard_bytes = shard_bytes
        self._row_bytes = dim * DTYPE.itemsize

    @classmethod
    def open(cls, root: Path, dim: int, shard_bytes: int = 1 << 30) -> "FeatureStore":
        """Open the store at `root`, creating it for `dim` if absent; refuse another dim."""
        manifest = root / _MANIFEST
        stored = cls.stored_dim(root)
        if stored is not None:
            if stored != dim:
                raise FeatureStoreError(
                    f"feature store {root} holds {stored}-d features, not {dim}-d"
                )
        else:
            root.mkdir(parents=True, exist_ok=True)
            tmp = manifest.with_suffix(".tmp")
            tmp.write_text(json.dumps({"dim": dim, "dtype": DTYPE.str}))
            os.replace(tmp, manifest)
            _fsync_dir(root)
        return cls(root, dim, shard_bytes)

    @staticmethod
    def stored_dim(root: Path) -> int | None:
        """The feature dimension of the store at `root`, None when there is none yet."""
        manifest = root / _MANIFEST
        if not manifest.is_file():
            return None
        try:
            dim: int = json.loads(manifest.read_text())["dim"]
        except (OSError, ValueError, KeyError) as e:
            raise FeatureStoreError(f"unreadable feature store manifest {manifest}") from e
        return dim

    def _shard_path(self, shard: int) -> Path:
        return self.root / f"shard-{shard:06d}.f16"

    def _last_shard(self) -> int:
        shards = sorted(self.root.glob("shard-*.f16"))
        return int(shards[-1].stem.split("-")[1]) if shards else 0

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        with (self.root / _LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, features: np.ndarray) -> FeatureAddress:
        """Append `features` (rows, dim), durably, and return where they live."""
        if features.ndim != 2 or features.shape[1] != self.dim or len(features) == 0:
            raise InputError(f"expected a non-empty (rows, {self.dim}) array, got {features.shape}")
        data = np.ascontiguousarray(features, dtype=DTYPE).tobytes()
        with self._write_lock():
            shard = self._last_shard()
            path = self._shard_path(shard)
            size = path.stat().st_size if path.exists() else 0
            # A crash mid-append can leave a partial row: start at the next row boundary.
            offset = -(-size // self._row_bytes)
            if offset > 0 and offset * self._row_bytes + len(data) > self.shard_bytes:
                shard, offset = shard + 1, 0
                path = self._shard_path(shard)
            with path.open("r+b" if path.exists() else "wb") as fh:
                fh.seek(offset * self._row_bytes)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if offset == 0:
                _fsync_dir(self.root)
        return FeatureAddress(shard, offset, len(features))

    def read(self, address: FeatureAddress) -> np.ndarray:
        """The rows at `address` as a read-only float16 array (length, dim), memory-mapped."""
        path = self._shard_path(address.shard)
        try:
            size = path.stat().st_size
        except FileNotFoundError as e:
            raise NotFoundError(f"feature shard {path} is missing") from e
        end = (address.offset + address.length) * self._row_bytes
        if address.offset < 0 or address.length < 1 or end > size:
            raise FeatureStoreError(f"feature address {address} is outside {path} ({size} bytes)")
        return np.memmap(
            path,
            dtype=DTYPE,
            mode="r",
            offset=address.offset * self._row_bytes,
            shape=(address.length, self.dim),
        )

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("shard-*.f16"))
