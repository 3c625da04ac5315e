"""Discovery of input videos, list files and content hashes."""

import hashlib
from pathlib import Path

import pytest

from engine.config import IngestSettings
from engine.errors import InputError, NotFoundError
from engine.sources import discover_videos, local_path, read_list_file, sha256_file

EXTENSIONS = IngestSettings().extensions


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    for name in ("a.mp4", "b.MKV", "notes.txt", "sub/c.webm"):
        (tmp_path / name).write_bytes(name.encode())
    return tmp_path


def test_directories_flat_and_recursive(tree: Path) -> None:
    assert [p.name for p in discover_videos([tree], EXTENSIONS)] == ["a.mp4", "b.MKV"]
    assert [p.name for p in discover_videos([tree], EXTENSIONS, recursive=True)] == [
        "a.mp4",
        "b.MKV",
        "c.webm",
    ]


def test_explicit_files_any_extension_and_no_duplicates(tree: Path) -> None:
    found = discover_videos([tree / "notes.txt", tree, tree / "a.mp4"], EXTENSIONS)
    assert [p.name for p in found] == ["notes.txt", "a.mp4", "b.MKV"]


def test_missing_path_is_named(tree: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no such file or directory: .*missing\.mp4"):
        discover_videos([tree / "missing.mp4"], EXTENSIONS)


def test_uris(tree: Path) -> None:
    assert local_path(f"file://{tree}/a.mp4") == tree / "a.mp4"
    with pytest.raises(InputError, match="unsupported URI scheme 'http'"):
        local_path("http://example.com/v.mp4")


def test_list_file_relative_entries(tree: Path) -> None:
    listing = tree / "list.txt"
    listing.write_text("# videos\na.mp4\n\nsub/c.webm\n")
    assert read_list_file(listing) == [str(tree / "a.mp4"), str(tree / "sub/c.webm")]
    with pytest.raises(NotFoundError, match="cannot read list file"):
        read_list_file(tree / "absent.txt")


def test_sha256(tree: Path) -> None:
    assert sha256_file(tree / "a.mp4", chunk_bytes=2) == hashlib.sha256(b"a.mp4").hexdigest()
