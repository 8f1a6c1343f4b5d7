"""Lake maintenance: rewrite files with many deleted rows, merge small files, expire old snapshots, delete files
no snapshot needs.

Every hourly load adds files and snapshots; a partition replaced makes its old files garbage once no
snapshot reads them. Every partition run of the analytics models adds a file to each model and deletes the rows
it rebuilds from earlier files; DuckLake merges no file that has deleted rows, so without the rewrite a model
would keep one file and one delete file per hour for ever, and each run would read them all.

Each step is its own DuckLake transaction, so loads go on beside it: a step whose commit conflicts with a load
is retried (``lake.write_transaction``), and so is the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb

from growingio_pipeline.lake import LAKE_DATABASE, METADATA_DATABASE, write_transaction

DEFAULT_SNAPSHOT_AGE = timedelta(days=7)
REWRITE_DELETED_SHARE = 0.1
"""A file is rewritten without its deleted rows once this share of its rows is deleted. A model's hourly file loses
about a quarter of its rows to the next hours' runs (the sessions that go on), and a visitors or users file
nearly all of them; a file merged from many hours loses a small share a day, and is not rewritten for it."""
ORPHAN_AGE = timedelta(days=1)
"""Files no snapshot lists (left by a killed writer) are deleted once this old: a load still writing is
younger, and its files are not listed until it commits."""


@dataclass(frozen=True)
class LakeFiles:
    """The lake's files at one moment."""

    live_files: int
    """data and delete files the current snapshot reads"""
    live_bytes: int
    stored_files: int
    """every data and delete file the catalog tracks (also those only older snapshots read)"""
    stored_bytes: int
    awaiting_deletion: int
    """files no snapshot needs any more, not yet deleted"""


def lake_files(conn: duckdb.DuckDBPyConnection) -> LakeFiles:
    """Count the lake's files and bytes from its catalog."""
    [(live_files, live_bytes)] = conn.execute(
        "SELECT COALESCE(sum(file_count + delete_file_count), 0), "
        "COALESCE(sum(file_size_bytes + delete_file_size_bytes), 0) FROM ducklake_table_info(?)",
        [LAKE_DATABASE],
    ).fetchall()
    [(stored_files, stored_bytes)] = conn.execute(
        f"SELECT count(*), COALESCE(sum(file_size_bytes), 0) FROM ("
        f"SELECT file_size_bytes FROM {METADATA_DATABASE}.ducklake_data_file "
        f"UNION ALL SELECT file_size_bytes FROM {METADATA_DATABASE}.ducklake_delete_file)"
    ).fetchall()
    [(awaiting,)] = conn.execute(
        f"SELECT count(*) FROM {METADATA_DATABASE}.ducklake_files_scheduled_for_deletion"
    ).fetchall()
    return LakeFiles(int(live_files), int(live_bytes), int(stored_files), int(stored_bytes), int(awaiting))


@dataclass(frozen=True)
class MaintenanceResult:
    """Files before and after one maintenance pass."""

    before: LakeFiles
    after: LakeFiles
    snapshots_expired: int


def _call(conn: duckdb.DuckDBPyConnection, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """One maintenance function on the lake, as its own write transaction."""
    return write_transaction(conn, lambda c: c.execute(sql, [LAKE_DATABASE, *params]).fetchall())


def maintain(conn: duckdb.DuckDBPyConnection, snapshot_age: timedelta = DEFAULT_SNAPSHOT_AGE) -> MaintenanceResult:
    """Rewrite files with many deleted rows, merge adjacent small files, expire snapshots older than
    ``snapshot_age``, delete unneeded files."""
    if snapshot_age < timedelta(0):
        raise ValueError(f"snapshot_age must not be negative, got {snapshot_age}")
    now = datetime.now(timezone.utc)
    before = lake_files(conn)
    _call(conn, "CALL ducklake_rewrite_data_files(?, delete_threshold => ?)", REWRITE_DELETED_SHARE)
    _call(conn, "CALL ducklake_merge_adjacent_files(?)")
    expired = _call(conn, "CALL ducklake_expire_snapshots(?, older_than => ?)", now - snapshot_age)
    # Files the expired snapshots (and merges) left: no remaining snapshot reads them.
    _call(conn, "CALL ducklake_cleanup_old_files(?, cleanup_all => true)")
    _call(conn, "CALL ducklake_delete_orphaned_files(?, older_than => ?)", now - ORPHAN_AGE)
    return MaintenanceResult(before=before, after=lake_files(conn), snapshots_expired=len(expired))
