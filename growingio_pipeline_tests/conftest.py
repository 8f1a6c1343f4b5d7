"""Shared fixtures: the local GrowingIO export server on a free loopback port; PostgreSQL and S3 servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from growingio_pipeline.local_server import BEIJING, FrozenClock, LocalExportServer
from growingio_pipeline.warehouse import ensure_schema
from growingio_pipeline_tests.services import PostgresServer, SeaweedS3, running_postgres, running_seaweedfs

LOCAL_SERVER_NOW = datetime(2026, 11, 29, 12, 0, tzinfo=BEIJING)
"""Where every test server's FrozenClock starts: 2026-11-29 12:00 Beijing."""

LOCAL_SERVER_SETTINGS: dict[str, Any] = {
    "token": "test-token",
    "project_id": "9b0d1f56d5baff1a",
    "seed": 1,
    "rows_per_hour": 200,
    "part_size_bytes": 16 * 1024,
    "calls_per_second": 2.0,
}


@pytest.fixture
def make_local_server() -> Iterator[Callable[..., LocalExportServer]]:
    """A factory: ``make_local_server(**overrides)`` starts a server; all are stopped afterwards.

    Each server gets its own FrozenClock at LOCAL_SERVER_NOW (``server.clock``) unless
    ``clock`` is overridden.
    """
    started: list[LocalExportServer] = []

    def make(**overrides: Any) -> LocalExportServer:
        settings = {**LOCAL_SERVER_SETTINGS, "clock": FrozenClock(LOCAL_SERVER_NOW), **overrides}
        server = LocalExportServer(**settings).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def local_server(make_local_server: Callable[..., LocalExportServer]) -> LocalExportServer:
    """A started server: token "test-token", 200 page rows/hour, 16 KiB parts, clock at 2026-11-29 12:00 Beijing."""
    return make_local_server()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB file in ``tmp_path`` with the project's schema."""
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_schema(connection)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on a free loopback port for the whole session; each test creates its own databases."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def seaweed_s3() -> Iterator[SeaweedS3]:
    """A real SeaweedFS S3 gateway on a free loopback port for the whole session; each test creates its buckets."""
    with running_seaweedfs() as s3:
        yield s3
