"""Parsing test parts the two ways the tests need: into a lake partition's data file, as ``ingest`` does, or
into an Arrow table to look at."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import duckdb
import pyarrow as pa

from growingio_pipeline.event_types import EventType
from growingio_pipeline.parsing import ParsedPart, parse_part
from growingio_pipeline.warehouse import DataFile, write_data_file


def parse_into_partition(
    conn: duckdb.DuckDBPyConnection,
    event_type: EventType,
    partition_key: str,
    gz_path: Path,
    *,
    source: str,
    staging_dir: Path,
) -> ParsedPart[DataFile]:
    """``gz_path`` parsed into a new data file of ``partition_key``, ready for ``replace_partition``."""
    write = partial(write_data_file, conn, event_type, partition_key)
    return parse_part(event_type, gz_path, source=source, staging_dir=staging_dir, write=write)


def read_all(rows: pa.RecordBatchReader, source: str) -> pa.Table:
    """A ``RowWriter`` keeping the part's rows as one table."""
    return rows.read_all()


def parse_to_table(event_type: EventType, gz_path: Path, *, source: str, staging_dir: Path) -> ParsedPart[pa.Table]:
    """``gz_path`` parsed, its rows kept in ``written`` as one table."""
    return parse_part(event_type, gz_path, source=source, staging_dir=staging_dir, write=read_all)
