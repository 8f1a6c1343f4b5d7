"""The Dagster code location: assets, checks, job, schedule and resources, configured from the environment.

Settings (all optional at load time, so the UI opens without credentials):
GROWINGIO_BASE_URL, GROWINGIO_TOKEN, GROWINGIO_PROJECT_ID, GROWINGIO_CLIENT_ID, GROWINGIO_START_DATE,
GROWINGIO_EXPORT_TYPE (hour | day), and the lake's GROWINGIO_LAKE_* and GROWINGIO_S3_* (see lake.py); for key-pair
authentication instead of a token, GROWINGIO_PRIVATE_KEY and GROWINGIO_PROJECT_UID (the shared code is kept in
GROWINGIO_LAKE_CATALOG).
"""

from __future__ import annotations

import os

import dagster as dg

from growingio_pipeline.analytics_assets import (
    ANALYTICS_AUTOMATION_SENSOR,
    ANALYTICS_JOB,
    build_analytics_assets,
    dbt_resource,
)
from growingio_pipeline.assets import build_event_assets
from growingio_pipeline.maintenance_job import lake_maintenance_job, lake_maintenance_schedule
from growingio_pipeline.partitions import build_partitions_def
from growingio_pipeline.resources import resources_from_env
from growingio_pipeline.schedules import build_latest_export_schedule


def build_definitions(export_type: str = "hour", start_date: str | None = None) -> dg.Definitions:
    """All definitions for one export type (``hour`` or ``day``)."""
    partitions_def = build_partitions_def(export_type, start_date)
    event_assets = build_event_assets(export_type, partitions_def)
    job = dg.define_asset_job(
        name="growingio_export_job",
        selection=dg.AssetSelection.assets(event_assets),
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
        sensors.append(ANALYTICS_AUTOMATION_SENSOR)
    return dg.Definitions(
        assets=assets,
        jobs=[*jobs, lake_maintenance_job],
        schedules=[build_latest_export_schedule(job, export_type), lake_maintenance_schedule],
        sensors=sensors,
        resources={**resources_from_env(), "dbt": dbt_resource()},
        # A run is a single step (one API call per partition): a step subprocess would only add start-up time.
        executor=dg.in_process_executor,
    )


defs = build_definitions(
    export_type=os.environ.get("GROWINGIO_EXPORT_TYPE", "hour"),
    start_date=os.environ.get("GROWINGIO_START_DATE") or None,
)
