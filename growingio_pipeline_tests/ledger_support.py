"""Writing many load-ledger rows at once, for tests that start from a history of loaded partitions.

``warehouse.record_attempt`` upserts one row by primary key (~20 ms each in DuckDB): fine for a run's ten
rows, too slow for the thousands of a 15-day history. The rows here go in with one INSERT from Arrow.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.warehouse import LEDGER_TABLE, LoadStatus, ensure_schema


def insert_attempts(
    duckdb_path: Path,
    attempts: Iterable[tuple[str, LoadStatus, datetime]],
    export_type: str = "hour",
) -> None:
    """One ledger row per event type for each ``(partition_key, status, finished_at)``."""
    rows = [
        {
            "attempt_id": f"{key}-{name}-{finished_at.timestamp()}",
            "event_type": name,
            "partition_key": key,
            "export_type": export_type,
            "status": status.value,
            "started_at": finished_at - timedelta(seconds=5),
            "finished_at": finished_at,
        }
        for key, status, finished_at in attempts
        for name in EVENT_TYPES
    ]
    staged = pa.Table.from_pylist(rows)  # noqa: F841 (read by name in the SQL below)
    with duckdb.connect(str(duckdb_path)) as conn:
        ensure_schema(conn)
        conn.execute(f"INSERT INTO {LEDGER_TABLE} BY NAME SELECT * FROM staged")
