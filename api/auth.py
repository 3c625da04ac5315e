"""API-key authentication for the /v1 routes.

When `api.api_keys` is non-empty, every /v1 request must carry one of the keys in the
`X-API-Key` header (401 otherwise); with no keys configured the API is open. Keys are
compared in constant time. Browsers cannot put headers on `<video>` and `<img>`
requests, so the two media routes (stream, thumbnail) also accept the key in the
`vtr_api_key` cookie that the web page sets; they only read, so a cross-site request
gains nothing from it (and the cookie is SameSite=Strict). /healthz, /metrics and the
web page stay open.
"""

import hmac
from typing import Annotated

from fastapi import Cookie, Security
from fastapi.security import APIKeyHeader

from api.deps import StateDep
from engine.errors import VtrError

API_KEY_HEADER = "X-API-Key"
MEDIA_COOKIE = "vtr_api_key"

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="One of the keys in api.api_keys (required when any is configured).",
)


class AuthError(VtrError):
    """A request without a valid API key while keys are configured."""

    code = "unauthorized"


def key_matches(candidate: str | None, keys: list[str]) -> bool:
    """Whether `candidate` is one of `keys`, comparing every key in constant time."""
    if not candidate:
        return False
    given = candidate.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def _check(state: StateDep, candidate: str | None) -> None:
    keys = [k.get_secret_value() for k in state.settings.api.api_keys]
    if keys and not key_matches(candidate, keys):
        reason = "missing" if not candidate else "invalid"
        raise AuthError(f"{reason} API key: send one of the configured keys in {API_KEY_HEADER}")


def require_api_key(
    state: StateDep, key: Annotated[str | None, Security(api_key_header)] = None
) -> None:
    """Dependency of every /v1 route when keys are configured."""
    _check(state, key)


def require_api_key_or_cookie(
    state: StateDep,
    key: Annotated[str | None, Security(api_key_header)] = None,
    cookie: Annotated[str | None, Cookie(alias=MEDIA_COOKIE, include_in_schema=False)] = None,
) -> None:
    """Dependency of the media routes: the header, or the web page's cookie."""
    _check(state, key or cookie)
