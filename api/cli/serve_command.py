"""`vtr serve`: run the HTTP API and the web page with uvicorn.

    vtr serve                          # api.host:api.port from the config (127.0.0.1:8000)
    vtr serve --host 0.0.0.0 --port 9000 --workers 4

Each worker process loads its own catalog connection, models and indexes (api/app.py).
"""

import ipaddress
import logging
import os
from typing import Annotated

import typer
import uvicorn

from api.cli.output import stderr
from api.cli.state import state_of

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (default: api.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="TCP port (default: api.port).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Server processes (default: api.workers).")
    ] = None,
) -> None:
    """Serve the HTTP API (/v1, /docs) and the search page (/) until interrupted."""
    from api.app import CONFIG_ENV, create_app  # the web stack loads only for this command

    state = state_of(ctx)
    settings = state.settings
    host = host or settings.api.host
    port = port or settings.api.port
    workers = workers or settings.api.workers
    if not settings.api.api_keys and not _is_loopback(host):
        log.warning("serving on %s without API keys: anyone who reaches it can use it", host)
    stderr.print(f"vtr serving on http://{host}:{port}/ ({workers} worker(s)); Ctrl-C stops")
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
        return
    if state.config_path is not None:
        os.environ[CONFIG_ENV] = str(state.config_path.resolve())
    uvicorn.run(
        "api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
    )
