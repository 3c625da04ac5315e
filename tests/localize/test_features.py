"""Feature sources: official npz / HDF5 layouts, concatenation, errors."""

from pathlib import Path

import numpy as np
import pytest

from engine.errors import InputError, NotFoundError
from localize.features import (
    ConcatFeatureSource,
    FeatureSource,
    Hdf5FeatureSource,
    InMemoryFeatureSource,
    NpzDirFeatureSource,
    l2_normalize_rows,
    open_feature_source,
    open_one_source,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_in_memory_source(rng: np.random.Generator) -> None:
    feats = rng.standard_normal((4, 3)).astype(np.float64)
    source = InMemoryFeatureSource({"v": feats})
    assert isinstance(source, FeatureSource)
    got = source.get("v")
    assert got.dtype == np.float32 and got.shape == (4, 3)
    assert np.allclose(got, feats)
    with pytest.raises(NotFoundError, match="'w'"):
        source.get("w")


def test_npz_directory_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    clip = tmp_path / "clip_features"
    clip.mkdir()
    feats = rng.standard_normal((5, 4)).astype(np.float16)
    np.savez(clip / "abc_60.0_210.0.npz", features=feats)
    source = NpzDirFeatureSource(clip)
    got = source.get("abc_60.0_210.0")
    assert got.dtype == np.float32 and np.allclose(got, feats.astype(np.float32))
    with pytest.raises(NotFoundError, match="missing"):
        source.get("missing")
    with pytest.raises(InputError, match="has no array 'pooler_output'"):
        NpzDirFeatureSource(clip, key="pooler_output").get("abc_60.0_210.0")


def test_npz_text_layout_with_batch_axis(tmp_path: Path, rng: np.random.Generator) -> None:
    text = tmp_path / "clip_text_features"
    text.mkdir()
    tokens = rng.standard_normal((1, 7, 6)).astype(np.float32)  # (1, L, W): batch axis kept
    np.savez(text / "qid42.npz", last_hidden_state=tokens, pooler_output=tokens[0, -1])
    source = NpzDirFeatureSource(text, key="last_hidden_state", filename="qid{}.npz")
    assert source.get("42").shape == (7, 6)


def test_hdf5_layout(tmp_path: Path, rng: np.random.Generator) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "clip_image.hdf5"
    feats = rng.standard_normal((6, 4)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("vidA", data=feats)
    source = Hdf5FeatureSource(path)
    assert np.array_equal(source.get("vidA"), feats)
    with pytest.raises(NotFoundError, match="vidB"):
        source.get("vidB")
    source.close()
    assert isinstance(open_one_source(path), Hdf5FeatureSource)


def test_concat_normalises_each_source_and_cuts_to_shortest(rng: np.random.Generator) -> None:
    a = rng.standard_normal((5, 3)).astype(np.float32) * 7
    b = rng.standard_normal((4, 2)).astype(np.float32) * 0.1
    source = ConcatFeatureSource([InMemoryFeatureSource({"v": a}), InMemoryFeatureSource({"v": b})])
    got = source.get("v")
    assert got.shape == (4, 5)
    assert np.allclose(np.linalg.norm(got[:, :3], axis=1), 1.0, atol=1e-6)
    assert np.allclose(np.linalg.norm(got[:, 3:], axis=1), 1.0, atol=1e-6)
    assert np.allclose(got[:, :3], a[:4] / np.linalg.norm(a[:4], axis=1, keepdims=True))
    raw = ConcatFeatureSource([InMemoryFeatureSource({"v": a})], normalize=False).get("v")
    assert np.allclose(raw, a)


def test_l2_normalize_keeps_zero_rows() -> None:
    out = l2_normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_open_feature_source_dispatch(tmp_path: Path, rng: np.random.Generator) -> None:
    for name, width in (("clip_features", 4), ("slowfast_features", 6)):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "v.npz", features=rng.standard_normal((3, width)))
    source = open_feature_source([tmp_path / "clip_features", tmp_path / "slowfast_features"])
    assert source.get("v").shape == (3, 10)
    with pytest.raises(NotFoundError):
        open_feature_source([tmp_path / "nope.hdf5"])
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported"):
        open_feature_source([tmp_path / "x.txt"])
    with pytest.raises(NotFoundError):
        open_feature_source([tmp_path / "nowhere"])
    with pytest.raises(InputError):
        ConcatFeatureSource([])
