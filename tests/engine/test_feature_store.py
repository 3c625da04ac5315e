"""Feature store: round trips, shard roll-over, crash leftovers, dims, bad addresses."""

from pathlib import Path

import numpy as np
import pytest

from engine.errors import InputError, NotFoundError
from engine.feature_store import FeatureAddress, FeatureStore, FeatureStoreError


def _rows(seed: int, n: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_round_trip_is_float16_exact(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path / "s", dim=8)
    first, second = _rows(0, 5), _rows(1, 3)
    a, b = store.append(first), store.append(second)
    assert (a.shard, a.offset, a.length) == (0, 0, 5)
    assert (b.shard, b.offset, b.length) == (0, 5, 3)
    np.testing.assert_array_equal(store.read(a), first.astype(np.float16))
    np.testing.assert_array_equal(store.read(b), second.astype(np.float16))
    reopened = FeatureStore.open(tmp_path / "s", dim=8)
    np.testing.assert_array_equal(reopened.read(b), second.astype(np.float16))


def test_read_maps_only_the_requested_rows(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, dim=8)
    store.append(_rows(0, 1000))
    address = store.append(_rows(1, 2))
    view = store.read(address)
    assert isinstance(view, np.memmap)
    assert view.offset == 1000 * 8 * 2
    assert view.shape == (2, 8)


def test_shards_roll_over(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, dim=8, shard_bytes=10 * 8 * 2)
    addresses = [store.append(_rows(i, 4)) for i in range(5)]
    assert [(a.shard, a.offset) for a in addresses] == [(0, 0), (0, 4), (1, 0), (1, 4), (2, 0)]
    for i, address in enumerate(addresses):
        np.testing.assert_array_equal(store.read(address), _rows(i, 4).astype(np.float16))


def test_partial_row_from_a_crash_is_skipped(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, dim=8)
    first = store.append(_rows(0, 2))
    with (tmp_path / "shard-000000.f16").open("ab") as fh:
        fh.write(b"\x01\x02\x03")  # a torn write: less than one row
    second = store.append(_rows(1, 2))
    assert second.offset == 3
    np.testing.assert_array_equal(store.read(first), _rows(0, 2).astype(np.float16))
    np.testing.assert_array_equal(store.read(second), _rows(1, 2).astype(np.float16))


def test_dim_mismatch_and_bad_input(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, dim=8)
    with pytest.raises(FeatureStoreError, match="holds 8-d features, not 4-d"):
        FeatureStore.open(tmp_path, dim=4)
    with pytest.raises(InputError):
        store.append(_rows(0, 2, dim=4))
    with pytest.raises(InputError):
        store.append(np.zeros((0, 8), np.float32))


def test_bad_addresses(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, dim=8)
    store.append(_rows(0, 2))
    with pytest.raises(FeatureStoreError, match="outside"):
        store.read(FeatureAddress(0, 1, 5))
    with pytest.raises(NotFoundError, match="missing"):
        store.read(FeatureAddress(3, 0, 1))
