"""Reindex: rebuilds from catalog + features, recovers lost indexes, upgrades index types."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from api.cli.app import main
from engine.config import Settings, load_settings
from index.catalog import Catalog
from index.catalog_schema import Segment, VideoStatus
from index.collection_index import CollectionIndexes, indexes_dir
from index.ingest import FeatureVideo, ingest_features
from index.levels import LEVELS
from index.reindex import needs_rebuild, reindex

DIM = 16


def _videos(n: int, seed: int) -> list[FeatureVideo]:
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(n):
        scenes = rng.standard_normal((3, DIM))
        clips = np.repeat(scenes, 4, axis=0) + 0.01 * rng.standard_normal((12, DIM))
        clips /= np.linalg.norm(clips, axis=1, keepdims=True)
        videos.append(FeatureVideo(f"/v/{seed}-{i}.mp4", clips.astype(np.float32), 24.0))
    return videos


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, Catalog, Path]:
    config = tmp_path / "config.toml"
    # A tiny exact-search limit, so a few hundred vectors already call for IVF.
    config.write_text("[index]\nexact_max_vectors = 200\n")
    settings = load_settings(config)
    catalog = Catalog.initialise(settings.catalog_url)
    catalog.create_collection("c", "features-16")
    return settings, catalog, config


def _indexes(settings: Settings, catalog: Catalog) -> CollectionIndexes:
    record = catalog.get_collection("c")
    return CollectionIndexes.open(
        indexes_dir(settings.storage.data_dir, record.id), "features-16", DIM, settings.index
    )


def _search_top(indexes: CollectionIndexes, query: np.ndarray) -> dict[str, int]:
    result = {}
    for level in LEVELS:
        index = indexes.get(level)
        assert index is not None
        result[level] = int(index.search(query, 1)[1][0][0])
    return result


def test_growing_collection_upgrades_its_index_type(setup) -> None:  # type: ignore[no-untyped-def]
    settings, catalog, _ = setup
    ingest_features(catalog, settings, "c", _videos(5, 0))
    small = _indexes(settings, catalog)
    assert small.get("action").factory == "Flat"  # type: ignore[union-attr]
    ingest_features(catalog, settings, "c", _videos(60, 1))
    grown = _indexes(settings, catalog)
    assert "IVF" in grown.get("action").factory  # type: ignore[union-attr]
    assert needs_rebuild(grown) == []
    with catalog.session() as session:
        segments = session.scalars(select(Segment)).all()
    assert all(s.vector_id == s.id for s in segments)
    assert sum(len(grown.get(level)) for level in LEVELS) == len(segments)  # type: ignore[arg-type]


def test_reindex_recovers_a_lost_index(setup, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    settings, catalog, config = setup
    videos = _videos(8, 2)
    ingest_features(catalog, settings, "c", videos)
    query = videos[3].clips[5]
    before = _search_top(_indexes(settings, catalog), query)
    shutil.rmtree(indexes_dir(settings.storage.data_dir, catalog.get_collection("c").id))
    assert main(["--config", str(config), "reindex", "-c", "c", "--json"]) == 0
    assert '"vectors"' in capsys.readouterr().out
    after = _search_top(_indexes(settings, catalog), query)
    # Segment ids are renewed; the hits must still be the same video's segments.
    ids = {v.uri: v.id for v in catalog.list_videos("c")}
    with catalog.session() as session:
        owner = {level: session.get(Segment, seg).video_id for level, seg in after.items()}  # type: ignore[union-attr]
    assert set(owner.values()) == {ids[videos[3].uri]}
    assert len(before) == len(after)
    assert reindex(catalog, settings, "c")["global"] == 8


def test_reindex_progress_counts_only_ready_videos(setup) -> None:  # type: ignore[no-untyped-def]
    settings, catalog, _ = setup
    ingest_features(catalog, settings, "c", _videos(3, 4))
    failed, _ = catalog.register_video(catalog.get_collection("c").id, "/v/bad.mp4", "f" * 64)
    catalog.set_video_status(failed.id, VideoStatus.FAILED, "not a video")
    assert catalog.count_videos("c") == 4 and catalog.count_videos("c", VideoStatus.READY) == 3
    calls: list[tuple[int, int]] = []
    reindex(catalog, settings, "c", on_video=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
