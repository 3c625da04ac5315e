"""Stage 1 on a hand-built collection: fusion, filters inside the search, stale ids."""

from pathlib import Path

import numpy as np
import pytest

from engine.config import IndexSettings
from index.catalog import Catalog
from index.catalog_schema import Video, VideoStatus
from index.collection_index import CollectionIndexes
from index.stage1 import FusionParams, SearchFilters, search_candidates

DIM = 32
# video name -> (duration_s, metadata, cosine to the query at global/action/entity)
VIDEOS = {
    "planted": (30.0, {"lang": "en", "year": 2020}, (0.8, 0.8, 0.8)),
    "global_only": (60.0, {"lang": "en", "year": 2021}, (0.9, 0.1, 0.1)),
    "action_only": (90.0, {"lang": "fr", "year": 2020}, (0.1, 0.9, 0.1)),
    "entity_only": (120.0, {"lang": "en", "year": 2019}, (0.1, 0.1, 0.9)),
    "middling": (150.0, {"lang": "de", "year": 2020}, (0.5, 0.5, 0.5)),
}
LEVELS = ("global", "action", "entity")


def _unit(cosine: float, axis: int) -> np.ndarray:
    vector = np.zeros(DIM, np.float32)
    vector[0] = cosine
    vector[axis] = np.sqrt(1 - cosine**2)
    return vector


@pytest.fixture
def world(
    catalog: Catalog, tmp_path: Path
) -> tuple[Catalog, int, CollectionIndexes, dict[str, int]]:
    collection = catalog.create_collection("c", "tiny-random")
    indexes = CollectionIndexes(tmp_path / "idx", "tiny-random", DIM, IndexSettings())
    ids: dict[str, int] = {}
    axis = 1
    for name, (duration, metadata, cosines) in VIDEOS.items():
        with catalog.session() as session:
            video = Video(
                collection_id=collection.id,
                uri=f"/v/{name}.mp4",
                sha256=name.ljust(64, "0"),
                duration_s=duration,
                status=VideoStatus.READY,
                user_metadata=metadata,
            )
            session.add(video)
            session.flush()
            ids[name] = video.id
        segment_ids = catalog.replace_segments(
            ids[name], [(level, 0.0, duration) for level in LEVELS]
        )
        for level, segment_id, cosine in zip(LEVELS, segment_ids, cosines, strict=True):
            indexes.add(level, np.array([segment_id]), _unit(cosine, axis)[None])
            axis += 1
    return catalog, collection.id, indexes, ids


def _names(ids: dict[str, int], candidates: list) -> list[str]:  # type: ignore[type-arg]
    by_id = {v: k for k, v in ids.items()}
    return [by_id[c.video_id] for c in candidates]


QUERY = {level: np.eye(DIM, dtype=np.float32)[0] for level in LEVELS}


def test_fusion_ranks_the_all_round_video_first(world) -> None:  # type: ignore[no-untyped-def]
    catalog, collection_id, indexes, ids = world
    for level in LEVELS:  # any single level alone puts another video first
        alone = search_candidates(
            catalog, collection_id, indexes, QUERY, FusionParams({level: 1.0}), 5
        )
        assert _names(ids, alone)[0] != "planted"
    fused = search_candidates(
        catalog, collection_id, indexes, QUERY, FusionParams(dict.fromkeys(LEVELS, 1.0)), 5
    )
    assert _names(ids, fused)[0] == "planted"
    top = fused[0]
    assert top.level_scores == pytest.approx(dict.fromkeys(LEVELS, 0.8), abs=1e-5)
    assert {hit.level for hit in top.segments} == set(LEVELS)
    assert [c.score for c in fused] == sorted((c.score for c in fused), reverse=True)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (SearchFilters(metadata={"lang": "en"}), {"planted", "global_only", "entity_only"}),
        (SearchFilters(metadata={"year": 2020}), {"planted", "action_only", "middling"}),
        (
            SearchFilters(min_duration_s=60, max_duration_s=120),
            {"global_only", "action_only", "entity_only"},
        ),
        (SearchFilters(metadata={"lang": "xx"}), set()),
    ],
)
def test_filters_apply_inside_the_search(world, filters: SearchFilters, expected: set[str]) -> None:  # type: ignore[no-untyped-def]
    catalog, collection_id, indexes, ids = world
    weights = dict.fromkeys(LEVELS, 1.0)
    everything = search_candidates(
        catalog, collection_id, indexes, QUERY, FusionParams(weights), 5, filters
    )
    assert set(_names(ids, everything)) == expected
    # One segment per level: a filter applied after that cut would mostly leave nothing.
    narrow = FusionParams(weights, k_per_level=1)
    found = search_candidates(catalog, collection_id, indexes, QUERY, narrow, 5, filters)
    assert set(_names(ids, found)) <= expected
    assert bool(found) == bool(expected)


def test_deleted_video_is_ignored_before_the_index_catches_up(world) -> None:  # type: ignore[no-untyped-def]
    catalog, collection_id, indexes, ids = world
    catalog.delete_video(ids["planted"])
    fused = search_candidates(
        catalog, collection_id, indexes, QUERY, FusionParams(dict.fromkeys(LEVELS, 1.0)), 5
    )
    assert "planted" not in _names(ids, fused)
    assert len(fused) == 4
