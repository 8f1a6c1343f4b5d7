"""The lake itself: settings, offline extensions, secrets kept out of errors, reading it (Python, growingio-sql,
time travel), and the warning for the old single-file setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from growingio_pipeline.duckdb_extensions import DUCKDB_VERSION, EXTENSIONS, extension_directory
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import (
    DEFAULT_CATALOG,
    DEFAULT_DATA_PATH,
    LakeSettings,
    LakeUnavailable,
    connect_lake,
    legacy_path_warning,
    retry_conflicts,
)
from growingio_pipeline.query import connect
from growingio_pipeline_tests.pipeline_harness import (
    FINISHED_PARTITION,
    expected_rows,
    lake_environment,
    materialize_partition,
)

PAGE = EVENT_TYPES["page"]
PAGE_COUNT = "SELECT count(*) FROM growingio.page"


def test_settings_come_from_the_documented_variables_and_hide_secrets() -> None:
    assert LakeSettings.from_env({}) == LakeSettings(catalog=DEFAULT_CATALOG, data_path=DEFAULT_DATA_PATH)
    settings = LakeSettings.from_env(
        {
            "GROWINGIO_LAKE_CATALOG": "postgres:host=127.0.0.1 port=5433 dbname=lake user=growingio",
            "GROWINGIO_LAKE_DATA_PATH": "s3://bucket/prefix/",
            "GROWINGIO_LAKE_CATALOG_PASSWORD": "catalog-pass-123",
            "GROWINGIO_S3_ENDPOINT": "127.0.0.1:8333",
            "GROWINGIO_S3_ACCESS_KEY_ID": "key-id",
            "GROWINGIO_S3_SECRET_ACCESS_KEY": "s3-secret-456",
            "GROWINGIO_S3_USE_SSL": "false",
        }
    )
    assert settings.is_postgres and settings.is_s3
    assert (settings.s3_region, settings.s3_use_ssl, settings.s3_url_style) == ("us-east-1", False, "path")
    assert "catalog-pass-123" not in repr(settings) and "s3-secret-456" not in repr(settings)
    with pytest.raises(ValueError, match="must not hold the password"):
        LakeSettings(catalog="postgres:host=x password=oops")
    with pytest.raises(ValueError, match="GROWINGIO_S3_USE_SSL"):
        LakeSettings.from_env({"GROWINGIO_S3_USE_SSL": "maybe"})


def test_extensions_load_from_the_packaged_signed_builds(tmp_path: Path) -> None:
    root = extension_directory(tmp_path / "extensions")
    files = sorted(path.name for path in (root / f"v{DUCKDB_VERSION}").glob("*/*.duckdb_extension"))
    assert files == sorted(f"{name}.duckdb_extension" for name in EXTENSIONS)

    with connect_lake(LakeSettings.in_folder(tmp_path / "lake")) as conn:
        loaded = dict(
            conn.execute("SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded").fetchall()
        )
        [(unsigned,)] = conn.execute("SELECT current_setting('allow_unsigned_extensions')").fetchall()
    assert loaded["ducklake"].endswith(f"v{DUCKDB_VERSION}/linux_amd64/ducklake.duckdb_extension")
    assert loaded["sqlite_scanner"].endswith("sqlite_scanner.duckdb_extension")
    assert unsigned is False


def test_an_unreachable_postgres_catalog_fails_clearly_without_the_password(tmp_path: Path) -> None:
    settings = LakeSettings(
        catalog="postgres:host=127.0.0.1 port=1 dbname=lake user=growingio connect_timeout=2",
        data_path=str(tmp_path / "files"),
        catalog_password="catalog-pass-123",
    )
    with pytest.raises(LakeUnavailable) as raised:
        connect_lake(settings)
    message = str(raised.value)
    assert "could not open the lake (catalog postgres:host=127.0.0.1 port=1" in message
    assert "catalog-pass-123" not in message and raised.value.__cause__ is None


def test_reading_a_lake_that_does_not_exist_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no lake at .*catalog\.sqlite yet"):
        connect(LakeSettings.in_folder(tmp_path / "nothing"))


def test_a_query_reads_the_lake_read_only(local_server, tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    materialize_partition(local_server, lake_dir, selection=["page"])
    with connect(LakeSettings.in_folder(lake_dir)) as conn:
        [(rows,)] = conn.execute(PAGE_COUNT).fetchall()
        with pytest.raises(Exception, match="read-only"):
            conn.execute("DELETE FROM growingio.page")
    assert rows == len(expected_rows(local_server, PAGE, FINISHED_PARTITION)) > 0


def growingio_sql(lake_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The installed ``growingio-sql`` command against the lake in ``lake_dir``."""
    command = Path(sys.executable).with_name("growingio-sql")
    env = {**os.environ, **lake_environment(lake_dir)}
    return subprocess.run([str(command), *args], input=stdin, env=env, capture_output=True, text=True, timeout=120)


def test_growingio_sql_prints_a_table_csv_or_json_and_reads_sql_from_stdin(local_server, tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    materialize_partition(local_server, lake_dir, selection=["page"])
    rows = len(expected_rows(local_server, PAGE, FINISHED_PARTITION))
    query = "SELECT _partition_key AS hour, count(*) AS page_views FROM growingio.page GROUP BY ALL"

    table = growingio_sql(lake_dir, query)
    as_csv = growingio_sql(lake_dir, "--format", "csv", query)
    as_json = growingio_sql(lake_dir, "--format", "json", stdin=query)

    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["hour", "|", "page_views"]
    assert table.stdout.splitlines()[2].split() == [FINISHED_PARTITION, "|", str(rows)]
    assert as_csv.stdout == f"hour,page_views\n{FINISHED_PARTITION},{rows}\n"
    assert json.loads(as_json.stdout) == [{"hour": FINISHED_PARTITION, "page_views": rows}]
    refused = growingio_sql(lake_dir, "DELETE FROM growingio.page")
    assert refused.returncode == 1 and "read-only" in refused.stderr
    assert growingio_sql(lake_dir, "--format", "csv", PAGE_COUNT).stdout == f"count_star()\n{rows}\n"


def test_time_travel_reads_a_table_as_it_was_before_a_reload(make_local_server, tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    first = make_local_server(rows_per_hour=200)
    materialize_partition(first, lake_dir, selection=["page"])
    with connect(LakeSettings.in_folder(lake_dir)) as conn:
        [(before_reload,)] = conn.execute("SELECT id FROM lake.current_snapshot()").fetchall()
    reloaded = make_local_server(rows_per_hour=50, seed=2)
    materialize_partition(reloaded, lake_dir, selection=["page"])

    with connect(LakeSettings.in_folder(lake_dir)) as conn:
        [(now,)] = conn.execute(PAGE_COUNT).fetchall()
        [(then,)] = conn.execute(f"SELECT count(*) FROM growingio.page AT (VERSION => {before_reload})").fetchall()
    assert now == len(expected_rows(reloaded, PAGE, FINISHED_PARTITION))
    assert then == len(expected_rows(first, PAGE, FINISHED_PARTITION))
    assert now != then


def test_the_old_duckdb_path_variable_logs_a_warning_and_the_run_succeeds(
    local_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROWINGIO_DUCKDB_PATH", "data/growingio_events.duckdb")
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_partition(local_server, tmp_path / "lake", selection=["page"], instance=instance)
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert result.success
    expected = legacy_path_warning()
    assert expected is not None and expected in messages
    for name in ("GROWINGIO_LAKE_CATALOG", "GROWINGIO_LAKE_DATA_PATH", "growingio-migrate-duckdb"):
        assert name in expected


def test_commit_conflicts_are_retried_a_bounded_number_of_times_and_other_errors_not_at_all() -> None:
    calls: list[str] = []

    def conflicting() -> None:
        calls.append("conflict")
        raise duckdb.TransactionException("Transaction conflict - attempting to delete from table page")

    def broken() -> None:
        calls.append("broken")
        raise duckdb.InvalidInputException("Map keys must be unique.")

    with pytest.raises(duckdb.TransactionException, match="Transaction conflict"):
        retry_conflicts(conflicting, attempts=3)
    with pytest.raises(duckdb.InvalidInputException):
        retry_conflicts(broken, attempts=3)
    assert calls == ["conflict"] * 3 + ["broken"]
    assert retry_conflicts(lambda: "committed") == "committed"
