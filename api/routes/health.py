"""GET /healthz (is the server up with its catalog?) and GET /metrics (Prometheus)."""

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from api.deps import MetricsDep, StateDep
from api.metrics import CONTENT_TYPE
from api.routes import error_responses
from api.schemas import HealthOut

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return version("vtr")
    except PackageNotFoundError:
        return "unknown"


@router.get("/healthz", response_model=HealthOut, responses=error_responses(auth=False))
def healthz(state: StateDep) -> HealthOut:
    """200 when the server can reach its catalog, 503 (in the error shape) otherwise."""
    schema = state.catalog().schema_revision()
    return HealthOut(status="ok", version=_version(), catalog_schema=schema)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(registry: MetricsDep) -> PlainTextResponse:
    """Request counts and latencies, and per-stage search latencies (text format 0.0.4)."""
    return PlainTextResponse(registry.render(), media_type=CONTENT_TYPE)
