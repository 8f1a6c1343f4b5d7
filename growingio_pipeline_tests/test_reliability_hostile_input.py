"""Hostile input served by the export server, end to end through a real Dagster run into a real DuckDB file.

What a user can expect, per case:

- rows with more or fewer fields than the header, and values that do not type (text in a bigint
  column), go to ``growingio._rejects`` with the reason and the source part; the other rows load; the
  ``no_rejected_rows`` check fails (WARN) and ``rows_loaded_equal_rows_read`` still passes;
- an unknown extra column is kept in ``_extra_columns`` and named in the metadata; a missing
  documented column loads as NULL and is named in the metadata;
- a 10 MB field loads exactly;
- invalid UTF-8, an HTML page instead of gzip, API JSON with wrong types and a link whose scheme is not
  http(s) fail the run with a message naming the problem, and nothing already loaded changes;
- a ``downloadLinks`` key for an unknown event type is ignored (with a warning); the known types load.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from growingio_pipeline.checks import IN_TIME_WINDOW, NO_REJECTS, ROWS_COMPLETE
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline_tests.csv_fixtures import dialect_text
from growingio_pipeline_tests.reliability_support import (
    FINISHED_PARTITION,
    assert_partition_equals_ground_truth,
    build_baseline,
    copy_baseline,
    ledger,
    materialize_partition,
    new_ledger_rows,
    start_server,
    step_failure_message,
    table_snapshot,
)

EXPORT_HOUR = FINISHED_PARTITION[:10]
HOUR_START_MS = int(datetime(2026, 11, 28, 19, tzinfo=timezone.utc).timestamp() * 1000)
"""03:00 Beijing on 2026-11-29, the partition's first millisecond, in UTC epoch ms."""
HEADER = ["sendTime", "time", "actionRequestId", "index", "href"]


def action_row(number: int, *, index: str = "1", href: str | None = "https://example.com/") -> list[str | None]:
    """A well-formed action row (the columns of ``HEADER``), identified by its actionRequestId."""
    send_time = str(HOUR_START_MS + number)
    return [send_time, send_time, f"wa{number}", index, href]


def gzip_part(header: list[str], rows: list[list[str | None]]) -> bytes:
    return gzip.compress(dialect_text(header, rows).encode(), 1)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_baseline(tmp_path_factory.mktemp("baseline") / "events.duckdb")


@pytest.fixture
def server():
    started = start_server()
    yield started
    started.stop()


@pytest.fixture
def duckdb_path(baseline: Path, tmp_path: Path) -> Path:
    return copy_baseline(baseline, tmp_path)


def action_rows(duckdb_path: Path, columns: str = "action_request_id, index, href") -> list[tuple]:
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        return conn.execute(
            f"SELECT {columns} FROM growingio.action WHERE _partition_key = ? ORDER BY action_request_id",
            [FINISHED_PARTITION],
        ).fetchall()


def rejects(duckdb_path: Path) -> list[dict[str, Any]]:
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        cursor = conn.execute("SELECT * FROM growingio._rejects ORDER BY reason")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def assert_failed_and_nothing_changed(
    result: dg.ExecuteInProcessResult, duckdb_path: Path, before: dict, before_ledger: list, message: str
) -> None:
    """The run failed naming the problem, every table is as it was, and the ledger has the FAILED attempt."""
    assert not result.success
    assert message in step_failure_message(result), step_failure_message(result)
    assert table_snapshot(duckdb_path) == before
    attempts = new_ledger_rows(duckdb_path, before_ledger)
    assert [row["status"] for row in attempts] == ["FAILED"]
    assert message in attempts[0]["error_msg"]


def test_rows_with_more_or_fewer_fields_are_rejected_with_reason_and_part(server, duckdb_path) -> None:
    good = [action_row(1), action_row(2)]
    text = dialect_text(HEADER, good) + '"1","1","wa-short"\n"1","1","wa-long","1","h","surplus"\n'
    server.override_parts("action", EXPORT_HOUR, [gzip.compress(text.encode())])

    result = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)

    assert result.success
    assert action_rows(duckdb_path) == [("wa1", 1, "https://example.com/"), ("wa2", 1, "https://example.com/")]
    rejected = rejects(duckdb_path)
    assert [row["reason"] for row in rejected] == ["expected 5 fields, found 3", "expected 5 fields, found 6"]
    assert "wa-short" in rejected[0]["raw_text"] and "surplus" in rejected[1]["raw_text"]
    assert all(row["source_part"].endswith(".csv.gz") and "?" not in row["source_part"] for row in rejected)
    assert checks(result)[NO_REJECTS.name] is False
    assert checks(result)[ROWS_COMPLETE.name] is True
    assert materialization_metadata(result)["rows_rejected"] == 2


def test_text_in_a_bigint_column_rejects_that_row_only(server, duckdb_path) -> None:
    server.override_parts("action", EXPORT_HOUR, [gzip_part(HEADER, [action_row(1), action_row(2, index="seven")])])

    result = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)

    assert result.success
    assert action_rows(duckdb_path) == [("wa1", 1, "https://example.com/")]
    [rejected] = rejects(duckdb_path)
    assert rejected["reason"].startswith("index:") and "seven" in rejected["reason"]
    assert json.loads(rejected["raw_text"])["actionRequestId"] == "wa2"
    assert checks(result)[NO_REJECTS.name] is False


def test_an_unknown_column_is_kept_and_a_missing_one_loads_as_null(server, duckdb_path) -> None:
    header = [name for name in HEADER if name != "href"] + ["brandNewColumn"]
    rows = [[*action_row(1)[:-1], "surprise"]]
    server.override_parts("action", EXPORT_HOUR, [gzip_part(header, rows)])

    result = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)

    assert result.success
    assert action_rows(duckdb_path, "action_request_id, href, _extra_columns") == [
        ("wa1", None, {"brandNewColumn": "surprise"})
    ]
    metadata = materialization_metadata(result)
    assert metadata["unknown_columns"] == "brandNewColumn"
    assert "href" in metadata["missing_columns"].split(", ")
    assert all(checks(result).values())


def test_a_ten_megabyte_field_loads_exactly(server, duckdb_path) -> None:
    huge = "长" * 1_000_000 + 'a "quoted", \\escaped\\ value\n' * 250_000  # about 10 MB of UTF-8
    server.override_parts("action", EXPORT_HOUR, [gzip_part(HEADER, [action_row(1, href=huge), action_row(2)])])

    result = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)

    assert result.success
    assert len(huge.encode()) >= 10_000_000
    assert action_rows(duckdb_path) == [("wa1", 1, huge), ("wa2", 1, "https://example.com/")]


def test_invalid_utf8_fails_the_run_and_keeps_the_rows(server, duckdb_path) -> None:
    before, before_ledger = table_snapshot(duckdb_path), ledger(duckdb_path)
    text = dialect_text(HEADER, [action_row(1)]).encode() + b'"1","1","wa\xff\xfe","1",""\n'
    server.override_parts("action", EXPORT_HOUR, [gzip.compress(text)])

    result = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)

    assert_failed_and_nothing_changed(result, duckdb_path, before, before_ledger, "invalid UTF-8")


def test_an_html_page_instead_of_gzip_is_fetched_again_then_fails(server, duckdb_path) -> None:
    server.faults.html_next_downloads(1)
    recovered = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)
    assert recovered.success
    assert_partition_equals_ground_truth(server, duckdb_path, ["action"])

    before, before_ledger = table_snapshot(duckdb_path), ledger(duckdb_path)
    server.faults.html_next_downloads(1000)

    result = materialize_partition(
        server, duckdb_path, selection=["action"], max_link_refreshes=1, raise_on_error=False
    )

    assert_failed_and_nothing_changed(result, duckdb_path, before, before_ledger, "not a gzip file")


def test_a_gzipped_html_page_is_not_taken_for_an_export(server, duckdb_path) -> None:
    before, before_ledger = table_snapshot(duckdb_path), ledger(duckdb_path)
    page = b"<html><head><title>404 Not Found</title></head><body>No such key</body></html>\n"
    server.override_parts("action", EXPORT_HOUR, [gzip.compress(page)])

    result = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)

    assert_failed_and_nothing_changed(result, duckdb_path, before, before_ledger, "header matches no action column")


def finished(download_links: Any, **fields: Any) -> dict[str, Any]:
    """An all-types API answer for the partition, FINISHED, with these links."""
    return {
        "status": "FINISHED",
        "downloadLinks": download_links,
        "exportType": "hour",
        "exportDate": EXPORT_HOUR,
        "exportVersion": "v2",
        "requestTime": "2026-11-29 12:00",
        "errorMsg": "",
        **fields,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (finished({"action": "https://example.com/p.csv.gz"}), "downloadLinks['action'] should be a list, got str"),
        (finished(["https://example.com/part-0.csv.gz"]), "downloadLinks should be an object"),
        (finished({"action": [42]}), "action link 0 should be a string, got int"),
        (finished({}, status=200), "unknown status '200'"),
        (finished({}, exportDate=20261129), "field 'exportDate' should be a string, got int"),
        (finished({}, exportDate="2026112804"), "response is for '2026112804'"),
        ([1, 2, 3], "expected a JSON object, got list"),
        (finished({"action": ["file:///etc/passwd"]}), "action link 0 is not an http(s) URL with a host"),
        (finished({"action": ["ftp://127.0.0.1/part-0.csv.gz"]}), "action link 0 is not an http(s) URL with a host"),
        (finished({"action": ["javascript:alert(1)"]}), "action link 0 is not an http(s) URL with a host"),
    ],
    ids=[
        "links_not_a_list",
        "links_not_an_object",
        "link_not_a_string",
        "status_not_a_string",
        "export_date_not_a_string",
        "answer_for_another_hour",
        "body_not_an_object",
        "file_scheme",
        "ftp_scheme",
        "javascript_scheme",
    ],
)
def test_an_api_answer_with_wrong_types_or_schemes_fails_the_run_and_keeps_the_rows(
    server, duckdb_path, body: Any, message: str
) -> None:
    before, before_ledger = table_snapshot(duckdb_path), ledger(duckdb_path)
    server.override_next_api_responses(body)

    result = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)

    assert_failed_and_nothing_changed(result, duckdb_path, before, before_ledger, message)
    assert not server.download_calls, "nothing was downloaded from an unusable answer"


def test_links_for_an_unknown_event_type_are_ignored_and_the_known_types_load(
    server: LocalExportServer, duckdb_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.override_next_api_responses(finished({"not_a_type": ["https://example.com/x.csv.gz"]}))

    result = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)

    assert result.success
    assert_partition_equals_ground_truth(server, duckdb_path, ["action"])
    assert "ignoring downloadLinks for unknown event type 'not_a_type'" in caplog.text
    one_type_calls = [call.path for call in server.api_calls if "/action/" in call.path]
    assert one_type_calls, "the missing action links were asked for on the one-type endpoint"


def test_rows_far_outside_the_partition_window_load_and_the_check_warns(server, duckdb_path) -> None:
    late = HOUR_START_MS + int(timedelta(days=3).total_seconds() * 1000)
    rows = [action_row(1), [str(late), str(late), "wa9", "1", None]]
    server.override_parts("action", EXPORT_HOUR, [gzip_part(HEADER, rows)])

    result = materialize_partition(server, duckdb_path, selection=["action"], raise_on_error=False)

    assert result.success
    assert [row[0] for row in action_rows(duckdb_path)] == ["wa1", "wa9"]
    [window_check] = [e for e in result.get_asset_check_evaluations() if e.check_name == IN_TIME_WINDOW.name]
    assert not window_check.passed and window_check.severity == dg.AssetCheckSeverity.WARN
