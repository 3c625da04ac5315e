"""Feature sources: per-video clip features for training and evaluating localizers.

A `FeatureSource` answers `get(vid) -> (T, D) float32`, one row per clip. Sources here
read the layouts the public moment-retrieval code releases:

- Moment-DETR / QD-DETR: one directory per extractor with one `{vid}.npz` per video
  holding key `features` (`clip_features/`, `slowfast_features/`); text features
  `clip_text_features/qid{qid}.npz` hold `last_hidden_state` (L, 512) and
  `pooler_output` (`NpzDirFeatureSource(dir, key=..., filename="qid{}.npz")`).
- MESM: one HDF5 file per extractor with one dataset per video at the file's root
  (`clip_image.hdf5`, `slowfast.hdf5`), needs `h5py`.
- Several extractors: `ConcatFeatureSource` L2-normalises each source's rows, cuts all
  to the shortest (some extractors give a clip more or less) and concatenates, as the
  official loaders do (CLIP 512 + SlowFast 2304 -> 2816).
- `InMemoryFeatureSource`: a dict, for tests and for features computed on the fly.

`open_feature_source(paths)` picks the reader from each path (a directory -> npz files,
`.h5`/`.hdf5` -> HDF5) and concatenates when given several. Missing videos raise
`NotFoundError` naming the video and the place looked in.
"""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engine.errors import InputError, NotFoundError

log = logging.getLogger(__name__)

HDF5_SUFFIXES = (".h5", ".hdf5")


@runtime_checkable
class FeatureSource(Protocol):
    """Per-video features: `get(vid)` -> (T, D) float32, one row per clip."""

    def get(self, vid: str) -> np.ndarray: ...


def l2_normalize_rows(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Each row divided by its L2 norm (zero rows stay zero). (T, D) -> (T, D) float32."""
    norms = np.linalg.norm(features, axis=-1, keepdims=True)  # (T, 1)
    return (features / np.maximum(norms, eps)).astype(np.float32, copy=False)


def _as_matrix(array: Any, where: str) -> np.ndarray:
    matrix = np.asarray(array, dtype=np.float32)
    if matrix.ndim == 3 and matrix.shape[0] == 1:  # some extractors keep a batch axis
        matrix = matrix[0]
    if matrix.ndim != 2:
        raise InputError(f"features at {where} have shape {matrix.shape}; expected (T, D)")
    return matrix


class InMemoryFeatureSource:
    """Features held in a dict `{vid: (T, D) array}`."""

    def __init__(self, features: Mapping[str, np.ndarray]):
        self._features = dict(features)

    def get(self, vid: str) -> np.ndarray:
        if vid not in self._features:
            raise NotFoundError(f"no features for video '{vid}' (in-memory source)")
        return _as_matrix(self._features[vid], f"video '{vid}'")

    def __contains__(self, vid: object) -> bool:
        return vid in self._features


class NpzDirFeatureSource:
    """A directory with one `.npz` per video, e.g. Moment-DETR's `clip_features/{vid}.npz`.

    `key` is the array inside each file (`features` for video, `last_hidden_state` or
    `pooler_output` for text); `filename` formats the video id into a file name
    (`"{}.npz"`, or `"qid{}.npz"` for text features). Plain `.npy` files work too
    (`filename="{}.npy"`, key ignored).
    """

    def __init__(self, directory: Path, key: str = "features", filename: str = "{}.npz"):
        if not directory.is_dir():
            raise NotFoundError(f"feature directory not found: {directory}")
        self.directory = directory
        self.key = key
        self.filename = filename

    def get(self, vid: str) -> np.ndarray:
        path = self.directory / self.filename.format(vid)
        if not path.is_file():
            raise NotFoundError(f"no features for video '{vid}': {path} does not exist")
        try:
            if path.suffix == ".npy":
                return _as_matrix(np.load(path), str(path))
            with np.load(path) as data:
                if self.key not in data:
                    raise InputError(
                        f"{path} has no array '{self.key}'; it has: {', '.join(data.files)}"
                    )
                return _as_matrix(data[self.key], str(path))
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read features from {path}: {e}") from e


class Hdf5FeatureSource:
    """One HDF5 file, one dataset per video at the root (MESM's `clip_image.hdf5`).

    The file opens lazily on the first `get` and stays open; `close()` releases it.
    """

    def __init__(self, path: Path):
        if not path.is_file():
            raise NotFoundError(f"feature file not found: {path}")
        self.path = path
        self._file: Any = None

    def _open(self) -> Any:
        if self._file is None:
            try:
                import h5py
            except ImportError as e:
                raise InputError(f"reading {self.path} needs h5py (pip install h5py)") from e
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as e:
                raise InputError(f"cannot open HDF5 feature file {self.path}: {e}") from e
        return self._file

    def get(self, vid: str) -> np.ndarray:
        handle = self._open()
        if vid not in handle:
            raise NotFoundError(f"no features for video '{vid}' in {self.path}")
        return _as_matrix(handle[vid][()], f"{self.path}:{vid}")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ConcatFeatureSource:
    """Several sources side by side: each L2-normalised per row, cut to the shortest."""

    def __init__(self, sources: Sequence[FeatureSource], normalize: bool = True):
        if not sources:
            raise InputError("ConcatFeatureSource needs at least one source")
        self.sources = list(sources)
        self.normalize = normalize

    def get(self, vid: str) -> np.ndarray:
        parts = [source.get(vid) for source in self.sources]
        if self.normalize:
            parts = [l2_normalize_rows(p) for p in parts]
        length = min(p.shape[0] for p in parts)
        if any(p.shape[0] != length for p in parts):
            log.debug(
                "video %s: sources have %s rows; cut to %d", vid, [len(p) for p in parts], length
            )
        return np.concatenate([p[:length] for p in parts], axis=1)  # (T, sum D)


def open_one_source(path: Path, key: str = "features") -> FeatureSource:
    """A directory -> `NpzDirFeatureSource`; `.h5` / `.hdf5` -> `Hdf5FeatureSource`."""
    if path.is_dir():
        return NpzDirFeatureSource(path, key=key)
    if path.suffix.lower() in HDF5_SUFFIXES:
        return Hdf5FeatureSource(path)
    if not path.exists():
        raise NotFoundError(f"feature path not found: {path}")
    raise InputError(
        f"unsupported feature path {path}: give a directory of .npz files or an .h5/.hdf5 file"
    )


def open_feature_source(
    paths: Sequence[Path], key: str = "features", normalize: bool = True
) -> FeatureSource:
    """The official multi-extractor layout: every path opened, rows L2-normalised, concatenated."""
    return ConcatFeatureSource([open_one_source(p, key) for p in paths], normalize=normalize)
