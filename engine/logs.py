"""Logging set-up for entry points (CLI, server). Library modules only call getLogger."""

import logging

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Send vtr's log records to stderr at `level` (DEBUG, INFO, WARNING, ERROR)."""
    logging.basicConfig(level=level.upper(), format=_FORMAT, force=True)
    for noisy in ("alembic", "httpx", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
