"""Secrets, SQL identifiers and URL inputs, end to end.

- The API token and the signed links' query strings appear nowhere a run leaves text: Python logs (at
  DEBUG), Dagster's stored event log and its files, materialization and check metadata, exception text,
  the load ledger, the rejects and the DuckDB file; also when the vendor's own errorMsg quotes them.
- Every table and column in DuckDB comes from the event-type registry: hostile header names and
  ``downloadLinks`` keys create nothing and drop nothing.
- The project id, base URL and export date are validated before any request: nothing reaches the server.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import duckdb
import httpx
import pytest
from dagster._serdes import serialize_value

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.export_api import ClientSettings, ExportClient, InvalidRequestError
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.warehouse import LEDGER_TABLE, REJECTS_TABLE, SCHEMA, column_schema
from growingio_pipeline_tests.reliability_support import (
    FINISHED_PARTITION,
    build_baseline,
    copy_baseline,
    materialize_partition,
    start_server,
    step_failure_message,
    table_snapshot,
)

SECRET_TOKEN = "tok-7f3a9c2e5b1d4f60aa11"
EXPORT_HOUR = FINISHED_PARTITION[:10]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_baseline(tmp_path_factory.mktemp("baseline") / "events.duckdb")


@pytest.fixture
def secret_server():
    server = start_server(token=SECRET_TOKEN)
    yield server
    server.stop()


def signed_links(server: LocalExportServer) -> list[str]:
    """The links the client is given (the frozen clock makes them the same on every call)."""
    url = f"{server.base_url}/v2/insights/hour/{server.project_id}/{FINISHED_PARTITION}.json"
    answer = httpx.get(url, params={"expire": 60}, headers={"Authorization": server.token}).json()
    return [link for links in answer["downloadLinks"].values() for link in links]


def secrets_of(server: LocalExportServer) -> list[str]:
    """The token and every link signature, as they would appear in text."""
    signatures = [parse_qs(urlsplit(link).query)["Signature"][0] for link in signed_links(server)]
    assert signatures
    return [server.token, *signatures, "Signature="]


def everything_a_run_leaves(
    instance: dg.DagsterInstance, instance_dir: Path, duckdb_path: Path, results: list[dg.ExecuteInProcessResult]
) -> str:
    """All text the runs left: stored events, the instance's files, the warehouse's tables and file, errors."""
    texts = []
    for result in results:
        texts += [serialize_value(entry) for entry in instance.all_logs(result.run_id)]
        if not result.success:
            texts.append(step_failure_message(result))
    texts += [path.read_bytes().decode("utf-8", "replace") for path in instance_dir.rglob("*") if path.is_file()]
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        for table in (LEDGER_TABLE, REJECTS_TABLE):
            texts.append(repr(conn.execute(f"SELECT * FROM {table}").fetchall()))
        texts.append(repr(conn.execute("SELECT _source_part, _extra_columns FROM growingio.page").fetchall()))
    texts.append(duckdb_path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def test_no_token_or_link_signature_in_logs_metadata_errors_ledger_or_storage(
    secret_server: LocalExportServer, baseline: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    duckdb_path = copy_baseline(baseline, tmp_path)
    [a_link, *_] = signed_links(secret_server)
    instance_dir = tmp_path / "dagster_home"
    instance_dir.mkdir()
    with dg.DagsterInstance.local_temp(str(instance_dir)) as instance:
        secret_server.faults.truncate_next_downloads(1000)  # failures whose messages are about links
        failed_downloads = materialize_partition(
            secret_server, duckdb_path, instance=instance, max_link_refreshes=1, raise_on_error=False
        )
        secret_server.faults.reset()
        loaded = materialize_partition(secret_server, duckdb_path, instance=instance, raise_on_error=False)
        secret_server.error_hours[EXPORT_HOUR] = f"could not write {a_link} (Authorization: {SECRET_TOKEN})"
        vendor_error = materialize_partition(secret_server, duckdb_path, instance=instance, raise_on_error=False)
        del secret_server.error_hours[EXPORT_HOUR]
        secret_server.faults.fail_next_api_calls(1000)
        unavailable = materialize_partition(
            secret_server, duckdb_path, instance=instance, max_retries=1, raise_on_error=False
        )
        secret_server.faults.reset()
        results = [failed_downloads, loaded, vendor_error, unavailable]

        assert [result.success for result in results] == [False, True, False, False]
        assert "could not write http://127.0.0.1" in step_failure_message(vendor_error), "errorMsg shown, redacted"
        left = everything_a_run_leaves(instance, instance_dir, duckdb_path, results) + caplog.text
    assert "/exports/" in left, "link paths (without their signatures) are shown, so the search covers them"
    for secret in secrets_of(secret_server):
        assert secret not in left


def test_a_wrong_token_is_not_echoed(secret_server: LocalExportServer, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "tok-wrong-0a1b2c3d4e5f"

    result = materialize_partition(secret_server, tmp_path / "events.duckdb", token=wrong, raise_on_error=False)

    assert not result.success
    message = step_failure_message(result)
    assert "refused the credentials (HTTP 401)" in message
    assert wrong not in message + caplog.text and SECRET_TOKEN not in message + caplog.text


def test_tables_and_columns_come_only_from_the_registry(secret_server, baseline: Path, tmp_path: Path) -> None:
    duckdb_path = copy_baseline(baseline, tmp_path)
    before = table_snapshot(duckdb_path)
    hostile = 'x"; DROP TABLE growingio.page; --'
    header = ["sendTime", "actionRequestId", hostile, "index) VALUES (1); DROP SCHEMA growingio CASCADE; --"]
    text = ",".join(['"sendTime"', '"actionRequestId"', '"x\\"; DROP TABLE growingio.page; --"', header[3]])
    part = gzip.compress((text + '\n"1764356400000","wa1","v1","v2"\n').encode())
    secret_server.override_parts("action", EXPORT_HOUR, [part])
    secret_server.override_next_api_responses(
        {"status": "FINISHED", "exportDate": EXPORT_HOUR, "downloadLinks": {"page; DROP TABLE growingio.visit": []}}
    )

    result = materialize_partition(secret_server, duckdb_path, selection=["action"], raise_on_error=False)

    assert result.success, step_failure_message(result)
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        tables = {
            name: [
                (column, sql_type)
                for column, sql_type in conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
                    "AND table_name = ? ORDER BY ordinal_position",
                    [SCHEMA, name],
                ).fetchall()
            ]
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [SCHEMA]
            ).fetchall()
        }
        [(extras,)] = conn.execute(
            "SELECT _extra_columns FROM growingio.action WHERE _partition_key = ?", [FINISHED_PARTITION]
        ).fetchall()
    assert set(tables) == {*EVENT_TYPES, LEDGER_TABLE.split(".")[1], REJECTS_TABLE.split(".")[1]}
    for name, event_type in EVENT_TYPES.items():
        assert [column for column, _ in tables[name]] == [column for column, _ in column_schema(event_type)]
    assert extras == {hostile: "v1", header[3]: "v2"}, "hostile header names are data, never SQL"
    after = table_snapshot(duckdb_path)
    assert {name: rows for name, rows in after.items() if name != "action"} == {
        name: rows for name, rows in before.items() if name != "action"
    }


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"project_id": "../../exports/9b0d1f56"}, "project id must be a hex string"),
        ({"project_id": "9b0d1f56d5baff1a/../../x"}, "project id must be a hex string"),
        ({"project_id": "9b0d1f56d5baff1a?expire=1"}, "project id must be a hex string"),
        ({"base_url": "file:///etc"}, "base_url must be an http(s) URL with a host"),
        ({"base_url": "http://user:pw@127.0.0.1:1"}, "base_url must not carry credentials"),
    ],
    ids=["path_traversal", "trailing_path", "query", "file_scheme", "credentials_in_url"],
)
def test_a_bad_project_id_or_base_url_fails_before_any_request(
    secret_server: LocalExportServer, tmp_path: Path, settings: dict, message: str
) -> None:
    result = materialize_partition(secret_server, tmp_path / "events.duckdb", **settings, raise_on_error=False)

    assert not result.success
    assert message in step_failure_message(result)
    assert not secret_server.api_calls and not secret_server.download_calls


@pytest.mark.parametrize(
    "export_date",
    ["2026112903/../..", "2026-11-29", "202611290300?x=1", "２０２６１１２９０３", "2026113103"],
)
def test_a_bad_export_date_is_refused_before_any_request(secret_server: LocalExportServer, export_date: str) -> None:
    settings = ClientSettings(
        token=secret_server.token, project_id=secret_server.project_id, base_url=secret_server.base_url
    )
    with ExportClient(settings) as client, pytest.raises(InvalidRequestError, match="export_date"):
        client.request_export("hour", export_date)
    assert not secret_server.api_calls


def test_dagster_refuses_a_partition_key_outside_the_partitions(secret_server, tmp_path: Path) -> None:
    with pytest.raises(dg.DagsterUnknownPartitionError, match="Could not find a partition"):
        materialize_partition(
            secret_server, tmp_path / "events.duckdb", partition_key="2026112903/../..", raise_on_error=False
        )
    assert not secret_server.api_calls
