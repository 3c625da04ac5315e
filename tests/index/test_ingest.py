"""Ingest end to end on generated videos: idempotent reruns, bad files, and crashes.

The crash tests prove the promise of index/ingest.py: whatever point a run dies at
(an exception between the feature store and the catalog, before an index save, or a
SIGKILL of a real `vtr index` process), rerunning finishes the collection with exactly
the features, segments and index vectors of an uninterrupted run.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from engine.config import Settings, load_settings
from engine.feature_store import FeatureStore
from index.catalog import Catalog
from index.catalog_schema import Segment, Video
from index.collection_index import CollectionIndexes, features_dir, indexes_dir
from index.ingest import ingest
from index.levels import LEVELS
from tests.media import make_video, truncate_file, write_empty, write_garbage

N_GOOD = 5


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for i in range(N_GOOD):
        make_video(root / f"v{i}.mp4", seconds=5.0 + 2 * i, fps=8, size=(64, 48))
    return root


def _settings(tmp_path: Path, catalog_url: str = "") -> Settings:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[catalog]\nurl = "{catalog_url}"\n[encoder]\nname = "tiny-random"\ndevice = "cpu"\n'
        "[ingest]\nbatch_size = 8\n"
    )
    return load_settings(config)


def _prepared(tmp_path: Path, catalog_url: str = "") -> tuple[Settings, Catalog]:
    settings = _settings(tmp_path, catalog_url)
    catalog = Catalog.initialise(settings.catalog_url)
    catalog.create_collection("c", settings.encoder.name)
    return settings, catalog


def snapshot(settings: Settings, catalog: Catalog) -> dict[str, tuple[object, ...]]:
    """Everything ingest produced, keyed by file name, checked for internal consistency."""
    collection = catalog.get_collection("c")
    store_root = features_dir(settings.storage.data_dir, collection.id)
    store = FeatureStore.open(store_root, FeatureStore.stored_dim(store_root) or 0)
    indexes = CollectionIndexes.open(
        indexes_dir(settings.storage.data_dir, collection.id),
        collection.encoder_spec,
        store.dim,
        settings.index,
    )
    result: dict[str, tuple[object, ...]] = {}
    all_segments: list[int] = []
    with catalog.session() as session:
        videos = session.scalars(select(Video).where(Video.collection_id == collection.id)).all()
        names = [Path(v.uri).name for v in videos]
        assert len(names) == len(set(names)), "a file was registered twice"
        for video in videos:
            segments = session.scalars(
                select(Segment).where(Segment.video_id == video.id).order_by(Segment.id)
            ).all()
            if video.status != "ready":
                assert segments == []
                result[Path(video.uri).name] = (video.status,)
                continue
            assert all(s.vector_id == s.id for s in segments), "segment not marked indexed"
            features = np.asarray(catalog_features(catalog, store, video.id))
            assert features.shape[0] == video.n_clips
            spans = tuple((s.level, s.start_s, s.end_s) for s in segments)
            all_segments.extend(s.id for s in segments)
            result[Path(video.uri).name] = (video.status, video.n_clips, spans, features)
    indexed = np.concatenate([indexes.get(level).ids() for level in LEVELS])  # type: ignore[union-attr]
    assert sorted(indexed.tolist()) == sorted(all_segments), "index and catalog disagree"
    return result


def catalog_features(catalog: Catalog, store: FeatureStore, video_id: int) -> np.ndarray:
    return np.asarray(store.read(catalog.feature_address(video_id)), dtype=np.float32)


def assert_same(a: dict[str, tuple[object, ...]], b: dict[str, tuple[object, ...]]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name][:3] == b[name][:3], name
        if len(a[name]) > 3:
            np.testing.assert_allclose(a[name][3], b[name][3], atol=2e-3)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reference(video_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    """An uninterrupted ingest of the good videos."""
    settings, catalog = _prepared(tmp_path_factory.mktemp("reference"))
    ingest(catalog, settings, "c", [video_dir])
    return snapshot(settings, catalog)


def test_ingest_indexes_every_level_and_rerun_skips(
    video_dir: Path,
    tmp_path: Path,
    catalog_url: str,
    reference: dict,  # type: ignore[type-arg]
) -> None:
    settings, catalog = _prepared(tmp_path, catalog_url)
    first = ingest(catalog, settings, "c", [video_dir])
    assert len(first.ready) == N_GOOD
    assert first.job.status == "succeeded"
    assert first.job.progress == 1.0
    state = snapshot(settings, catalog)
    assert_same(state, reference)
    assert state["v0.mp4"][1] == 3  # 5 s of 2 s clips
    levels = {span[0] for span in state["v0.mp4"][2]}  # type: ignore[attr-defined]
    assert levels == set(LEVELS)

    again = ingest(catalog, settings, "c", [video_dir, video_dir / "v1.mp4"])
    assert again.ready == []
    assert sorted(again.skipped) == sorted(v.id for v in catalog.list_videos("c"))
    assert_same(snapshot(settings, catalog), reference)


def test_bad_files_fail_alone(video_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    write_garbage(bad / "garbage.mp4")
    write_empty(bad / "empty.mp4")
    truncate_file(video_dir / "v4.mp4", bad / "truncated.mp4", keep=0.3)
    settings, catalog = _prepared(tmp_path)
    result = ingest(catalog, settings, "c", [video_dir / "v0.mp4", bad])
    failed = dict(result.failed)
    assert set(map(lambda p: Path(p).name, failed)) == {"garbage.mp4", "empty.mp4", "truncated.mp4"}
    assert all(str(bad) in error for error in failed.values())
    assert len(result.ready) == 1
    listed = {Path(v.uri).name: v for v in catalog.list_videos("c")}
    assert listed["garbage.mp4"].status == "failed"
    assert listed["garbage.mp4"].error
    assert listed["v0.mp4"].status == "ready"


def test_crash_between_store_and_catalog(
    video_dir: Path,
    tmp_path: Path,
    reference: dict,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
) -> None:
    settings, catalog = _prepared(tmp_path)
    original = Catalog.finish_video
    calls = {"n": 0}

    def dying_finish(self: Catalog, *args: object, **kwargs: object) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if killed after the features were written
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Catalog, "finish_video", dying_finish)
    with pytest.raises(KeyboardInterrupt):
        ingest(catalog, settings, "c", [video_dir])
    assert catalog.list_jobs()[0].status == "failed"
    monkeypatch.setattr(Catalog, "finish_video", original)
    resumed = ingest(catalog, settings, "c", [video_dir])
    assert len(resumed.ready) + len(resumed.skipped) == N_GOOD
    assert_same(snapshot(settings, catalog), reference)


def test_crash_before_index_save(
    video_dir: Path,
    tmp_path: Path,
    reference: dict,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[type-arg]
) -> None:
    settings, catalog = _prepared(tmp_path)
    monkeypatch.setattr(
        CollectionIndexes, "save", lambda self: (_ for _ in ()).throw(OSError("disk gone"))
    )
    with pytest.raises(OSError, match="disk gone"):
        ingest(catalog, settings, "c", [video_dir])
    monkeypatch.undo()
    ingest(catalog, settings, "c", [video_dir])
    assert_same(snapshot(settings, catalog), reference)


def _ready_count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            return int(
                connection.execute("SELECT count(*) FROM videos WHERE status='ready'").fetchone()[0]
            )
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun(video_dir: Path, tmp_path: Path, reference: dict) -> None:  # type: ignore[type-arg]
    settings, catalog = _prepared(tmp_path)
    config = tmp_path / "config.toml"
    db = settings.storage.data_dir / "vtr.db"
    command = [
        sys.executable,
        "-m",
        "api.cli.app",
        "--config",
        str(config),
        "index",
        str(video_dir),
        "-c",
        "c",
        "--json",
    ]
    rng = np.random.default_rng(0)
    kills = 0
    for _attempt in range(12):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        before = _ready_count(db)
        # Kill once this run has made progress (or at a random moment during start-up).
        deadline = time.monotonic() + float(rng.uniform(2.0, 12.0))
        while process.poll() is None and time.monotonic() < deadline:
            if _ready_count(db) > before and rng.random() < 0.5:
                break
            time.sleep(0.05)
        if process.poll() is not None:
            assert process.returncode == 0, process.stderr.read().decode() if process.stderr else ""
            break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    else:
        final = subprocess.run(command, capture_output=True, check=False)
        assert final.returncode == 0, final.stderr.decode()
    assert kills >= 1, "the run finished before it could be killed"
    assert_same(snapshot(settings, catalog), reference)
    jobs = catalog.list_jobs(limit=50)
    assert jobs[0].status == "succeeded"
    assert all(job.status in ("succeeded", "failed") for job in jobs)
