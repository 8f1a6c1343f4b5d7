"""Guards that speak up without a person: the expiry and freshness checks, their schedule, and failure alerts.

- ``partitions_not_near_expiry`` fails when a partition is less than 24 hours from leaving the vendor's
  15-day window and still not loaded for the event type; it also posts an ``expiry_risk`` alert.
- ``newest_partition_fresh`` fails when the newest loaded partition trails the newest one the vendor should
  have ready by more than 2 hours (with daily exports: as soon as the newest ready day is missing).
- ``growingio_alert_on_run_failure`` posts a ``run_failed`` alert for every failed run of this location.

Alerts go to ``GROWINGIO_ALERT_WEBHOOK`` when it is set (``alerts.send_alert``, redacted).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg

from growingio_pipeline.alerts import send_alert, webhook_url
from growingio_pipeline.catchup import EXPIRY_WARNING, FRESHNESS_LAG, CatchUpPolicy, DuePartition, WindowState
from growingio_pipeline.catchup_sensor import PARTITION_TAG, read_window, utc_now
from growingio_pipeline.checks import asset_key
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.resources import WarehouseResource

EXPIRY_CHECK = "partitions_not_near_expiry"
FRESHNESS_CHECK = "newest_partition_fresh"
GUARDS_JOB = "growingio_guards_job"
GUARD_CRON = "20 * * * *"
"""Hourly, between the schedule's minute 10 and the hour's exports being ready."""
LISTED_PARTITIONS = 24
"""Partitions named in a check's metadata or an alert; the count is always complete."""


@dataclass(frozen=True)
class Guards:
    """The guard checks, the job that runs them, its schedule and the failure alert sensor."""

    checks: dg.AssetChecksDefinition
    job: "dg.UnresolvedAssetJobDefinition"
    schedule: dg.ScheduleDefinition
    failure_sensor: dg.SensorDefinition


def build_guards(
    policy: CatchUpPolicy,
    *,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
    clock: Callable[[], datetime] = utc_now,
) -> Guards:
    """The guards for ``policy``'s partitions; the schedule starts as ``default_status``."""
    checks = _build_checks(policy, clock)
    job = dg.define_asset_job(
        name=GUARDS_JOB,
        selection=dg.AssetSelection.checks(checks),
        description="Checks that no partition is about to expire unloaded and that the newest is fresh.",
    )
    schedule = dg.ScheduleDefinition(
        name="growingio_guards",
        job=job,
        cron_schedule=GUARD_CRON,
        default_status=default_status,
        description="Runs the expiry and freshness checks every hour.",
    )
    return Guards(checks, job, schedule, _build_failure_sensor())


def _build_checks(policy: CatchUpPolicy, clock: Callable[[], datetime]) -> dg.AssetChecksDefinition:
    specs = [
        spec
        for event_type in EVENT_TYPES.values()
        for spec in (
            dg.AssetCheckSpec(
                EXPIRY_CHECK,
                asset=asset_key(event_type),
                description=f"No partition is less than {_hours(EXPIRY_WARNING)} hours from leaving GrowingIO's "
                "15-day window without being loaded (after that, its data is gone for good).",
            ),
            dg.AssetCheckSpec(
                FRESHNESS_CHECK,
                asset=asset_key(event_type),
                description=f"The newest loaded partition trails the newest one GrowingIO should have ready by "
                f"at most {_hours(FRESHNESS_LAG)} hours.",
            ),
        )
    ]

    @dg.multi_asset_check(name="growingio_guards", specs=specs)
    def growingio_guards(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.AssetCheckResult]:
        window = read_window(context.instance, warehouse, policy, clock())
        at_risk = window.at_risk()
        if at_risk:
            # Materializing assets from the UI runs their checks too: only the hourly guard job alerts.
            delivered = context.run.job_name == GUARDS_JOB and send_alert(_expiry_alert(window, at_risk))
            context.log.warning(
                f"{len(at_risk)} partitions expire within {_hours(EXPIRY_WARNING)} hours unloaded: "
                f"{_keys(at_risk)}" + (" (alert sent)" if delivered else "")
            )
        for name in EVENT_TYPES:
            yield _expiry_result(window, name)
            yield _freshness_result(window, name)

    return growingio_guards


def _expiry_result(window: WindowState, event_type: str) -> dg.AssetCheckResult:
    at_risk = window.at_risk(event_type)
    return dg.AssetCheckResult(
        asset_key=asset_key(EVENT_TYPES[event_type]),
        check_name=EXPIRY_CHECK,
        passed=not at_risk,
        metadata={
            "partitions_at_risk": len(at_risk),
            "partition_keys": _keys(at_risk) or "none",
            "first_expiry": at_risk[0].expires_at.isoformat() if at_risk else "none",
        },
        description=f"{len(at_risk)} partitions expire within {_hours(EXPIRY_WARNING)} hours unloaded"
        if at_risk
        else None,
    )


def _freshness_result(window: WindowState, event_type: str) -> dg.AssetCheckResult:
    lag = window.freshness_lag(event_type)
    newest_ready = window.ready_starts()[-1] if lag is not None else None
    return dg.AssetCheckResult(
        asset_key=asset_key(EVENT_TYPES[event_type]),
        check_name=FRESHNESS_CHECK,
        passed=lag is None or lag <= FRESHNESS_LAG,
        metadata={
            "lag_hours": round(lag.total_seconds() / 3600, 2) if lag is not None else 0.0,
            "newest_ready_partition": window.policy.key(newest_ready) if newest_ready else "none",
        },
    )


def _expiry_alert(window: WindowState, at_risk: list[DuePartition]) -> dict[str, object]:
    return {
        "event": "expiry_risk",
        "export_type": window.policy.export_type,
        "checked_at": window.now.isoformat(),
        "partitions_at_risk": len(at_risk),
        "partitions": [
            {
                "partition_key": partition.key,
                "expires_at": partition.expires_at.isoformat(),
                "hours_left": round((partition.expires_at - window.now).total_seconds() / 3600, 2),
                "attempts": partition.attempts,
                "missing_event_types": window.unloaded_types(partition.key),
            }
            for partition in at_risk[:LISTED_PARTITIONS]
        ],
    }


def _build_failure_sensor() -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="growingio_alert_on_run_failure",
        # Running from the start when a webhook is configured: an alert nobody turned on is no alert.
        default_status=dg.DefaultSensorStatus.RUNNING if webhook_url() else dg.DefaultSensorStatus.STOPPED,
        description="Posts a JSON alert to GROWINGIO_ALERT_WEBHOOK for every failed run.",
    )
    def growingio_alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        send_alert(
            {
                "event": "run_failed",
                "run_id": run.run_id,
                "job_name": run.job_name,
                "partition_key": run.tags.get(PARTITION_TAG),
                "message": context.failure_event.message or "",
                "errors": [_step_error(event) for event in context.get_step_failure_events()],
            }
        )

    return growingio_alert_on_run_failure


def _keys(partitions: list[DuePartition]) -> str:
    return ", ".join(partition.key for partition in partitions[:LISTED_PARTITIONS])


def _step_error(event: dg.DagsterEvent) -> str:
    """A failed step's error message (redacted by ``send_alert`` like every text of an alert)."""
    error = event.step_failure_data.error
    return f"{event.step_key}: {error.message.strip() if error else event.message or ''}"


def _hours(delta: timedelta) -> int:
    return int(delta.total_seconds() // 3600)
