"""After three days with the machine off, the daemon loads all 72 hours by itself, oldest first.

Real parts only: ``dagster dev`` (webserver and daemon, the project's ``dagster_home/dagster.yaml``) runs the
``growingio_catch_up`` sensor against the local export server on 127.0.0.1, whose clock is the real time like
the daemon's. The ledger already holds the hours before the outage. One hour of the outage is ERROR at first
(the vendor's export failed) and fixed by the vendor later: it is retried after its backoff, with no person,
and its failed run posts an alert to a local webhook receiver.

Kept cheap for CI: catch-up keeps two event types loaded (``GROWINGIO_CATCH_UP_EVENT_TYPES``; a run's cost is
mostly its process start and its per-type writes), ten page rows an hour, a backoff of seconds.
"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from growingio_pipeline.catchup import CatchUpPolicy, WindowState
from growingio_pipeline.catchup_sensor import CATCH_UP_TAG
from growingio_pipeline.event_types import BEIJING, EVENT_TYPES
from growingio_pipeline.local_server.clock import utc_now
from growingio_pipeline.warehouse import LoadStatus
from growingio_pipeline_tests.conftest import PROJECT_ROOT
from growingio_pipeline_tests.dagster_processes import log_tail, running_dagster_dev
from growingio_pipeline_tests.ledger_support import insert_attempts
from growingio_pipeline_tests.pipeline_harness import expected_rows, lake_environment, partition_rows, read_lake
from growingio_pipeline_tests.webhook_receiver import running_webhook_receiver

OUTAGE_HOURS = 72
CAUGHT_UP_TYPES = (EVENT_TYPES["page"], EVENT_TYPES["ads_track_click"])
TIMEOUT_S = 1800
"""73 runs, two at a time, each a fresh process: minutes on an idle 2-core machine, far more on a shared one."""
RETRY_BACKOFF_MIN = 0.1
"""6 s first retry (18 s after an ERROR) instead of 10 minutes, so the vendor's fix is picked up in the test."""


def run_records(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    return list(instance.get_run_records(filters=dg.RunsFilter(job_name="growingio_export_job")))


def partitions_with(records: list[dg.RunRecord], status: dg.DagsterRunStatus) -> set[str]:
    return {
        record.dagster_run.tags.get("dagster/partition") for record in records if record.dagster_run.status is status
    }


@pytest.mark.slow
def test_three_days_off_then_every_hour_loads_by_itself_oldest_first(make_local_server, tmp_path):
    now = utc_now()
    start_date = (now.astimezone(BEIJING) - timedelta(days=5)).replace(hour=0, minute=0, second=0, microsecond=0)
    policy = CatchUpPolicy("hour", start_date)
    ready = [policy.key(start) for start in WindowState(policy, now).ready_starts()]
    before, outage = ready[:-OUTAGE_HOURS], ready[-OUTAGE_HOURS:]
    failing_hour = outage[10]
    server = make_local_server(
        rows_per_hour=10, clock=utc_now, error_hours={failing_hour[:10]: "export job failed, re-running"}
    )
    lake_dir = tmp_path / "lake"
    insert_attempts(lake_dir, [(key, LoadStatus.LOADED, now - timedelta(days=3)) for key in before])
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")

    with running_webhook_receiver() as webhook:
        env = {
            "GROWINGIO_BASE_URL": server.base_url,
            "GROWINGIO_TOKEN": server.token,
            "GROWINGIO_PROJECT_ID": server.project_id,
            **lake_environment(lake_dir),
            "GROWINGIO_START_DATE": policy.key(start_date),
            "GROWINGIO_CATCH_UP": "on",
            "GROWINGIO_CATCH_UP_EVENT_TYPES": ",".join(event_type.name for event_type in CAUGHT_UP_TYPES),
            "GROWINGIO_RETRY_BACKOFF_MIN": str(RETRY_BACKOFF_MIN),
            "GROWINGIO_ALERT_WEBHOOK": webhook.url,
        }
        started = time.monotonic()
        with (
            running_dagster_dev(dagster_home, env, module=None, cwd=PROJECT_ROOT) as dev,
            dg.DagsterInstance.from_config(str(dagster_home)) as instance,
        ):
            records = _wait_until_loaded(instance, server, set(outage), failing_hour, dev.log_path)
            _wait_for_alert(webhook, failing_hour)
        elapsed = time.monotonic() - started
        print(f"{OUTAGE_HOURS}-hour outage caught up in {elapsed:.0f} s ({len(records)} runs)")
        alerts = webhook.payloads

    # The clock is real: an hour that became ready during the test may have a run not started yet.
    first_attempts = sorted(
        (
            record
            for record in records
            if record.dagster_run.tags.get(CATCH_UP_TAG) == "1" and record.start_time is not None
        ),
        key=lambda record: record.start_time,
    )
    keys_in_start_order = [record.dagster_run.tags["dagster/partition"] for record in first_attempts]
    assert set(keys_in_start_order) >= set(outage), "every outage hour was requested by the sensor"
    assert set(keys_in_start_order).isdisjoint(before), "hours loaded before the outage are left alone"
    # Oldest first: two runs go at a time, so only neighbours may start out of order.
    late_starters = [
        (early, late)
        for i, early in enumerate(keys_in_start_order)
        for late in keys_in_start_order[i + 2 :]
        if late < early
    ]
    assert not late_starters, late_starters

    per_partition: dict[str, list[dg.DagsterRunStatus]] = {}
    for record in sorted(records, key=lambda record: record.create_timestamp):
        if record.dagster_run.tags["dagster/partition"] not in outage:
            continue
        per_partition.setdefault(record.dagster_run.tags["dagster/partition"], []).append(record.dagster_run.status)
    assert per_partition[failing_hour] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
    assert all(
        statuses == [dg.DagsterRunStatus.SUCCESS] for key, statuses in per_partition.items() if key != failing_hour
    ), "one run per hour, no duplicates"
    assert not [call for call in server.api_calls if call.status == 429], "the API's 2 calls/s held"

    with read_lake(lake_dir) as conn:  # one connection for every comparison: opening the lake is not free
        for key in outage:
            for event_type in CAUGHT_UP_TYPES:
                assert partition_rows(conn, event_type, key) == expected_rows(server, event_type, key), key
        loaded = conn.execute(
            "SELECT count(DISTINCT (event_type, partition_key)) FROM growingio._load_ledger WHERE status = 'LOADED' "
            "AND partition_key IN (SELECT unnest(?))",
            [outage],
        ).fetchall()[0][0]
    assert loaded == OUTAGE_HOURS * len(CAUGHT_UP_TYPES)
    [failure_alert] = [alert for alert in alerts if alert["event"] == "run_failed"]
    assert failure_alert["partition_key"] == failing_hour
    assert server.token not in str(alerts)


def _wait_until_loaded(
    instance: dg.DagsterInstance, server, outage: set[str], failing_hour: str, log_path: Path
) -> list[dg.RunRecord]:
    """Poll the run storage until every outage hour has a successful run; fix the vendor's ERROR hour once
    its first run has failed."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        records = run_records(instance)
        if failing_hour in partitions_with(records, dg.DagsterRunStatus.FAILURE):
            server.error_hours.pop(failing_hour[:10], None)  # the vendor re-ran its export
        if outage <= partitions_with(records, dg.DagsterRunStatus.SUCCESS):
            return records
        time.sleep(2)
    done = partitions_with(run_records(instance), dg.DagsterRunStatus.SUCCESS)
    raise TimeoutError(f"{len(outage - done)} outage hours still not loaded after {TIMEOUT_S} s:\n{log_tail(log_path)}")


def _wait_for_alert(webhook, failing_hour: str, timeout_s: float = 120) -> None:
    """The failure sensor ticks on its own interval: wait for its alert of the ERROR hour."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(alert.get("partition_key") == failing_hour for alert in webhook.payloads):
            return
        time.sleep(1)
    raise TimeoutError(f"no run_failed alert for {failing_hour} within {timeout_s:.0f} s")
