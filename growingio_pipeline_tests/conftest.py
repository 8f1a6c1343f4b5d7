"""Shared fixtures: the local GrowingIO export server on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.local_server import BEIJING, FrozenClock, LocalExportServer
from growingio_pipeline.warehouse import ensure_schema

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
    """A connection to a new lake in ``tmp_path / "lake"`` (SQLite catalog), with the project's schema."""
    connection = connect_lake(LakeSettings.in_folder(tmp_path / "lake"))
    ensure_schema(connection)
    yield connection
    connection.close()
