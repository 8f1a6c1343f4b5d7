"""A 48-partition backfill of all ten types, launched the way the UI launches one, through ``dagster dev``."""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timedelta

import dagster as dg
import httpx
import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.partitions import BEIJING, KEY_FORMATS
from growingio_pipeline_tests.conftest import PROJECT_ROOT
from growingio_pipeline_tests.dagster_processes import running_dagster_dev
from growingio_pipeline_tests.pipeline_harness import expected_rows, lake_environment, loaded_rows, read_lake

FIRST_HOUR = datetime(2026, 11, 27, 0, tzinfo=BEIJING)
PARTITION_KEYS = [(FIRST_HOUR + timedelta(hours=h)).strftime(KEY_FORMATS["hour"]) for h in range(48)]
BACKFILL_TIMEOUT_S = 1500

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on Error { message }
  }
}"""


def _graphql(url: str, query: str, variables: dict) -> dict:
    response = httpx.post(url, json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    payload = response.json()
    assert "errors" not in payload, payload
    return payload["data"]


def launch_backfill(url: str, partition_keys: list[str]) -> str:
    """Launch a backfill of every event type, as the UI does; its id."""
    params = {
        "partitionNames": partition_keys,
        "assetSelection": [{"path": ["growingio", name]} for name in EVENT_TYPES],
    }
    launched = _graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def _wait_for_backfill(url: str, backfill_id: str) -> str:
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while time.monotonic() < deadline:
        backfill = _graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return backfill["status"]
        time.sleep(2)
    raise TimeoutError(f"backfill {backfill_id} did not finish within {BACKFILL_TIMEOUT_S} s")


@pytest.mark.slow
def test_backfill_of_48_hours_loads_every_partition_once_without_lock_errors(make_local_server, tmp_path):
    server = make_local_server(rows_per_hour=50, calls_per_second=2.0)
    lake_dir = tmp_path / "lake"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        "GROWINGIO_BASE_URL": server.base_url,
        "GROWINGIO_TOKEN": server.token,
        "GROWINGIO_PROJECT_ID": server.project_id,
        **lake_environment(lake_dir),
        "GROWINGIO_START_DATE": PARTITION_KEYS[0],
    }

    with running_dagster_dev(dagster_home, env, cwd=PROJECT_ROOT) as dev:
        started = time.monotonic()
        backfill_id = launch_backfill(dev.graphql_url, PARTITION_KEYS)
        status = _wait_for_backfill(dev.graphql_url, backfill_id)
        print(f"48-partition backfill: {status} in {time.monotonic() - started:.0f} s")

    assert status in ("COMPLETED", "COMPLETED_SUCCESS")
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == len(PARTITION_KEYS)
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
        messages = [
            str(record.user_message) + str(record.dagster_event and record.dagster_event.event_specific_data)
            for run in runs
            for record in instance.all_logs(run.run_id)
        ]
    lock_errors = [m for m in messages if "could not set lock" in m.lower() or "conflicting lock" in m.lower()]
    assert not lock_errors, "no DuckDB lock error"

    for event_type in EVENT_TYPES.values():
        for partition_key in PARTITION_KEYS:
            expected = expected_rows(server, event_type, partition_key)
            assert loaded_rows(lake_dir, event_type, partition_key) == expected, (event_type.name, partition_key)
    with read_lake(lake_dir) as conn:
        ledger = conn.execute(
            "SELECT status, count(*), count(DISTINCT (event_type, partition_key)) "
            "FROM growingio._load_ledger GROUP BY 1"
        ).fetchall()
    assert ledger == [("LOADED", 480, 480)], "one successful attempt per (type, partition)"
