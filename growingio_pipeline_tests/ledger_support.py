"""Writing many load-ledger rows at once, for tests that start from a history of loaded partitions.

``warehouse.record_attempt`` upserts one row per transaction: fine for a run's ten rows, too slow for the
thousands of a 15-day history. The rows here go into the lake in one transaction, with one INSERT from Arrow.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import LakeSettings, connect_lake, write_transaction
from growingio_pipeline.warehouse import LEDGER_TABLE, LoadStatus, ensure_schema


def insert_attempts(
    lake_dir: Path,
    attempts: Iterable[tuple[str, LoadStatus, datetime]],
    export_type: str = "hour",
) -> None:
    """One ledger row per event type for each ``(partition_key, status, finished_at)``, in the lake in
    ``lake_dir`` (created if needed)."""
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

    def insert(conn: duckdb.DuckDBPyConnection) -> None:
        conn.register("staged_attempts", pa.Table.from_pylist(rows))
        conn.execute(f"INSERT INTO {LEDGER_TABLE} BY NAME SELECT * FROM staged_attempts")

    conn = connect_lake(LakeSettings.in_folder(lake_dir))
    try:
        ensure_schema(conn)
        if rows:
            write_transaction(conn, insert)
    finally:
        conn.close()
