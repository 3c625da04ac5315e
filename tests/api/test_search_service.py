"""The two-stage search service on features with known ground truth.

Videos are added as precomputed clip features (`ingest_features`): random clip
embeddings, with the query's own sentence embedding planted in one video between known
times. Search must return that video first and a moment overlapping the planted span,
with a long video localized through windows, filters, grouping and page tokens honoured.
"""

from pathlib import Path

import numpy as np
import pytest

from api.search import SearchRequest, SearchService
from engine.config import Settings, load_settings
from engine.encoders import create_encoder
from engine.errors import InputError, NotFoundError
from engine.feature_store import FeatureStore
from index.catalog import Catalog
from index.collection_index import features_dir
from index.ingest import FeatureVideo, ingest_features
from index.stage1 import SearchFilters

QUERY = "a small red circle slides to the left"
CLIP_S = 2.0


def _random_clips(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    clips = rng.standard_normal((n, dim)).astype(np.float32)
    return clips / np.linalg.norm(clips, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Catalog, dict[str, int]]:
    root = tmp_path_factory.mktemp("search")
    (root / "config.toml").write_text(
        '[encoder]\nname = "tiny-random"\ndevice = "cpu"\n[search]\ndefault_collection = "c"\n'
        "candidates = 5\n"
    )
    settings = load_settings(root / "config.toml")
    catalog = Catalog.initialise(settings.catalog_url)
    catalog.create_collection("c", "tiny-random")
    sentence = create_encoder("tiny-random", "cpu").encode_text([QUERY]).sentence[0]
    rng = np.random.default_rng(0)
    videos = []
    for i in range(12):
        clips = _random_clips(rng, 30, len(sentence))
        videos.append(FeatureVideo(f"/v/noise{i}.mp4", clips, 60.0, metadata={"group": i % 3}))
    planted = _random_clips(rng, 30, len(sentence))
    planted[10:15] = sentence + 0.05 * rng.standard_normal((5, len(sentence)))  # 20-30 s
    videos.append(FeatureVideo("/v/planted.mp4", planted, 60.0, metadata={"group": 1}))
    long = _random_clips(rng, 1800, len(sentence))  # one hour: windows needed
    long[1500:1504] = sentence + 0.05 * rng.standard_normal((4, len(sentence)))  # 3000-3008 s
    videos.append(FeatureVideo("/v/long.mp4", long, 3600.0, metadata={"group": 2}))
    result = ingest_features(catalog, settings, "c", videos)
    assert len(result.ready) == len(videos)
    ids = {Path(v.uri).stem: v.id for v in catalog.list_videos("c")}
    return settings, catalog, ids


@pytest.fixture(scope="module")
def service(world: tuple[Settings, Catalog, dict[str, int]]) -> SearchService:
    settings, catalog, _ = world
    return SearchService(settings, catalog)


def test_planted_moments_come_first(service: SearchService, world) -> None:  # type: ignore[no-untyped-def]
    _, _, ids = world
    response = service.search(SearchRequest(QUERY, top_k=10, group_by="video", debug=True))
    top_two = {r.video_id for r in response.results[:2]}
    assert top_two == {ids["planted"], ids["long"]}
    spans = {r.video_id: (r.moments[0].start_s, r.moments[0].end_s) for r in response.results}  # type: ignore[union-attr]
    start, end = spans[ids["planted"]]
    assert start < 30 and end > 20
    start, end = spans[ids["long"]]
    assert start < 3008 and end > 3000
    assert response.timings_ms is not None
    assert set(response.timings_ms) >= {"encode_text", "stage1", "stage2"}


def test_moment_results_and_pages(service: SearchService) -> None:
    first = service.search(SearchRequest(QUERY, top_k=4))
    assert len(first.results) == 4
    assert [r.score for r in first.results] == sorted(
        (r.score for r in first.results), reverse=True
    )
    assert first.next_page_token
    second = service.search(SearchRequest(QUERY, top_k=4, page_token=first.next_page_token))
    seen = {(r.video_id, r.start_s, r.end_s) for r in first.results}
    assert not seen & {(r.video_id, r.start_s, r.end_s) for r in second.results}
    assert second.results[0].score <= first.results[-1].score
    with pytest.raises(InputError, match="another query"):
        service.search(SearchRequest("other words", top_k=4, page_token=first.next_page_token))
    with pytest.raises(InputError, match="invalid page token"):
        service.search(SearchRequest(QUERY, top_k=4, page_token="!!!"))


def test_filters_and_errors(service: SearchService, world) -> None:  # type: ignore[no-untyped-def]
    _, _, ids = world
    response = service.search(
        SearchRequest(QUERY, group_by="video", filters=SearchFilters(metadata={"group": 0}))
    )
    assert response.results
    assert ids["planted"] not in {r.video_id for r in response.results}
    assert all(r.metadata["group"] == 0 for r in response.results)
    short = service.search(SearchRequest(QUERY, filters=SearchFilters(max_duration_s=100)))
    assert ids["long"] not in {r.video_id for r in short.results}
    with pytest.raises(InputError, match="top_k"):
        service.search(SearchRequest(QUERY, top_k=1000))
    with pytest.raises(InputError, match="empty"):
        service.search(SearchRequest("   "))
    with pytest.raises(NotFoundError, match="unknown collection"):
        service.search(SearchRequest(QUERY, collection="nope"))


def test_moments_inside_one_video(service: SearchService, world) -> None:  # type: ignore[no-untyped-def]
    _, _, ids = world
    moments = service.moments_in_video(ids["planted"], QUERY, 3)
    assert moments[0].start_s < 30
    assert moments[0].end_s > 20


def test_rerun_of_feature_ingest_skips(world) -> None:  # type: ignore[no-untyped-def]
    settings, catalog, ids = world
    video = catalog.get_video(ids["noise0"])
    root = features_dir(settings.storage.data_dir, video.collection_id)
    clips = np.asarray(
        FeatureStore.open(root, FeatureStore.stored_dim(root) or 0).read(
            catalog.feature_address(video.id)
        ),
        dtype=np.float32,
    )
    again = ingest_features(catalog, settings, "c", [FeatureVideo("/v/copy.mp4", clips, 60.0)])
    assert again.skipped == [video.id]
