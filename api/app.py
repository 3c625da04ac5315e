"""The HTTP API: `create_app(settings)` builds a FastAPI app; nothing is built at import.

    from engine.config import load_settings
    from api.app import create_app
    app = create_app(load_settings(path))     # then: uvicorn, or `vtr serve`

The lifespan opens one Catalog and one SearchService (models and indexes load once per
process) and stops them at shut-down. Routes are one module per resource under
api/routes/, assembled here: /v1/... (API-key protected when keys are configured),
/healthz, /metrics, the web page at / and its files under /static. Errors are mapped to
statuses in ONE place (`STATUS_BY_CODE`); every error body is
`{"error": {"code", "message"}}`, validation errors (422) included; an unexpected
exception answers 500 with a generic message, its traceback going to the log only.
OpenAPI: /docs and /openapi.json.
"""

import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import AuthError, require_api_key, require_api_key_or_cookie
from api.deps import AppState, EncoderFactory
from api.media import RangeNotSatisfiableError
from api.metrics import Metrics, MetricsMiddleware
from api.routes import collections, health, jobs, search, videos, web
from api.routes.web import STATIC_DIR
from engine.config import Settings, default_config_path, load_settings
from engine.encoders import create_encoder
from engine.errors import VtrError
from engine.logs import configure_logging

log = logging.getLogger(__name__)

API_PREFIX = "/v1"

# VtrError code -> HTTP status. A subclass whose code is not listed takes its parent's.
STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "bad_config": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "index_mismatch": 409,
    "range_not_satisfiable": 416,
    "decode_error": 422,
    "catalog_error": 503,
    "catalog_not_initialised": 503,
    "model_error": 503,
    "index_unreadable": 503,
    "index_error": 500,
    "error": 500,
}

# HTTP status -> error code, for errors raised by the framework itself (404, 405, 413...).
_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "validation_error",
}


def status_of(error: VtrError) -> int:
    """The HTTP status for a VtrError: its own code's, else its nearest parent's."""
    for cls in type(error).__mro__:
        code = cls.__dict__.get("code")
        if isinstance(code, str) and code in STATUS_BY_CODE:
            return STATUS_BY_CODE[code]
    return 500


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _vtr_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, VtrError):
        raise exc
    status = status_of(exc)
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    headers = None
    if isinstance(exc, RangeNotSatisfiableError):
        headers = {"Content-Range": f"bytes */{exc.size}"}
    elif isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": "ApiKey"}
    return error_response(status, exc.code, str(exc), headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise exc
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{location}: {error.get('msg', 'invalid')}")
    message = "; ".join(problems) or "invalid request"
    return error_response(422, "validation_error", message[:2000])


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
    try:
        default = HTTPStatus(exc.status_code).phrase
    except ValueError:
        default = "error"
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else default
    return error_response(exc.status_code, code, message, dict(exc.headers or {}) or None)


class CatchAllMiddleware:
    """Any exception no handler took: logged with its traceback, answered as a plain 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = error_response(500, "internal_error", "internal server error")
            await response(scope, receive, send)


_UPLOAD_ROUTE = re.compile(rf"^{API_PREFIX}/collections/[^/]+/videos/?$")


class DeclaredSizeMiddleware:
    """413 at once for a body whose declared Content-Length is over the route's limit.

    FastAPI's per-router limit (`max_body_size`, set on the /v1 routers) counts bytes
    as they arrive, which also covers bodies sent without a length (its 413 goes through
    the error handlers); this answers before reading any.
    """

    def __init__(self, app: ASGIApp, request_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.request_bytes = request_bytes
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            upload = scope["method"] == "POST" and _UPLOAD_ROUTE.match(scope["path"])
            limit = self.upload_bytes if upload else self.request_bytes
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                message = f"the request body ({declared} bytes) is over the limit ({limit} bytes)"
                response = error_response(413, "payload_too_large", message)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _request_bytes(settings: Settings) -> int:
    return settings.api.max_request_kb << 10


def _upload_bytes(settings: Settings) -> int:
    return settings.api.max_upload_mb << 20


def _v1_router(settings: Settings) -> APIRouter:
    """Every /v1 route, each resource's router once, with auth when keys are set."""
    keys = bool(settings.api.api_keys)
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_api_key)] if keys else [])
    api.include_router(search.router)
    api.include_router(collections.router)
    api.include_router(collections.ingest_router, max_body_size=_upload_bytes(settings))
    api.include_router(videos.router)
    api.include_router(jobs.router)
    media = APIRouter(
        prefix=API_PREFIX, dependencies=[Depends(require_api_key_or_cookie)] if keys else []
    )
    media.include_router(videos.media_router)
    root = APIRouter()
    root.include_router(api, max_body_size=_request_bytes(settings))
    root.include_router(media, max_body_size=_request_bytes(settings))
    return root


def create_app(settings: Settings, *, encoder_factory: EncoderFactory = create_encoder) -> FastAPI:
    """A new app for `settings`; its lifespan loads the catalog and models."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState(settings, metrics, encoder_factory=encoder_factory)
        await run_in_threadpool(state.start)
        app.state.vtr = state
        try:
            yield
        finally:
            await run_in_threadpool(state.close)

    app = FastAPI(
        title="vtr",
        summary="Video-text retrieval with moment localization.",
        version="1",
        lifespan=lifespan,
    )
    app.include_router(_v1_router(settings))
    app.include_router(health.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(VtrError, _vtr_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Accept-Ranges", "Content-Length", "Location"],
        )
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(
        DeclaredSizeMiddleware,
        request_bytes=_request_bytes(settings),
        upload_bytes=_upload_bytes(settings),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


CONFIG_ENV = "VTR_SERVE_CONFIG"  # config file for `app_from_environment` (worker processes)


def app_from_environment() -> FastAPI:
    """An app for the config file named in $VTR_SERVE_CONFIG (else ./config.toml or the
    built-in defaults): the factory uvicorn's worker processes call (`vtr serve`)."""
    named = os.environ.get(CONFIG_ENV)
    settings = load_settings(Path(named) if named else default_config_path())
    configure_logging(settings.log.level)
    return create_app(settings)
