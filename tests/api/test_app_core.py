"""The app itself: API keys, the one error mapping, health, metrics, OpenAPI, web files.

Auth on and off; errors of every kind in the one `{"error": {"code", "message"}}` shape
with the right status (VtrError codes, validation, framework 404/405, an unexpected
exception as a generic 500 whose details stay in the log); a server started before
`vtr init` answering 503 until the catalog exists; nothing built at import.
"""

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import CONFIG_ENV, STATUS_BY_CODE, app_from_environment, create_app, status_of
from api.auth import API_KEY_HEADER, MEDIA_COOKIE, AuthError
from api.cli.app import main
from api.media import ForbiddenError, RangeNotSatisfiableError
from engine import errors
from engine.config import load_settings
from engine.errors import VtrError
from index.catalog import Catalog
from tests.api.app_env import API_KEY, COLLECTION, World, error_of, serving, shared_world, with_api


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return shared_world(tmp_path_factory)


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with serving(world.settings) as client:
        yield client


@pytest.fixture(scope="module")
def locked(world: World) -> Iterator[TestClient]:
    with serving(with_api(world.settings, api_keys=[API_KEY, "a-second-key-0123456789"])) as c:
        yield c


# API keys ---------------------------------------------------------------------------


def test_without_keys_the_api_is_open(client: TestClient) -> None:
    assert client.get("/v1/collections").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/collections"),
        ("POST", "/v1/search"),
        ("GET", "/v1/jobs/1"),
        ("GET", "/v1/videos/1"),
        ("DELETE", "/v1/videos/1"),
        ("DELETE", f"/v1/collections/{COLLECTION}"),
        ("POST", f"/v1/collections/{COLLECTION}/videos"),
        ("GET", "/v1/videos/1/stream"),
        ("GET", "/v1/videos/1/thumbnail"),
        ("GET", "/v1/videos/1/moments?query=x"),
    ],
)
def test_every_v1_route_needs_a_key(locked: TestClient, method: str, path: str) -> None:
    for headers in ({}, {API_KEY_HEADER: "wrong-key-0123456789"}, {API_KEY_HEADER: ""}):
        response = locked.request(method, path, headers=headers, json={"query": "x"})
        assert response.status_code == 401, (path, headers)
        assert error_of(response)["code"] == "unauthorized"


def test_a_valid_key_opens_the_api(locked: TestClient, world: World) -> None:
    for key in (API_KEY, "a-second-key-0123456789"):
        response = locked.get("/v1/collections", headers={API_KEY_HEADER: key})
        assert response.status_code == 200
    body = {"query": "red", "collection": COLLECTION}
    found = locked.post("/v1/search", json=body, headers={API_KEY_HEADER: API_KEY})
    assert found.status_code == 200 and found.json()["results"]


def test_open_routes_stay_open(locked: TestClient) -> None:
    assert locked.get("/healthz").status_code == 200
    assert locked.get("/metrics").status_code == 200
    assert locked.get("/").status_code == 200
    assert locked.get("/static/app.js").status_code == 200
    assert locked.get("/openapi.json").status_code == 200


def test_media_routes_accept_the_page_cookie(locked: TestClient, world: World) -> None:
    video_id = world.videos["v0.mp4"]
    cookie = {"Cookie": f"{MEDIA_COOKIE}={API_KEY}"}
    stream = locked.get(f"/v1/videos/{video_id}/stream", headers={"Range": "bytes=0-9", **cookie})
    assert stream.status_code == 206
    thumb = locked.get(f"/v1/videos/{video_id}/thumbnail", headers=cookie)
    assert thumb.status_code == 200
    wrong = locked.get(
        f"/v1/videos/{video_id}/stream",
        headers={"Cookie": f"{MEDIA_COOKIE}=wrong-key-0123456789"},
    )
    assert wrong.status_code == 401
    # the cookie opens only the media routes
    assert locked.get(f"/v1/videos/{video_id}", headers=cookie).status_code == 401
    assert locked.get("/v1/collections", headers=cookie).status_code == 401


def test_weak_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[api]\napi_keys = ["short"]\n')
    with pytest.raises(errors.ConfigError, match="16 characters"):
        load_settings(config)


# Errors -----------------------------------------------------------------------------


def _all_vtr_errors() -> list[type[VtrError]]:
    found: list[type[VtrError]] = []
    pending: list[type[VtrError]] = [VtrError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_class_maps_to_a_status() -> None:
    expected = {
        errors.InputError: 400,
        errors.ConfigError: 400,
        AuthError: 401,
        ForbiddenError: 403,
        errors.NotFoundError: 404,
        errors.ConflictError: 409,
        errors.IndexMismatchError: 409,
        errors.DecodeError: 422,
        errors.CatalogError: 503,
        errors.CatalogNotInitialisedError: 503,
        errors.ModelError: 503,
        errors.IndexUnreadableError: 503,
        errors.VectorIndexError: 500,
        VtrError: 500,
    }
    for cls, status in expected.items():
        assert status_of(cls("x")) == status, cls
    assert status_of(RangeNotSatisfiableError("x", 10)) == 416
    for cls in _all_vtr_errors():  # any other subclass inherits a listed code's status
        assert any(c.__dict__.get("code") in STATUS_BY_CODE for c in cls.__mro__), cls


def test_framework_errors_use_the_same_shape(client: TestClient) -> None:
    unknown = client.get("/v1/nowhere")
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"
    method = client.put("/v1/collections")
    assert method.status_code == 405 and error_of(method)["code"] == "method_not_allowed"
    invalid = client.get("/v1/jobs/not-a-number")
    assert invalid.status_code == 422 and "job_id" in error_of(invalid)["message"]


def test_unexpected_errors_are_a_generic_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = client.app.state.vtr.catalog()  # type: ignore[attr-defined]

    def broken() -> None:
        raise RuntimeError("secret internal detail /srv/db")

    monkeypatch.setattr(catalog, "list_collections", broken)
    with caplog.at_level(logging.ERROR, logger="api.app"):
        response = client.get("/v1/collections")
    assert response.status_code == 500
    error = error_of(response)
    assert error == {"code": "internal_error", "message": "internal server error"}
    assert "secret" not in response.text and "Traceback" not in response.text
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)


def test_catalog_missing_is_503_until_initialised(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[encoder]\nname = "tiny-random"\ndevice = "cpu"\n')
    settings = load_settings(config)
    with serving(settings) as client:
        for path in ("/healthz", "/v1/collections"):
            response = client.get(path)
            assert response.status_code == 503
            error = error_of(response)
            assert error["code"] == "catalog_not_initialised" and "vtr init" in error["message"]
        Catalog.initialise(settings.catalog_url).close()  # `vtr init` while it runs
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/v1/collections").json() == []


def test_create_app_builds_nothing_until_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = create_app(load_settings(None))  # built-in defaults: ./data, the CLIP encoder
    assert not hasattr(app.state, "vtr")  # no catalog, no models: the lifespan builds them
    assert list(tmp_path.iterdir()) == []


# Health, metrics, OpenAPI, CORS, web page ---------------------------------------------


def test_healthz(client: TestClient) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["catalog_schema"]


def test_metrics_count_requests_by_route_and_status(client: TestClient, world: World) -> None:
    client.get(f"/v1/videos/{world.videos['v0.mp4']}")
    client.get(f"/v1/videos/{world.videos['v1.mp4']}")
    client.get("/v1/videos/99999")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert (
        'vtr_http_requests_total{method="GET",route="/v1/videos/{video_id}",status="200"} 2' in text
    )
    assert (
        'vtr_http_requests_total{method="GET",route="/v1/videos/{video_id}",status="404"} 1' in text
    )
    assert "# TYPE vtr_http_request_duration_seconds histogram" in text
    assert (
        'vtr_http_request_duration_seconds_count{method="GET",route="/v1/videos/{video_id}"} 3'
        in text
    )
    assert 'le="+Inf"' in text


def test_openapi_lists_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/v1/search": {"post"},
        "/v1/collections": {"get", "post"},
        "/v1/collections/{name}": {"get", "delete"},
        "/v1/collections/{name}/videos": {"get", "post"},
        "/v1/jobs": {"get"},
        "/v1/jobs/{job_id}": {"get"},
        "/v1/videos/{video_id}": {"get", "delete"},
        "/v1/videos/{video_id}/moments": {"get"},
        "/v1/videos/{video_id}/stream": {"get"},
        "/v1/videos/{video_id}/thumbnail": {"get"},
        "/healthz": {"get"},
        "/metrics": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path
    search = paths["/v1/search"]["post"]
    assert search["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SearchOut"
    )
    assert search["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    ingest = paths["/v1/collections/{name}/videos"]["post"]
    assert set(ingest["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "202" in ingest["responses"]
    assert client.get("/docs").status_code == 200


def test_openapi_declares_the_key_only_when_keys_are_set(
    client: TestClient, locked: TestClient
) -> None:
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})
    schemes = locked.get("/openapi.json").json()["components"]["securitySchemes"]
    assert any(s.get("name") == API_KEY_HEADER for s in schemes.values())


def test_cors_when_configured(world: World) -> None:
    origin = "http://localhost:3000"
    with serving(with_api(world.settings, cors_origins=[origin])) as client:
        preflight = client.options(
            "/v1/search",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "X-API-Key, Content-Type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        other = client.get("/v1/collections", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_web_page_and_its_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for marker in ('id="query"', 'id="collection"', 'id="results"', 'id="player"', "app.js"):
        assert marker in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "/v1/search" in script.text
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/absent.js").status_code == 404


# vtr serve ---------------------------------------------------------------------------


def test_vtr_serve_starts_uvicorn_with_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    monkeypatch.setenv(CONFIG_ENV, "")  # restored after the test
    config = tmp_path / "config.toml"
    config.write_text('[encoder]\nname = "tiny-random"\n[api]\nport = 8123\n')
    assert main(["--config", str(config), "serve"]) == 0
    app, options = calls[0]
    assert isinstance(app, FastAPI)
    assert options["host"] == "127.0.0.1" and options["port"] == 8123
    argv = ["--config", str(config), "serve", "--host", "0.0.0.0", "--port", "9000"]
    assert main([*argv, "--workers", "3"]) == 0
    target, options = calls[1]
    assert target == "api.app:app_from_environment" and options["factory"] is True
    assert options["workers"] == 3 and options["port"] == 9000
    assert os.environ[CONFIG_ENV] == str(config.resolve())
    worker_app = app_from_environment()  # what each worker process builds
    assert isinstance(worker_app, FastAPI)
