"""Shared fixtures: catalogs on SQLite and (when configured) PostgreSQL, clean env."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from index.catalog import Catalog

POSTGRES_URL = os.environ.get("VTR_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def _clean_vtr_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's VTR_* overrides (except the test database URL)."""
    for key in list(os.environ):
        if key.startswith("VTR_") and key != "VTR_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)


def _postgres_schema_url(schema: str) -> str:
    assert POSTGRES_URL is not None
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL: a SQLite file, or a fresh schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("VTR_TEST_POSTGRES_URL not set")
    schema = f"vtr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """An initialised, empty catalog on each database backend."""
    catalog = Catalog.initialise(catalog_url)
    yield catalog
    catalog.close()
