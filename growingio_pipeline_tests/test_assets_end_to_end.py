"""Real Dagster materializations against the local export server and a real DuckDB file."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from growingio_pipeline import event_types
from growingio_pipeline.assets import build_event_assets
from growingio_pipeline.checks import EXPORT_STATUS
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.partitions import build_partitions_def
from growingio_pipeline_tests.conftest import LOCAL_SERVER_NOW
from growingio_pipeline_tests.pipeline_harness import (
    COUPON,
    FINISHED_PARTITION,
    PARTITIONS_DEF,
    expected_rows,
    ledger,
    loaded_rows,
    materialize_partition,
    table_snapshot,
)
from growingio_pipeline_tests.reliability_support import step_failure_message


@pytest.fixture
def duckdb_path(tmp_path):
    return tmp_path / "events.duckdb"


def test_loaded_rows_equal_ground_truth_for_all_ten_types(local_server, duckdb_path):
    result = materialize_partition(local_server, duckdb_path)

    assert result.success
    for event_type in EVENT_TYPES.values():
        expected = expected_rows(local_server, event_type, FINISHED_PARTITION)
        assert loaded_rows(duckdb_path, event_type, FINISHED_PARTITION) == expected, event_type.name
    assert {event.asset_key.path[-1] for event in result.get_asset_materialization_events()} == set(EVENT_TYPES)
    assert len(local_server.api_calls) == 1, "one all-types API call per partition"


def test_all_checks_pass_and_metadata_describes_the_load(local_server, duckdb_path):
    result = materialize_partition(local_server, duckdb_path)

    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 4 * len(EVENT_TYPES)
    assert all(evaluation.passed for evaluation in evaluations)
    assert {evaluation.partition for evaluation in evaluations} == {FINISHED_PARTITION}
    page = next(
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.asset_key.path[-1] == "page"
    )
    metadata = page.metadata
    assert metadata["dagster/row_count"].value == len(local_server.ground_truth("page", FINISHED_PARTITION[:10]))
    assert metadata["dagster/table_name"].value == "growingio.page"
    assert [c.name for c in metadata["dagster/column_schema"].schema.columns][:3] == [
        "visit_user_id",
        "session_id",
        "platform",
    ]
    parts = local_server.parts("page", FINISHED_PARTITION[:10])
    assert metadata["parts"].value == len(parts) == 2, "16 KiB test parts split the page export"
    sources = metadata["sources"].value.split("\n")
    assert len(sources) == len(parts)
    assert all(source.startswith("/exports/") and source.endswith(".csv.gz") for source in sources), "no host, no query"
    assert metadata["request_time"].value == LOCAL_SERVER_NOW.strftime("%Y-%m-%d %H:%M")
    assert metadata["preview"].value.startswith("| visit_user_id |")


def test_rematerializing_a_partition_leaves_exactly_the_same_rows(local_server, duckdb_path):
    materialize_partition(local_server, duckdb_path)
    first = table_snapshot(duckdb_path)

    materialize_partition(local_server, duckdb_path)

    assert table_snapshot(duckdb_path) == first
    loaded = [row for row in ledger(duckdb_path) if row["status"] == "LOADED"]
    assert len(loaded) == 2 * len(EVENT_TYPES)


def test_selecting_a_subset_loads_only_those_types(local_server, duckdb_path):
    result = materialize_partition(local_server, duckdb_path, selection=["page", "action"])

    assert {event.asset_key.path[-1] for event in result.get_asset_materialization_events()} == {"page", "action"}
    assert {row["event_type"] for row in ledger(duckdb_path)} == {"page", "action"}
    downloads = len(local_server.download_calls)
    expected_parts = sum(len(local_server.parts(name, FINISHED_PARTITION[:10])) for name in ("page", "action"))
    assert downloads == expected_parts


def test_map_columns_are_queryable_by_key(local_server, duckdb_path):
    materialize_partition(local_server, duckdb_path, selection=["custom_event"])

    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        prices = conn.execute(
            "SELECT count(*) FROM growingio.custom_event WHERE event_variable['price'] IS NOT NULL"
        ).fetchall()[0][0]
    truth = local_server.ground_truth("custom_event", FINISHED_PARTITION[:10]).get_column("eventVariable")
    assert prices == sum(1 for text in truth if text is not None and "price" in json.loads(text))
    assert 0 < prices < len(truth), "some rows have the key, some do not"


def test_not_exists_warns_and_leaves_duckdb_untouched(make_local_server, duckdb_path):
    server = make_local_server()
    materialize_partition(server, duckdb_path)
    before = table_snapshot(duckdb_path)
    server.clock.advance(timedelta(days=16))  # the partition is now past the 15-day retention

    result = materialize_partition(server, duckdb_path)

    assert result.success
    assert not result.get_asset_materialization_events()
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == {EXPORT_STATUS.name}
    assert all(not e.passed and e.severity == dg.AssetCheckSeverity.WARN for e in evaluations)
    assert table_snapshot(duckdb_path) == before
    assert {row["status"] for row in ledger(duckdb_path)} == {"LOADED", "NOT_EXISTS"}


def test_error_fails_the_run_with_the_error_message_and_keeps_rows(make_local_server, duckdb_path):
    ok_server = make_local_server()
    materialize_partition(ok_server, duckdb_path)
    before = table_snapshot(duckdb_path)
    failing = make_local_server(error_hours={FINISHED_PARTITION[:10]: "export job crashed: disk full"})

    result = materialize_partition(failing, duckdb_path, raise_on_error=False)

    assert not result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(EVENT_TYPES)
    assert all(not e.passed and e.severity == dg.AssetCheckSeverity.ERROR for e in evaluations)
    assert all(e.metadata["error_msg"].value == "export job crashed: disk full" for e in evaluations)
    assert "disk full" in str(result.failure_data_for_node("growingio_export").error.message)
    assert table_snapshot(duckdb_path) == before


def test_running_past_the_deadline_asks_dagster_to_retry_not_a_check(make_local_server, duckdb_path):
    server = make_local_server(running_polls=1000)

    result = materialize_partition(server, duckdb_path, raise_on_error=False)

    assert not result.success
    assert not result.get_asset_check_evaluations()
    step_events = [event.event_type_value for event in result.all_events if event.is_step_event]
    # running_max_retries is 0 here: Dagster has no retry left, so the step fails at once.
    assert step_events == ["STEP_START", "STEP_FAILURE"]
    assert "still RUNNING" in step_failure_message(result)
    assert {row["status"] for row in ledger(duckdb_path)} == {"RUNNING"}


def test_a_load_that_fails_in_the_middle_keeps_the_previous_rows(make_local_server, duckdb_path):
    server = make_local_server()
    materialize_partition(server, duckdb_path)
    before = table_snapshot(duckdb_path)
    # The second page part is garbage on every download: staging fails after other parts were read.
    good_parts = server.parts("page", FINISHED_PARTITION[:10])
    server.override_parts("page", FINISHED_PARTITION[:10], [good_parts[0], b"\x1f\x8b not really gzip"])

    result = materialize_partition(server, duckdb_path, raise_on_error=False)

    assert not result.success
    assert table_snapshot(duckdb_path) == before
    failed = [row for row in ledger(duckdb_path) if row["status"] == "FAILED"]
    assert sorted(row["event_type"] for row in failed) == sorted(EVENT_TYPES), "staging stops every type"
    messages = {row["error_msg"] for row in failed}
    assert len(messages) == 1
    (message,) = messages
    assert message.startswith("could not download 1 of 2 page part(s) intact") and "gzip check failed" in message
    assert "?" not in message, "no link signature in the ledger"


def test_daily_partitions_load_the_day_export(local_server, duckdb_path):
    day_assets = build_event_assets("day", build_partitions_def("day", "20261115"))

    result = materialize_partition(local_server, duckdb_path, "20261128", assets=day_assets)

    assert result.success
    assert local_server.api_calls[0].path.startswith("/v2/insights/day/")
    assert len(loaded_rows(duckdb_path, EVENT_TYPES["page"], "20261128")) == 24 * 200, "the day's 24 hours"
    for event_type in EVENT_TYPES.values():
        expected = expected_rows(local_server, event_type, "20261128")
        assert loaded_rows(duckdb_path, event_type, "20261128") == expected, event_type.name


def test_an_event_type_added_to_the_registry_alone_loads_like_the_others(make_local_server, duckdb_path, monkeypatch):
    monkeypatch.setitem(event_types.EVENT_TYPES, COUPON.name, COUPON)
    server = make_local_server()
    assets = build_event_assets("hour", PARTITIONS_DEF)

    result = materialize_partition(server, duckdb_path, selection=[COUPON.name], assets=assets)

    assert result.success
    expected = expected_rows(server, COUPON, FINISHED_PARTITION)
    assert len(expected) == 20, "200 page rows an hour x DEFAULT_ROWS_PER_PAGE"
    assert loaded_rows(duckdb_path, COUPON, FINISHED_PARTITION) == expected
    evaluations = result.get_asset_check_evaluations()
    assert [(e.asset_key.path[-1], e.passed) for e in evaluations] == [(COUPON.name, True)] * 4
