"""HTTP routes, one module per resource; api/app.py assembles them under /v1.

Helpers shared by the route modules: the documented error responses and a way to raise
a 422 in the same shape as FastAPI's own validation errors.
"""

from typing import Any

from fastapi.exceptions import RequestValidationError

from api.schemas import ErrorBody

_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or invalid API key",
    403: "Path outside the allowed directories",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Request body too large",
    416: "Range not satisfiable",
    422: "Invalid request",
    503: "Catalog or models unavailable",
}


def error_responses(*statuses: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer (with 401, 422, 503)."""
    wanted = sorted({*statuses, 422, 503} | ({401} if auth else set()))
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in wanted}


def invalid(
    location: tuple[str | int, ...], message: str, value: Any = None
) -> RequestValidationError:
    """A 422 error for a value that passes the schema but not the configured limits."""
    return RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": value}]
    )
