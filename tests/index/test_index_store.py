"""index_store: atomic versioned saves, leftovers cleaned, damage and version checks."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.errors import IndexUnreadableError, VectorIndexError
from index import index_store
from index.index_factory import IndexSpec
from index.index_store import IndexManifest, data_file, read_manifest, write_index_dir
from index.vector_index import VectorIndex


def _manifest(count: int = 3) -> IndexManifest:
    return IndexManifest(
        encoder="enc",
        dim=4,
        metric="inner_product",
        factory="Flat",
        count=count,
        nprobe=None,
        refine_k_factor=1.0,
        settings_hash="abc",
    )


def _writer(payload: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(payload)

    return write


def test_save_commits_manifest_with_checksums_and_drops_old_versions(tmp_path: Path) -> None:
    assert not index_store.index_exists(tmp_path)
    first = write_index_dir(
        tmp_path, _manifest(), {"a.bin": _writer(b"one"), "b.bin": _writer(b"")}
    )
    assert index_store.index_exists(tmp_path)
    stored = json.loads((tmp_path / "manifest.json").read_text())
    assert stored["files"]["a.bin"]["bytes"] == 3 and stored["data_dir"] == first.data_dir
    assert read_manifest(tmp_path) == first
    assert data_file(tmp_path, first, "a.bin", verify=True).read_bytes() == b"one"
    second = write_index_dir(tmp_path, _manifest(5), {"a.bin": _writer(b"two!")})
    assert read_manifest(tmp_path).count == 5
    assert not (tmp_path / first.data_dir).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        second.data_dir,
        "manifest.json",
        "write.lock",
    ]


def test_crash_leftovers_are_ignored_then_removed(tmp_path: Path) -> None:
    first = write_index_dir(tmp_path, _manifest(), {"a.bin": _writer(b"one")})
    # What a kill during a save leaves behind: a data version and a manifest not renamed.
    (tmp_path / "data-dead").mkdir()
    (tmp_path / "data-dead" / "a.bin").write_bytes(b"half")
    (tmp_path / "manifest.json.tmp-dead").write_text("{")
    assert read_manifest(tmp_path) == first
    second = write_index_dir(tmp_path, _manifest(), {"a.bin": _writer(b"new")})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        second.data_dir,
        "manifest.json",
        "write.lock",
    ]


def test_failure_at_the_commit_point_keeps_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_index_dir(tmp_path, _manifest(), {"a.bin": _writer(b"one")})

    def no_rename(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(index_store.os, "replace", no_rename)
    with pytest.raises(VectorIndexError, match="injected"):
        write_index_dir(tmp_path, _manifest(9), {"a.bin": _writer(b"two")})
    monkeypatch.undo()
    assert read_manifest(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        first.data_dir,
        "manifest.json",
        "write.lock",
    ]


def test_unknown_format_version_and_missing_entries_are_refused(tmp_path: Path) -> None:
    committed = write_index_dir(tmp_path, _manifest(), {"a.bin": _writer(b"one")})
    with pytest.raises(IndexUnreadableError, match="lists no file"):
        data_file(tmp_path, committed, "b.bin", verify=True)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(IndexUnreadableError, match="format version 99"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"encoder": "x"}))
    with pytest.raises(IndexUnreadableError, match="damaged index manifest"):
        read_manifest(tmp_path)


def test_load_retries_when_a_concurrent_save_replaces_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    spec = IndexSpec(factory="Flat", kind="flat")
    VectorIndex.build(np.arange(10), vectors[:10], spec, encoder="enc").save(tmp_path)
    newer = VectorIndex.build(np.arange(30), vectors, spec, encoder="enc")
    real_data_file = index_store.data_file
    saves: list[int] = []

    def racing_data_file(
        directory: Path, manifest: IndexManifest, name: str, *, verify: bool
    ) -> Path:
        if not saves:  # another process commits a new version right after our manifest read
            saves.append(1)
            newer.save(tmp_path)
        return real_data_file(directory, manifest, name, verify=verify)

    monkeypatch.setattr(index_store, "data_file", racing_data_file)
    loaded = VectorIndex.load(tmp_path, "enc", 8)
    assert saves == [1] and len(loaded) == 30
