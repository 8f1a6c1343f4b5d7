"""The catch-up sensor: keeps every partition of the retention window loaded, without a person.

A sensor rather than declarative automation conditions: an hour's state lives in the load ledger (NOT_EXISTS
and ERROR runs succeed or fail without a materialization), retries need a backoff that grows per attempt and
per outcome, and the hours nearest to expiry must go first. Conditions see only Dagster's materializations
and would request a NOT_EXISTS hour at every tick. The sensor keeps no state of its own: the ledger holds the
attempts and the run storage the runs in flight, so a lost cursor or a restarted daemon cannot start a storm.

Each tick requests the due partitions, oldest first, with the run queue's ``dagster/priority`` tag set to
their age so the queue also starts the oldest first, and never more than ``MAX_CATCH_UP_RUNS_IN_FLIGHT``
queued or running at once. How many of them run at the same time is the run queue's limit on the
``growingio/catch_up`` tag (``dagster_home/dagster.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TypeVar

import dagster as dg
import duckdb

from growingio_pipeline.catchup import RETENTION, CatchUpPolicy, WindowState, read_histories, with_failed_runs
from growingio_pipeline.checks import CHECK_KINDS, asset_key
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.resources import GrowingIOExportResource, WarehouseResource

CATCH_UP_TAG = "growingio/catch_up"
PARTITION_TAG = "dagster/partition"
PRIORITY_TAG = "dagster/priority"
T = TypeVar("T")
MAX_CATCH_UP_RUNS_IN_FLIGHT = 24
"""Catch-up runs queued or running at once: enough to keep the queue busy between ticks, never a storm."""
TICK_INTERVAL_S = 30
FAILED_RUNS_SCANNED = 1000
"""The newest failed runs read each tick to back off partitions whose run failed before its ledger row."""
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def utc_now() -> datetime:
    """The real time, aware."""
    return datetime.now(timezone.utc)


def credentials_missing(growingio: GrowingIOExportResource) -> str | None:
    """Why no run can start yet (credentials missing), or None.

    The sensors are on by default: without credentials every run they started would fail at once, so they
    wait for them instead.
    """
    try:
        growingio.client_settings()
    except dg.Failure as missing:
        return missing.description
    return None


def read_window(
    instance: dg.DagsterInstance, warehouse: WarehouseResource, policy: CatchUpPolicy, now: datetime
) -> WindowState:
    """The retention window's partitions with their ledger histories and the runs that failed without a row."""
    since = window_start_key(policy, now)
    histories = read_ledger(warehouse, lambda conn: read_histories(conn, policy.export_type, since)) or {}
    return WindowState(policy, now, with_failed_runs(histories, _failed_runs(instance)))


def window_start_key(policy: CatchUpPolicy, now: datetime) -> str:
    """A key no later than the window's oldest partition: keys sort as times, so older ledger rows are skipped."""
    return policy.key(now - RETENTION)


def read_ledger(warehouse: WarehouseResource, read: Callable[[duckdb.DuckDBPyConnection], T]) -> T | None:
    """``read(conn)`` on one snapshot of the lake, read-only: no write lock, so a tick never delays a load.
    None when there is no lake yet (nothing was ever loaded)."""
    try:
        with warehouse.connect(read_only=True) as conn:
            return read(conn)
    except FileNotFoundError:
        return None


def _failed_runs(instance: dg.DagsterInstance) -> list[tuple[str, datetime, datetime]]:
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=FAILED_RUNS_SCANNED
    )
    return [
        (
            record.dagster_run.tags[PARTITION_TAG],
            datetime.fromtimestamp(record.start_time or record.create_timestamp.timestamp(), timezone.utc),
            datetime.fromtimestamp(record.end_time, timezone.utc),
        )
        for record in records
        if PARTITION_TAG in record.dagster_run.tags and record.end_time is not None
    ]


def runs_in_flight(instance: dg.DagsterInstance) -> tuple[set[str], int]:
    """Partitions with a run queued or running (any run: catch-up, schedule, backfill, UI) and how many of
    those runs are catch-up runs."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=_IN_FLIGHT))
    partitions = {run.tags[PARTITION_TAG] for run in runs if PARTITION_TAG in run.tags}
    return partitions, sum(1 for run in runs if CATCH_UP_TAG in run.tags)


def load_request(partition_key: str, event_types: Sequence[str], tags: Mapping[str, str]) -> dg.RunRequest:
    """A run request loading ``event_types`` of one partition, with their per-hour checks only: the
    window-wide guard checks on the same assets run in their own job."""
    return dg.RunRequest(
        partition_key=partition_key,
        asset_selection=[asset_key(EVENT_TYPES[name]) for name in event_types],
        asset_check_keys=[
            dg.AssetCheckKey(asset_key(EVENT_TYPES[name]), kind.name) for name in event_types for kind in CHECK_KINDS
        ],
        tags=dict(tags),
    )


def catch_up_requests(window: WindowState, in_flight: set[str], catch_up_in_flight: int) -> list[dg.RunRequest]:
    """Run requests for the due partitions, oldest first, up to the in-flight cap."""
    due = window.due(in_flight, limit=MAX_CATCH_UP_RUNS_IN_FLIGHT - catch_up_in_flight)
    return [
        # No run key: Dagster would drop a key it saw before, also after the ledger was rebuilt. The in-flight
        # check is the guard against two runs for one partition (the daemon creates a tick's runs before the next).
        # Only the types still missing: an hour that stopped half-way downloads the rest, not all ten again.
        load_request(
            partition.key,
            partition.missing_types,
            {CATCH_UP_TAG: str(partition.attempts + 1), PRIORITY_TAG: str(partition.priority)},
        )
        for partition in due
    ]


def build_catch_up_sensor(
    job: dg.UnresolvedAssetJobDefinition,
    policy: CatchUpPolicy,
    *,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    clock: Callable[[], datetime] = utc_now,
) -> dg.SensorDefinition:
    """The ``growingio_catch_up`` sensor for ``job``'s partitions under ``policy``."""

    @dg.sensor(
        name="growingio_catch_up",
        job=job,
        minimum_interval_seconds=TICK_INTERVAL_S,
        default_status=default_status,
        description=(
            "Requests every partition of the 15-day window that is not loaded for all event types: late "
            "exports, failed runs, hours of a daemon outage. Oldest first, with backoff."
        ),
    )
    def growingio_catch_up(
        context: dg.SensorEvaluationContext, growingio: GrowingIOExportResource, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        missing = credentials_missing(growingio)
        if missing:
            return dg.SensorResult(skip_reason=missing)
        window = read_window(context.instance, warehouse, policy, clock())
        in_flight, catch_up_in_flight = runs_in_flight(context.instance)
        requests = catch_up_requests(window, in_flight, catch_up_in_flight)
        if requests:
            context.log.info(f"requesting {len(requests)} partitions: {_summary(requests)}")
        return dg.SensorResult(
            run_requests=requests,
            skip_reason=None if requests else "every ready partition is loaded, in flight or backing off",
        )

    return growingio_catch_up


def _summary(requests: Sequence[dg.RunRequest], shown: int = 5) -> str:
    keys = [str(request.partition_key) for request in requests]
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")
