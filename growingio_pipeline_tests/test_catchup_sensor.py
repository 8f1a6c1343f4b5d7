"""The catch-up sensor evaluated against a real ledger in a lake and a real Dagster instance's run storage."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from growingio_pipeline.catchup import CatchUpPolicy, WindowState
from growingio_pipeline.catchup_sensor import (
    CATCH_UP_TAG,
    MAX_CATCH_UP_RUNS_IN_FLIGHT,
    PRIORITY_TAG,
    build_catch_up_sensor,
)
from growingio_pipeline.checks import CHECK_KINDS
from growingio_pipeline.definitions import (
    build_definitions,
    catch_up_event_types_from_env,
    retry_backoff_from_env,
    switch_from_env,
)
from growingio_pipeline.event_types import BEIJING, EVENT_TYPES
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.resources import GrowingIOExportResource
from growingio_pipeline.warehouse import LoadAttempt, LoadStatus, record_attempt
from growingio_pipeline_tests.ledger_support import insert_attempts
from growingio_pipeline_tests.pipeline_harness import warehouse_resource

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=BEIJING)
POLICY = CatchUpPolicy("hour", datetime(2026, 11, 1, tzinfo=BEIJING))
JOB = dg.define_asset_job("growingio_export_job", selection="*")
SENSOR = build_catch_up_sensor(JOB, POLICY, clock=lambda: NOW)


def seed_ledger(
    lake_dir: Path, unloaded: dict[str, LoadStatus | None], attempt_at: datetime = NOW, now: datetime = NOW
) -> None:
    """LOADED rows for every ready hour of the window at ``now`` except ``unloaded``: those get one attempt
    with the given status (None: never attempted)."""
    attempts = []
    for start in WindowState(POLICY, now).ready_starts():
        status = unloaded.get(POLICY.key(start), LoadStatus.LOADED)
        if status is not None:
            attempts.append((POLICY.key(start), status, attempt_at))
    insert_attempts(lake_dir, attempts)


def insert_partial(lake_dir: Path, key: str, loaded: list[str]) -> None:
    """LOADED rows for ``loaded`` types of partition ``key`` only."""
    conn = connect_lake(LakeSettings.in_folder(lake_dir))
    try:
        for name in loaded:
            record_attempt(
                conn,
                LoadAttempt(event_type=name, partition_key=key, export_type="hour", status="LOADED", started_at=NOW),
            )
    finally:
        conn.close()


def sensor_context(instance: dg.DagsterInstance, lake_dir: Path, **credentials: str) -> dg.SensorEvaluationContext:
    """A tick's context on the lake in ``lake_dir``; credentials for a project unless others are given."""
    growingio = GrowingIOExportResource(**(credentials or {"token": "t", "project_id": "9b0d1f56d5baff1a"}))
    return dg.build_sensor_context(
        instance=instance, resources={"growingio": growingio, "warehouse": warehouse_resource(lake_dir)}
    )


def evaluate(instance: dg.DagsterInstance, lake_dir: Path) -> list[dg.RunRequest]:
    return list(SENSOR(sensor_context(instance, lake_dir)).run_requests or [])


def queue(instance: dg.DagsterInstance, requests: list[dg.RunRequest]) -> None:
    """Put the requested runs in the run storage, in flight."""
    for request in requests:
        instance.add_run(
            dg.DagsterRun(
                job_name=JOB.name,
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.STARTED,  # QUEUED would need a code origin; both count as in flight
                tags={**request.tags, "dagster/partition": request.partition_key},
            )
        )


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_a_tick_requests_the_unloaded_hours_oldest_first_with_queue_priority(instance, tmp_path):
    path = tmp_path / "lake"
    seed_ledger(path, {"202611281500": None, "202611200300": LoadStatus.NOT_EXISTS}, NOW - timedelta(hours=1))
    requests = evaluate(instance, path)
    assert [request.partition_key for request in requests] == ["202611200300", "202611281500"]
    priorities = [int(request.tags[PRIORITY_TAG]) for request in requests]
    assert priorities[0] > priorities[1]
    assert [request.tags[CATCH_UP_TAG] for request in requests] == ["2", "1"]  # attempt numbers


def test_no_second_run_for_an_hour_while_one_is_queued_or_running(instance, tmp_path):
    path = tmp_path / "lake"
    seed_ledger(path, {"202611281500": None, "202611281600": None})
    first = evaluate(instance, path)
    assert [request.partition_key for request in first] == ["202611281500", "202611281600"]
    queue(instance, first[:1])
    assert [request.partition_key for request in evaluate(instance, path)] == ["202611281600"]
    # A run from elsewhere (the schedule, a backfill, the UI) counts too.
    queue(instance, [dg.RunRequest(partition_key="202611281600", tags={})])
    assert evaluate(instance, path) == []


def test_no_run_storm_after_a_long_outage_at_most_the_in_flight_cap(instance, tmp_path):
    path = tmp_path / "lake"
    outage = [POLICY.key(start) for start in WindowState(POLICY, NOW).ready_starts()[-72:]]
    seed_ledger(path, dict.fromkeys(outage))
    first = evaluate(instance, path)
    assert [request.partition_key for request in first] == outage[:MAX_CATCH_UP_RUNS_IN_FLIGHT]
    queue(instance, first)
    assert evaluate(instance, path) == []


def test_a_hour_that_just_failed_waits_for_its_backoff(instance, tmp_path):
    path = tmp_path / "lake"
    seed_ledger(path, {"202611281500": LoadStatus.ERROR}, NOW - timedelta(minutes=20))
    assert evaluate(instance, path) == []  # ERROR: 30 minutes first


def test_a_failed_run_without_ledger_rows_backs_off_too(instance, tmp_path):
    path = tmp_path / "lake"
    now = datetime.now(timezone.utc)  # the run storage stamps the run's end with the real time
    unloaded = POLICY.key(WindowState(POLICY, now).ready_starts()[-1])
    seed_ledger(path, {unloaded: None}, now=now)
    context = sensor_context(instance, path)
    queue(instance, build_catch_up_sensor(JOB, POLICY, clock=lambda: now)(context).run_requests)
    [run] = instance.get_runs()
    instance.report_run_failed(run)  # failed before it could write to the ledger
    ended = datetime.fromtimestamp(instance.get_run_record_by_id(run.run_id).end_time, timezone.utc)
    # (An hour that became ready meanwhile may be requested too: it comes after, being newer.)
    sensor = build_catch_up_sensor(JOB, POLICY, clock=lambda: ended + timedelta(minutes=5))
    assert unloaded not in [request.partition_key for request in sensor(context).run_requests]
    later = build_catch_up_sensor(JOB, POLICY, clock=lambda: ended + timedelta(minutes=11))
    assert next(request.partition_key for request in later(context).run_requests) == unloaded


def test_the_code_location_has_the_sensor_and_the_guards_on_by_default_and_off_when_asked():
    defs = build_definitions("hour", "202611150000")
    sensors = {sensor.name: sensor for sensor in defs.sensors}
    assert sensors["growingio_catch_up"].default_status is dg.DefaultSensorStatus.RUNNING
    assert {schedule.name: schedule for schedule in defs.schedules}["growingio_guards"].default_status is (
        dg.DefaultScheduleStatus.RUNNING
    )
    assert "growingio_alert_on_run_failure" in sensors
    # The guards check the whole window once an hour in their own job, not inside every partition's run.
    assert list(defs.resolve_job_def("growingio_export_job").graph.node_dict) == ["growingio_export"]
    assert list(defs.resolve_job_def("growingio_guards_job").graph.node_dict) == ["growingio_guards"]
    off = build_definitions("day", "20261115", catch_up=False)
    assert {sensor.name: sensor for sensor in off.sensors}["growingio_catch_up"].default_status is (
        dg.DefaultSensorStatus.STOPPED
    )
    assert {schedule.name: schedule for schedule in off.schedules}["growingio_guards"].default_status is (
        dg.DefaultScheduleStatus.STOPPED
    )


def test_without_credentials_the_sensor_requests_nothing_and_says_why(instance, tmp_path):
    path = tmp_path / "lake"
    seed_ledger(path, {"202611281500": None})
    result = SENSOR(sensor_context(instance, path, project_id="9b0d1f56d5baff1a"))
    assert not result.run_requests
    assert "GROWINGIO_TOKEN" in result.skip_reason.skip_message


def test_a_lake_never_loaded_has_every_ready_hour_due_without_creating_anything(instance, tmp_path):
    path = tmp_path / "lake"
    requests = evaluate(instance, path)
    assert len(requests) == MAX_CATCH_UP_RUNS_IN_FLIGHT
    assert requests[0].partition_key == POLICY.key(WindowState(POLICY, NOW).ready_starts()[0])
    assert not path.exists(), "a read-only tick creates no lake"


def test_an_hour_loaded_half_way_is_requested_for_its_missing_types_and_their_checks_only(instance, tmp_path):
    path = tmp_path / "lake"
    key = POLICY.key(WindowState(POLICY, NOW).ready_starts()[-1])
    seed_ledger(path, {key: None})
    written = list(EVENT_TYPES)[:7]  # a run that stopped after seven types
    insert_partial(path, key, written)
    [request] = evaluate(instance, path)
    missing = [name for name in EVENT_TYPES if name not in written]
    assert [asset.path[-1] for asset in request.asset_selection] == missing
    assert {check.asset_key.path[-1] for check in request.asset_check_keys} == set(missing)
    assert {check.name for check in request.asset_check_keys} == {kind.name for kind in CHECK_KINDS}


def test_catch_up_keeps_the_configured_types_loaded_only(instance, tmp_path):
    path = tmp_path / "lake"
    key = POLICY.key(WindowState(POLICY, NOW).ready_starts()[-1])
    seed_ledger(path, {key: None})
    insert_partial(path, key, ["page"])
    two_types = CatchUpPolicy("hour", POLICY.first_start, event_types=("page", "visit"))
    sensor = build_catch_up_sensor(JOB, two_types, clock=lambda: NOW)
    [request] = sensor(sensor_context(instance, path)).run_requests
    assert [asset.path[-1] for asset in request.asset_selection] == ["visit"]


def test_catch_up_event_types_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("GROWINGIO_CATCH_UP_EVENT_TYPES", "page, ads_track_click")
    assert catch_up_event_types_from_env() == ("page", "ads_track_click")
    monkeypatch.setenv("GROWINGIO_CATCH_UP_EVENT_TYPES", "page,pages")
    with pytest.raises(ValueError, match="GROWINGIO_CATCH_UP_EVENT_TYPES: unknown GrowingIO event type 'pages'"):
        catch_up_event_types_from_env()


@pytest.mark.parametrize("name", ["GROWINGIO_CATCH_UP", "GROWINGIO_ANALYTICS_AUTOMATION"])
@pytest.mark.parametrize("value", ["yes", "1"])
def test_a_bad_on_off_setting_is_refused_clearly(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name} must be 'on' or 'off', not '{value}'"):
        switch_from_env(name)


def test_on_off_settings_are_on_unless_set_off(monkeypatch):
    monkeypatch.delenv("GROWINGIO_ANALYTICS_AUTOMATION", raising=False)
    assert switch_from_env("GROWINGIO_ANALYTICS_AUTOMATION") is True
    monkeypatch.setenv("GROWINGIO_ANALYTICS_AUTOMATION", " OFF ")
    assert switch_from_env("GROWINGIO_ANALYTICS_AUTOMATION") is False


@pytest.mark.parametrize("value", ["0", "-1", "ten", "nan"])
def test_a_bad_retry_backoff_is_refused_clearly(monkeypatch, value):
    monkeypatch.setenv("GROWINGIO_RETRY_BACKOFF_MIN", value)
    with pytest.raises(ValueError, match="GROWINGIO_RETRY_BACKOFF_MIN must be a positive number of minutes"):
        retry_backoff_from_env()


def test_the_retry_backoff_is_read_in_minutes(monkeypatch):
    monkeypatch.setenv("GROWINGIO_RETRY_BACKOFF_MIN", "0.5")
    assert retry_backoff_from_env() == timedelta(seconds=30)
    monkeypatch.delenv("GROWINGIO_RETRY_BACKOFF_MIN")
    assert retry_backoff_from_env() == timedelta(minutes=10)
