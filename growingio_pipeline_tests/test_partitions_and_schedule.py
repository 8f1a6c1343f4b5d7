"""Partition keys equal the API's export_date in Beijing time; the schedule asks for the newest ready export."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pytest

from growingio_pipeline.definitions import build_definitions
from growingio_pipeline.partitions import BEIJING, build_partitions_def, default_start_date, utc_window


def test_hourly_partition_keys_are_beijing_export_dates():
    partitions_def = build_partitions_def("hour", "202611290000")

    keys = partitions_def.get_partition_keys(current_time=datetime(2026, 11, 29, 3, 30, tzinfo=BEIJING))

    assert keys == ["202611290000", "202611290100", "202611290200"]
    window = partitions_def.time_window_for_partition_key("202611290300")
    assert utc_window(window) == (
        datetime(2026, 11, 28, 19, tzinfo=timezone.utc),
        datetime(2026, 11, 28, 20, tzinfo=timezone.utc),
    )


def test_daily_partitions_for_day_exports():
    partitions_def = build_partitions_def("day", "20261127")

    keys = partitions_def.get_partition_keys(current_time=datetime(2026, 11, 29, 12, tzinfo=BEIJING))

    assert keys == ["20261127", "20261128"]


def test_default_start_is_the_beijing_day_fifteen_days_ago():
    now = datetime(2026, 11, 29, 17, 30, tzinfo=timezone.utc)  # 01:30 on the 30th in Beijing

    assert default_start_date("hour", now) == "202611150000"
    assert default_start_date("day", now) == "20261115"


@pytest.mark.parametrize(
    ("export_type", "start_date", "message"),
    [
        ("week", None, "export type must be 'hour' or 'day'"),
        ("hour", "2026-11-29", "must be written as %Y%m%d%H%M"),
        ("day", "202611290000", "must be written as %Y%m%d"),
    ],
)
def test_bad_partition_settings_get_a_clear_error(export_type, start_date, message):
    with pytest.raises(ValueError, match=message):
        build_partitions_def(export_type, start_date)


def _scheduled_partition(export_type: str, start_date: str, scheduled: datetime) -> str:
    defs = build_definitions(export_type, start_date)
    schedule = defs.resolve_schedule_def("growingio_latest_export")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.execution_timezone == "Asia/Shanghai"
    with dg.build_schedule_context(
        scheduled_execution_time=scheduled, repository_def=defs.get_repository_def()
    ) as context:
        (run_request,) = schedule.evaluate_tick(context).run_requests
    return run_request.partition_key


def test_hourly_schedule_requests_the_hour_that_ended_seventy_minutes_ago():
    scheduled = datetime(2026, 11, 29, 10, 10, tzinfo=BEIJING)

    assert _scheduled_partition("hour", "202611150000", scheduled) == "202611290800"


def test_hourly_schedule_after_midnight_waits_for_the_slow_night_exports():
    scheduled = datetime(2026, 11, 29, 1, 10, tzinfo=BEIJING)  # 23:00 ended 70 minutes ago; it needs 60

    assert _scheduled_partition("hour", "202611150000", scheduled) == "202611282300"


def test_daily_schedule_at_six_requests_yesterday():
    scheduled = datetime(2026, 11, 29, 6, 0, tzinfo=BEIJING)

    assert _scheduled_partition("day", "20261115", scheduled) == "20261128"
