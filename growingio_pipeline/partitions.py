"""Time partitions whose keys are the export API's ``export_date`` (Beijing time)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg

from growingio_pipeline.event_types import BEIJING, RETENTION_DAYS
from growingio_pipeline.export_contract import KEY_FORMATS


def default_start_date(export_type: str, now: datetime | None = None) -> str:
    """The start of the Beijing day ``RETENTION_DAYS`` ago: the oldest export the vendor still serves."""
    now = now or datetime.now(timezone.utc)
    first_day = (now.astimezone(BEIJING) - timedelta(days=RETENTION_DAYS)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return first_day.strftime(KEY_FORMATS[export_type])


def build_partitions_def(export_type: str, start_date: str | None = None) -> dg.TimeWindowPartitionsDefinition:
    """Hourly (``hour``) or daily (``day``) partitions in Asia/Shanghai, keyed like ``export_date``.

    ``start_date`` is written in the key's own format (``yyyyMMddHHmm`` or ``yyyyMMdd``).
    """
    if export_type not in KEY_FORMATS:
        raise ValueError(f"export type must be 'hour' or 'day', not {export_type!r}")
    key_format = KEY_FORMATS[export_type]
    start_date = start_date or default_start_date(export_type)
    try:
        datetime.strptime(start_date, key_format)
    except ValueError:
        raise ValueError(
            f"start date {start_date!r} must be written as {key_format} for {export_type} exports"
        ) from None
    if export_type == "hour":
        return dg.HourlyPartitionsDefinition(start_date=start_date, timezone=BEIJING.key, fmt=key_format)
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone=BEIJING.key, fmt=key_format)


def utc_window(time_window: dg.TimeWindow) -> tuple[datetime, datetime]:
    """A partition's time window as UTC datetimes (file times are UTC epoch milliseconds)."""
    return time_window.start.astimezone(timezone.utc), time_window.end.astimezone(timezone.utc)
