"""The lake maintenance job and its daily schedule (on by default)."""

from dataclasses import asdict
from datetime import timedelta

import dagster as dg
from pydantic import Field

from growingio_pipeline.event_types import BEIJING
from growingio_pipeline.maintenance import DEFAULT_SNAPSHOT_AGE, maintain
from growingio_pipeline.resources import WarehouseResource

MAINTENANCE_JOB = "growingio_lake_maintenance"
MAINTENANCE_CRON = "40 4 * * *"
"""04:40 Beijing: between two hourly loads (they start at minute 10), at the quietest time of the day."""


class MaintenanceConfig(dg.Config):
    """How much history the lake keeps."""

    snapshot_age_days: float = Field(
        default=DEFAULT_SNAPSHOT_AGE / timedelta(days=1),
        description="Snapshots older than this many days are expired: time travel reaches back this far.",
    )


@dg.op(description="Merges small files, expires old snapshots and deletes files no snapshot needs.")
def maintain_lake(
    context: dg.OpExecutionContext, config: MaintenanceConfig, warehouse: WarehouseResource
) -> dg.Output[None]:
    with warehouse.connect() as conn:
        result = maintain(conn, timedelta(days=config.snapshot_age_days))
    context.log.info(
        f"lake files {result.before.stored_files} -> {result.after.stored_files}, "
        f"bytes {result.before.stored_bytes:,} -> {result.after.stored_bytes:,}"
    )
    metadata: dict[str, int] = {"snapshots_expired": result.snapshots_expired}
    for moment, files in (("before", result.before), ("after", result.after)):
        metadata.update({f"{name}_{moment}": value for name, value in asdict(files).items()})
    return dg.Output(None, metadata=metadata)


@dg.job(
    name=MAINTENANCE_JOB,
    description="Keeps the lake compact: rewrites and merges files, expires snapshots, deletes.",
)
def lake_maintenance_job() -> None:
    maintain_lake()


lake_maintenance_schedule = dg.ScheduleDefinition(
    name="growingio_lake_maintenance_daily",
    job=lake_maintenance_job,
    cron_schedule=MAINTENANCE_CRON,
    execution_timezone=BEIJING.key,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Lake maintenance once a day; runs beside loads without losing a row.",
)
