"""``ingest.load_partition`` alone, without Dagster: the real export client and server, a real lake."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from growingio_pipeline.event_types import BEIJING, EVENT_TYPES
from growingio_pipeline.export_api import ExportStatus, ExportStillRunning
from growingio_pipeline.ingest import ConnectionFactory, PartitionAttempt, PartitionLoad, load_partition
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.parsing import BLOCK_SIZE_BYTES
from growingio_pipeline.warehouse import LoadStatus, column_schema
from growingio_pipeline_tests.conftest import PROJECT_ROOT, client_for
from growingio_pipeline_tests.csv_fixtures import dialect_text
from growingio_pipeline_tests.pipeline_harness import (
    FINISHED_PARTITION,
    expected_rows,
    ledger,
    loaded_rows,
    table_snapshot,
)

PAGE_AND_ACTION = [EVENT_TYPES["page"], EVENT_TYPES["action"]]


def connection_factory(lake_dir: Path) -> ConnectionFactory:
    """Lake connections made directly (no resource): load_partition does not care how they are made."""

    @contextmanager
    def connect() -> Iterator[duckdb.DuckDBPyConnection]:
        with closing(connect_lake(LakeSettings.in_folder(lake_dir))) as conn:
            yield conn

    return connect


def exception_chain(error: BaseException | None) -> list[type[BaseException]]:
    """The types of ``error`` and of the exceptions it was raised from or while handling."""
    types = []
    while error is not None:
        types.append(type(error))
        error = error.__cause__ or error.__context__
    return types


def load(
    server: LocalExportServer, path: Path, partition_key: str = FINISHED_PARTITION, **settings: object
) -> PartitionLoad:
    start = datetime.strptime(partition_key, "%Y%m%d%H%M").replace(tzinfo=BEIJING).astimezone(timezone.utc)
    with client_for(server, **settings) as client:
        return load_partition(
            client,
            connection_factory(path),
            path.parent / "staging",
            PartitionAttempt("hour", partition_key),
            PAGE_AND_ACTION,
            (start, start + timedelta(hours=1)),
        )


def test_a_finished_partition_loads_each_type_and_returns_what_it_wrote(local_server, tmp_path: Path) -> None:
    path = tmp_path / "lake"

    result = load(local_server, path)

    assert result.failure is None and result.unloaded_status is None
    assert result.export is not None and result.export.status is ExportStatus.FINISHED
    assert [type_load.staged.event_type.name for type_load in result.loads] == ["page", "action"]
    for type_load in result.loads:
        event_type = type_load.staged.event_type
        expected = expected_rows(local_server, event_type, FINISHED_PARTITION)
        assert loaded_rows(path, event_type, FINISHED_PARTITION) == expected
        assert type_load.verification.rows_in_table == type_load.summary.rows_loaded == len(expected)
        assert type_load.table_rows == len(expected), "the whole table holds this one partition"
        assert type_load.verification.rows_outside_window == 0
        assert len(type_load.preview) == 5 and len(type_load.preview[0]) == len(event_type.columns)
    assert sorted((row["event_type"], row["status"]) for row in ledger(path)) == [
        ("action", "LOADED"),
        ("page", "LOADED"),
    ]
    assert not (tmp_path / "staging").exists(), "the run's folder is removed, and the emptied staging root"


def test_an_export_past_retention_loads_nothing_and_records_not_exists(make_local_server, tmp_path: Path) -> None:
    server = make_local_server()
    path = tmp_path / "lake"
    load(server, path)
    before = table_snapshot(path)
    server.clock.advance(timedelta(days=16))

    result = load(server, path)

    assert result.failure is None and result.loads == ()
    assert result.unloaded_status is LoadStatus.NOT_EXISTS
    assert table_snapshot(path) == before
    assert sorted(row["status"] for row in ledger(path)) == ["LOADED", "LOADED", "NOT_EXISTS", "NOT_EXISTS"]


def test_a_running_export_past_the_deadline_is_returned_as_the_failure(make_local_server, tmp_path: Path) -> None:
    server = make_local_server(running_polls=1000)
    path = tmp_path / "lake"

    result = load(server, path, running_deadline_s=0.05)

    assert isinstance(result.failure, ExportStillRunning)
    assert result.export is None and result.loads == ()
    assert [row["status"] for row in ledger(path)] == ["RUNNING", "RUNNING"]


def test_a_part_that_never_downloads_intact_leaves_the_tables_and_records_the_failure(
    make_local_server, tmp_path: Path
) -> None:
    server = make_local_server()
    path = tmp_path / "lake"
    load(server, path)
    before = table_snapshot(path)
    hour = FINISHED_PARTITION[:10]
    server.override_parts("action", hour, [server.parts("action", hour)[0], b"\x1f\x8b not really gzip"])

    result = load(server, path, max_link_refreshes=0)

    assert result.loads == () and result.export is not None
    assert "could not download 1 of 2 action part(s) intact" in str(result.failure)
    assert table_snapshot(path) == before
    failed = [row for row in ledger(path) if row["status"] == "FAILED"]
    assert sorted(row["event_type"] for row in failed) == ["action", "page"]


def test_a_write_that_fails_keeps_the_types_written_before_it_and_records_the_failing_one(
    local_server, tmp_path: Path
) -> None:
    path = tmp_path / "lake"
    action = EVENT_TYPES["action"]
    # A type no exported visitor id converts to: the lake itself refuses the action's data file (a DuckLake table
    # takes no CHECK constraint).
    types = {name: "BIGINT" if name == "visit_user_id" else sql_type for name, sql_type in column_schema(action)}
    columns = ", ".join(f'"{name}" {sql_type}' for name, sql_type in types.items())
    with closing(connect_lake(LakeSettings.in_folder(path))) as conn:
        conn.execute("CREATE SCHEMA growingio")
        conn.execute(f"CREATE TABLE {action.table_name} ({columns})")

    result = load(local_server, path)

    assert duckdb.InvalidInputException in exception_chain(result.failure)
    assert 'Failed to map column "visit_user_id"' in str(result.failure)
    assert [type_load.staged.event_type.name for type_load in result.loads] == ["page"]
    assert loaded_rows(path, EVENT_TYPES["page"], FINISHED_PARTITION) == expected_rows(
        local_server, EVENT_TYPES["page"], FINISHED_PARTITION
    )
    assert loaded_rows(path, action, FINISHED_PARTITION) == []
    statuses = sorted((row["event_type"], row["status"]) for row in ledger(path))
    assert statuses == [("action", "FAILED"), ("page", "LOADED")]


def test_a_row_larger_than_the_streamed_block_loads_from_the_downloaded_file(local_server, tmp_path: Path) -> None:
    """Parts are parsed as they download, in blocks of ``BLOCK_SIZE_BYTES``; a larger row is parsed again from the
    file, which stays on disk for this."""
    path = tmp_path / "lake"
    huge_title = 'a\\"b,c\n' * (2 * BLOCK_SIZE_BYTES // 7)
    send_ms = "1795892400000"  # 03:00 Beijing on 2026-11-29, inside FINISHED_PARTITION
    part = gzip.compress(dialect_text(["sendTime", "title"], [[send_ms, huge_title], [send_ms, "small"]]).encode(), 1)
    local_server.override_parts("page", FINISHED_PARTITION[:10], [part])

    result = load(local_server, path)

    assert result.failure is None
    with closing(connect_lake(LakeSettings.in_folder(path), read_only=True)) as conn:
        titles = conn.execute("SELECT title FROM growingio.page ORDER BY length(title)").fetchall()
    assert titles == [("small",), (huge_title,)]


def test_ingest_imports_no_dagster() -> None:
    code = "import sys, growingio_pipeline.ingest; print(sorted(m for m in sys.modules if m.startswith('dagster')))"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[]"
