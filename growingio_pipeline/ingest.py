"""Loading one export partition: download, parse and stage outside DuckDB, then one short write per type.

Free of Dagster, so it can be reused alone; the Dagster assets turn its results into materializations and
check results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from growingio_pipeline.event_types import EventType
from growingio_pipeline.export_api import ExportClient, ExportResult
from growingio_pipeline.parsing import ParsedPart, parse_part
from growingio_pipeline.warehouse import LoadAttempt, LoadStatus, LoadSummary, record_attempt, replace_partition


@dataclass(frozen=True)
class PartitionAttempt:
    """One run's attempt at one partition: what all its ledger rows share."""

    export_type: str
    partition_key: str
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class StagedType:
    """One event type's parts of one partition, downloaded and parsed, ready to write."""

    event_type: EventType
    parts: tuple[ParsedPart, ...]
    started_at: datetime


@dataclass(frozen=True)
class PartitionVerification:
    """Counts the checks compare, measured in DuckDB after the commit."""

    rows_read: int
    rows_in_table: int
    rows_rejected: int
    rows_outside_window: int


@dataclass(frozen=True)
class TypeLoad:
    """The outcome of writing one event type's partition."""

    staged: StagedType
    summary: LoadSummary
    verification: PartitionVerification


def stage_event_type(client: ExportClient, export: ExportResult, event_type: EventType, workdir: Path) -> StagedType:
    """Download every part of ``event_type`` in ``export`` and parse it to a staging file."""
    started_at = datetime.now(timezone.utc)
    type_dir = workdir / event_type.name
    type_dir.mkdir(parents=True, exist_ok=True)
    downloaded = client.download_parts(export, event_type.name, type_dir)
    parts = tuple(
        # The file's path names the part; the host varies (CDN, on-premise, local server port).
        parse_part(event_type, part.path, source=urlsplit(part.source).path, staging_dir=type_dir)
        for part in downloaded
    )
    return StagedType(event_type=event_type, parts=parts, started_at=started_at)


def write_staged(
    conn: duckdb.DuckDBPyConnection,
    staged: StagedType,
    attempt: PartitionAttempt,
    window: tuple[datetime, datetime],
) -> TypeLoad:
    """Replace the partition's rows in one transaction, verify them, and record the attempt."""
    summary = replace_partition(conn, staged.event_type, attempt.partition_key, staged.parts)
    verification = verify_partition(conn, staged.event_type, attempt.partition_key, window, summary)
    record_attempt(conn, LoadAttempt.loaded(summary, export_type=attempt.export_type, started_at=staged.started_at))
    return TypeLoad(staged=staged, summary=summary, verification=verification)


def verify_partition(
    conn: duckdb.DuckDBPyConnection,
    event_type: EventType,
    partition_key: str,
    window: tuple[datetime, datetime],
    summary: LoadSummary,
) -> PartitionVerification:
    """Count the partition's rows in the table, and those whose bucketing time is outside ``window``."""
    rows_in_table, rows_outside = count_partition_rows(conn, event_type, partition_key, window)
    return PartitionVerification(
        rows_read=summary.rows_read,
        rows_in_table=rows_in_table,
        rows_rejected=summary.rows_rejected,
        rows_outside_window=rows_outside,
    )


def count_partition_rows(
    conn: duckdb.DuckDBPyConnection, event_type: EventType, partition_key: str, window: tuple[datetime, datetime]
) -> tuple[int, int]:
    """The partition's rows in the table, and how many of them have a bucketing time outside ``window``."""
    bucket = event_type.bucket_column_name
    [(rows_in_table, rows_outside)] = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {bucket} < ? OR {bucket} >= ?) "
        f"FROM {event_type.table_name} WHERE _partition_key = ?",
        [window[0], window[1], partition_key],
    ).fetchall()
    return rows_in_table, rows_outside


def record_unloaded(
    conn: duckdb.DuckDBPyConnection,
    attempt: PartitionAttempt,
    event_types: Sequence[EventType],
    status: LoadStatus,
    error_msg: str,
) -> None:
    """Ledger rows for an attempt that loaded nothing (NOT_EXISTS, ERROR, RUNNING, or a failure)."""
    for event_type in event_types:
        record_attempt(
            conn,
            LoadAttempt.unloaded(
                event_type=event_type.name,
                partition_key=attempt.partition_key,
                export_type=attempt.export_type,
                status=status.value,
                error_msg=error_msg,
                started_at=attempt.started_at,
            ),
        )
