"""The Dagster code location: assets, checks, job, schedule and resources, configured from the environment.

Settings (all optional at load time, so the UI opens without credentials):
GROWINGIO_BASE_URL, GROWINGIO_TOKEN, GROWINGIO_PROJECT_ID, GROWINGIO_CLIENT_ID, GROWINGIO_START_DATE,
GROWINGIO_EXPORT_TYPE (hour | day), and the lake's GROWINGIO_LAKE_* and GROWINGIO_S3_* (see lake.py); for key-pair
authentication instead of a token, GROWINGIO_PRIVATE_KEY and GROWINGIO_PROJECT_UID (the shared code is kept in
GROWINGIO_LAKE_CATALOG); GROWINGIO_CATCH_UP (on | off), GROWINGIO_CATCH_UP_EVENT_TYPES, GROWINGIO_RETRY_BACKOFF_MIN,
GROWINGIO_ALERT_WEBHOOK; GROWINGIO_ANALYTICS_AUTOMATION (on | off).
"""

from __future__ import annotations

import os
from datetime import timedelta

import dagster as dg

from growingio_pipeline.analytics_assets import (
    ANALYTICS_JOB,
    build_analytics_assets,
    build_analytics_automation_sensor,
    dbt_resource,
)
from growingio_pipeline.assets import build_event_assets
from growingio_pipeline.catchup import DEFAULT_BACKOFF, CatchUpPolicy
from growingio_pipeline.catchup_sensor import build_catch_up_sensor
from growingio_pipeline.event_types import EVENT_TYPES, get_event_type
from growingio_pipeline.guards import build_guards
from growingio_pipeline.maintenance_job import lake_maintenance_job, lake_maintenance_schedule
from growingio_pipeline.partitions import build_partitions_def
from growingio_pipeline.reissue_sensor import build_reissue_sensor
from growingio_pipeline.resources import resources_from_env
from growingio_pipeline.schedules import build_latest_export_schedule


def build_definitions(
    export_type: str = "hour",
    start_date: str | None = None,
    *,
    catch_up: bool = True,
    retry_backoff: timedelta = DEFAULT_BACKOFF,
    catch_up_event_types: tuple[str, ...] = tuple(EVENT_TYPES),
    analytics_automation: bool = True,
) -> dg.Definitions:
    """All definitions for one export type (``hour`` or ``day``); ``catch_up`` starts the catch-up and re-issue
    sensors and the guard schedule running, ``analytics_automation`` the sensor that runs the models."""
    partitions_def = build_partitions_def(export_type, start_date)
    event_assets = build_event_assets(export_type, partitions_def)
    policy = CatchUpPolicy(export_type, partitions_def.start, retry_backoff, catch_up_event_types)
    sensor_status = _sensor_status(catch_up)
    guards = build_guards(
        policy, default_status=dg.DefaultScheduleStatus.RUNNING if catch_up else dg.DefaultScheduleStatus.STOPPED
    )
    job = dg.define_asset_job(
        name="growingio_export_job",
        # An asset's selection includes the checks on it: the guards look at the whole window, so they run in
        # their own job, not once per partition.
        selection=dg.AssetSelection.assets(event_assets) - dg.AssetSelection.checks(guards.checks),
        description="Loads every GrowingIO event type for one export partition.",
    )
    assets, jobs, sensors = [event_assets], [job], []
    if export_type == "hour":  # the models count hours: they follow hourly exports only
        analytics = build_analytics_assets(partitions_def)
        assets.append(analytics)
        jobs.append(
            dg.define_asset_job(
                name=ANALYTICS_JOB,
                selection=dg.AssetSelection.assets(analytics),
                description="Rebuilds what one hour can change in the analytics models (automation runs them too).",
            )
        )
        sensors.append(build_analytics_automation_sensor(_sensor_status(analytics_automation)))
    return dg.Definitions(
        assets=assets,
        asset_checks=[guards.checks],
        jobs=[*jobs, guards.job, lake_maintenance_job],
        schedules=[build_latest_export_schedule(job, export_type), guards.schedule, lake_maintenance_schedule],
        sensors=[
            *sensors,
            build_catch_up_sensor(job, policy, default_status=sensor_status),
            build_reissue_sensor(job, policy, default_status=sensor_status),
            guards.failure_sensor,
        ],
        resources={**resources_from_env(), "dbt": dbt_resource()},
        # A run is a single step (one API call per partition): a step subprocess would only add start-up time.
        executor=dg.in_process_executor,
    )


def _sensor_status(running: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


def switch_from_env(name: str) -> bool:
    """An ``on`` (default) or ``off`` setting.

    ``GROWINGIO_CATCH_UP`` starts catch-up and the guards with the daemon. It is on by default: an hour nobody
    asked for is lost for good after 15 days, while a catch-up run is idempotent and the sensor stays idle
    until credentials are set. ``GROWINGIO_ANALYTICS_AUTOMATION`` runs the models once their hour is loaded;
    ``off`` leaves them to be materialized by hand.
    """
    value = os.environ.get(name, "on").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"{name} must be 'on' or 'off', not {value!r}")
    return value == "on"


def catch_up_event_types_from_env() -> tuple[str, ...]:
    """``GROWINGIO_CATCH_UP_EVENT_TYPES``: the event types catch-up keeps loaded, comma-separated (default all)."""
    text = os.environ.get("GROWINGIO_CATCH_UP_EVENT_TYPES", "").strip()
    if not text:
        return tuple(EVENT_TYPES)
    try:
        return tuple(get_event_type(name.strip()).name for name in text.split(","))
    except ValueError as error:
        raise ValueError(f"GROWINGIO_CATCH_UP_EVENT_TYPES: {error}") from None


def retry_backoff_from_env() -> timedelta:
    """``GROWINGIO_RETRY_BACKOFF_MIN``: the first retry interval in minutes (default 10; fractions allowed)."""
    text = os.environ.get("GROWINGIO_RETRY_BACKOFF_MIN")
    if not text:
        return DEFAULT_BACKOFF
    try:
        minutes = float(text)
    except ValueError:
        minutes = float("nan")
    if not minutes > 0:
        raise ValueError(f"GROWINGIO_RETRY_BACKOFF_MIN must be a positive number of minutes, not {text!r}")
    return timedelta(minutes=minutes)


defs = build_definitions(
    export_type=os.environ.get("GROWINGIO_EXPORT_TYPE", "hour"),
    start_date=os.environ.get("GROWINGIO_START_DATE") or None,
    catch_up=switch_from_env("GROWINGIO_CATCH_UP"),
    retry_backoff=retry_backoff_from_env(),
    catch_up_event_types=catch_up_event_types_from_env(),
    analytics_automation=switch_from_env("GROWINGIO_ANALYTICS_AUTOMATION"),
)
