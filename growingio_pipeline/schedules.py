"""The schedule that requests the newest export the vendor has had time to produce."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from growingio_pipeline.event_types import BEIJING
from growingio_pipeline.export_contract import KEY_FORMATS

# Hourly exports are ready ~40 min after the hour ends (60 min for 23:00-02:00): at minute 10 the hour that
# ended 70 minutes ago is ready. Daily exports take 2-4 hours; the vendor advises running after 06:00.
CRON_BY_EXPORT_TYPE = {"hour": "10 * * * *", "day": "0 6 * * *"}
LAG_BY_EXPORT_TYPE = {"hour": timedelta(hours=2), "day": timedelta(days=1)}


def build_latest_export_schedule(job: dg.UnresolvedAssetJobDefinition, export_type: str) -> dg.ScheduleDefinition:
    """Runs ``job`` for the latest ready partition (Asia/Shanghai); stopped until a user turns it on."""

    @dg.schedule(
        name="growingio_latest_export",
        job=job,
        cron_schedule=CRON_BY_EXPORT_TYPE[export_type],
        execution_timezone=BEIJING.key,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Loads the newest GrowingIO export that the vendor has had time to produce.",
    )
    def latest_export_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        scheduled = context.scheduled_execution_time.astimezone(BEIJING)
        partition_start = scheduled.replace(minute=0, second=0, microsecond=0) - LAG_BY_EXPORT_TYPE[export_type]
        if export_type == "day":
            partition_start = partition_start.replace(hour=0)
        partition_key = partition_start.strftime(KEY_FORMATS[export_type])
        return dg.RunRequest(run_key=partition_key, partition_key=partition_key)

    return latest_export_schedule
