"""What the warehouse holds about one hour of one event type, read back to re-evaluate its checks.

A run of the checks alone makes no API call: the ledger says what the last attempt came to, and the table
says what the hour holds now. Free of Dagster, like the loading code it reads after.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from growingio_pipeline.event_types import EventType
from growingio_pipeline.ingest import PartitionVerification
from growingio_pipeline.warehouse import LEDGER_TABLE, LoadStatus, count_partition

_LATEST_ATTEMPT = f"""SELECT status, error_msg, rows_read, rows_rejected FROM {LEDGER_TABLE}
WHERE event_type = ? AND partition_key = ? {{only_loaded}} ORDER BY finished_at DESC LIMIT 1"""


@dataclass(frozen=True)
class HourRecord:
    """The latest attempt's status and message (None if the hour was never tried), and the counts the
    load checks compare: rows read and rejected by the last load that succeeded, rows in the table now."""

    latest_status: LoadStatus | None
    latest_error_msg: str | None
    verification: PartitionVerification


def read_hour_record(
    conn: duckdb.DuckDBPyConnection, event_type: EventType, partition_key: str, window: tuple[datetime, datetime]
) -> HourRecord:
    """The record of ``event_type``'s hour ``partition_key`` (``window`` in UTC) from the ledger and the table."""
    params = [event_type.name, partition_key]
    latest = conn.execute(_LATEST_ATTEMPT.format(only_loaded=""), params).fetchone()
    loaded = conn.execute(
        _LATEST_ATTEMPT.format(only_loaded=f"AND status = '{LoadStatus.LOADED.value}'"), params
    ).fetchone()
    _, _, rows_read, rows_rejected = loaded or (None, None, 0, 0)
    counts = count_partition(conn, event_type, partition_key, window)
    return HourRecord(
        latest_status=LoadStatus(latest[0]) if latest else None,
        latest_error_msg=latest[1] if latest else None,
        verification=PartitionVerification(
            rows_read=rows_read,
            rows_in_table=counts.rows,
            rows_rejected=rows_rejected,
            rows_outside_window=counts.rows_outside_window,
        ),
    )
