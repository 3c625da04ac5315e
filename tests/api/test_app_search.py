"""HTTP search: POST /v1/search and GET /v1/videos/{id}/moments on a real small collection.

Four generated videos indexed with the tiny random encoder (tests/api/app_env.py). The
tests check the HTTP contract: result shapes for both groupings, debug timings (also in
/metrics), page tokens that chain without overlap, filters acting on catalog fields,
bounds (422) and error bodies, and concurrent searches from eight threads.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.app_env import COLLECTION, DURATIONS_S, World, error_of, serving, shared_world

QUERY = "a red square on a plain background"


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return shared_world(tmp_path_factory)


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with serving(world.settings) as client:
        yield client


def _search(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/search", json={"query": QUERY, "collection": COLLECTION, **body})


def test_search_returns_moments_with_catalog_fields(client: TestClient, world: World) -> None:
    response = _search(client, top_k=5)
    assert response.status_code == 200
    body = response.json()
    assert body["collection"] == COLLECTION and body["group_by"] == "moment"
    assert body["timings_ms"] is None  # only with debug
    results = body["results"]
    assert len(results) == 5
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for r in results:
        assert r["video_id"] in world.videos.values()
        assert r["title"].endswith(".mp4")
        assert 0 <= r["start_s"] < r["end_s"] <= r["duration_s"] + 1e-6
        assert set(r["level_scores"]) <= {"global", "action", "entity"}


def test_search_by_video_groups_moments(client: TestClient) -> None:
    body = _search(client, group_by="video", top_k=10).json()
    ids = [r["video_id"] for r in body["results"]]
    assert len(ids) == len(set(ids)) == len(DURATIONS_S)
    for video in body["results"]:
        assert video["moments"] and all(
            m["video_id"] == video["video_id"] for m in video["moments"]
        )
        assert video["score"] == pytest.approx(max(m["score"] for m in video["moments"]))


def test_default_collection_and_unknown_collection(client: TestClient, world: World) -> None:
    response = client.post("/v1/search", json={"query": QUERY, "collection": "nope"})
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found" and "nope" in error["message"]
    # the default collection ("default") does not exist in this world either
    assert client.post("/v1/search", json={"query": QUERY}).status_code == 404


def test_debug_timings_and_search_metrics(client: TestClient) -> None:
    body = _search(client, debug=True).json()
    stages = set(body["timings_ms"])
    assert {"encode_text", "stage1", "stage2"} <= stages
    assert all(v >= 0 for v in body["timings_ms"].values())
    text = client.get("/metrics").text
    for stage in ("encode_text", "stage1", "stage2"):
        assert f'vtr_search_stage_seconds_count{{stage="{stage}"}}' in text
    assert 'vtr_http_requests_total{method="POST",route="/v1/search",status="200"}' in text


def test_pages_chain_without_overlap(client: TestClient) -> None:
    everything = _search(client, top_k=100).json()["results"]
    seen: list[tuple[int, float, float]] = []
    token = None
    pages = 0
    while True:
        body = _search(client, top_k=3, **({"page_token": token} if token else {})).json()
        pages += 1
        assert len(body["results"]) <= 3
        seen.extend((r["video_id"], r["start_s"], r["end_s"]) for r in body["results"])
        token = body["next_page_token"]
        if token is None:
            break
        assert pages < 50
    assert pages >= 2
    assert len(seen) == len(set(seen))  # no moment on two pages
    assert seen == [(r["video_id"], r["start_s"], r["end_s"]) for r in everything]


def test_bad_page_tokens_are_400(client: TestClient) -> None:
    response = _search(client, page_token="not-a-token")
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"
    token = _search(client, top_k=2).json()["next_page_token"]
    other_query = client.post(
        "/v1/search",
        json={"query": "something else", "collection": COLLECTION, "page_token": token},
    )
    assert other_query.status_code == 400
    assert "another query" in error_of(other_query)["message"]


def test_duration_filters(client: TestClient, world: World) -> None:
    body = _search(client, top_k=50, filters={"min_duration_s": 9.0}).json()
    durations = {r["duration_s"] for r in body["results"]}
    assert body["results"] and durations <= {10.0, 12.0}
    body = _search(client, top_k=50, filters={"min_duration_s": 7, "max_duration_s": 9}).json()
    assert {r["video_id"] for r in body["results"]} == {world.videos["v1.mp4"]}
    body = _search(client, filters={"min_duration_s": 100}).json()
    assert body["results"] == [] and body["next_page_token"] is None


def test_metadata_filter(client: TestClient, world: World) -> None:
    body = _search(client, top_k=50, filters={"metadata": {"topic": "birds"}}).json()
    assert body["results"]
    assert {r["video_id"] for r in body["results"]} == {world.videos["v1.mp4"]}
    assert all(r["metadata"] == {"topic": "birds"} for r in body["results"])
    assert _search(client, filters={"metadata": {"topic": "cats"}}).json()["results"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": 101}, "top_k"),  # over search.max_top_k (100)
        ({"top_k": 100000}, "top_k"),
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 1001}, "query"),  # over search.max_query_chars
        ({"group_by": "clip"}, "group_by"),
        ({"filters": {"min_duration_s": -1}}, "min_duration_s"),
        ({"filters": {"min_duration_s": 5, "max_duration_s": 4}}, "filters"),
        ({"filters": {"metadata": {"k": [1, 2]}}}, "metadata"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_requests_are_422(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = _search(client, **body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert field in error["message"]


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/search", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


def test_concurrent_searches_all_succeed(client: TestClient) -> None:
    expected = _search(client, top_k=4).json()["results"]
    queries = [QUERY] * 4 + ["a blue square", "green", "yellow light", "white frame"]

    def run(query: str) -> tuple[int, Any]:
        response = client.post(
            "/v1/search", json={"query": query, "collection": COLLECTION, "top_k": 4}
        )
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(run, queries))
    assert [status for status, _ in outcomes] == [200] * 8
    for (_, body), query in zip(outcomes, queries, strict=True):
        assert body["query"] == query and len(body["results"]) == 4
        if query == QUERY:
            assert body["results"] == expected  # same answer under concurrency


def test_moments_in_one_video(client: TestClient, world: World) -> None:
    video_id = world.videos["v3.mp4"]
    response = client.get(f"/v1/videos/{video_id}/moments", params={"query": QUERY, "top_k": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["video_id"] == video_id and body["query"] == QUERY
    assert 1 <= len(body["moments"]) <= 2
    for moment in body["moments"]:
        assert moment["video_id"] == video_id
        assert 0 <= moment["start_s"] < moment["end_s"] <= 12.0 + 1e-6


def test_moments_errors(client: TestClient, world: World) -> None:
    video_id = world.videos["v0.mp4"]
    missing = client.get("/v1/videos/99999/moments", params={"query": QUERY})
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    no_query = client.get(f"/v1/videos/{video_id}/moments")
    assert no_query.status_code == 422 and "query" in error_of(no_query)["message"]
    too_many = client.get(f"/v1/videos/{video_id}/moments", params={"query": QUERY, "top_k": 101})
    assert too_many.status_code == 422 and "top_k" in error_of(too_many)["message"]
