"""Shared fixtures: the local GrowingIO export server on a free loopback port; PostgreSQL and S3 servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from growingio_pipeline.export_api import ClientSettings, ExportClient
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.local_server import BEIJING, FrozenClock, LocalExportServer
from growingio_pipeline.warehouse import ensure_schema
from growingio_pipeline_tests.services import PostgresServer, SeaweedS3, running_postgres, running_seaweedfs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The repository: the working directory of the commands and scripts the tests run."""

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


LONGEST_FILES = (
    "test_key_pair_concurrency.py",
    "test_catchup_outage.py",
    "test_analytics_incremental.py",
    "test_ui_browser.py",
    "test_benchmarks.py",
    "test_two_hosts.py",
    "test_demo.py",
    "test_cli.py",
    "test_analytics_lake.py",
    "test_analytics_reissue.py",
)
"""The test files that take longest (minutes each on 2 cores, ``--durations``), longest first."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, so that the two workers share them instead of one ending the run alone.

    Workers take whole files in collection order (``scripts/test.sh``: ``--dist loadfile
    --no-loadscope-reorder``); the sort is stable, so each file's own order is kept.
    """
    rank = {name: position for position, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))


def start_server(**overrides: Any) -> LocalExportServer:
    """A started test server with the suite-wide settings (same seed, so the same data); the caller stops it.

    It gets its own FrozenClock at LOCAL_SERVER_NOW (``server.clock``) unless ``clock`` is overridden.
    """
    return LocalExportServer(**{**LOCAL_SERVER_SETTINGS, "clock": FrozenClock(LOCAL_SERVER_NOW), **overrides}).start()


@pytest.fixture
def make_local_server() -> Iterator[Callable[..., LocalExportServer]]:
    """A factory: ``make_local_server(**overrides)`` starts a server (see ``start_server``); all are stopped
    afterwards."""
    started: list[LocalExportServer] = []

    def make(**overrides: Any) -> LocalExportServer:
        server = start_server(**overrides)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def analytics_server() -> Iterator[LocalExportServer]:
    """One server per test module (a module may export its hours again), 1,000 page rows an hour: every kind of
    ad match the analytics models make occurs in eight hours."""
    server = start_server(rows_per_hour=1000)
    yield server
    server.stop()


@pytest.fixture
def local_server(make_local_server: Callable[..., LocalExportServer]) -> LocalExportServer:
    """A started server: token "test-token", 200 page rows/hour, 16 KiB parts, clock at 2026-11-29 12:00 Beijing."""
    return make_local_server()


@pytest.fixture
def server(make_local_server: Callable[..., LocalExportServer]) -> LocalExportServer:
    """A server without a practical rate limit, for tests of the server that make many calls."""
    return make_local_server(calls_per_second=1000.0)


@pytest.fixture
def fast_server(make_local_server: Callable[..., LocalExportServer]) -> LocalExportServer:
    """A server that allows many calls per second, with several parts per type (600 page rows, 8 KiB parts)."""
    return make_local_server(calls_per_second=100.0, rows_per_hour=600, part_size_bytes=8 * 1024)


def server_settings(server: LocalExportServer) -> dict[str, Any]:
    """The client settings that point at ``server``: its URL, token and project."""
    return {"base_url": server.base_url, "token": server.token, "project_id": server.project_id}


def client_for(server: LocalExportServer, **overrides: Any) -> ExportClient:
    """A client of ``server`` with fast retries and polling, so tests stay quick."""
    values: dict[str, Any] = {
        **server_settings(server),
        "calls_per_second": 50.0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "running_poll_interval_s": 0.01,
        "running_poll_max_interval_s": 0.02,
        "running_deadline_s": 5.0,
        **overrides,
    }
    return ExportClient(ClientSettings(**values))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a new lake in ``tmp_path / "lake"`` (SQLite catalog), with the project's schema."""
    connection = connect_lake(LakeSettings.in_folder(tmp_path / "lake"))
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
