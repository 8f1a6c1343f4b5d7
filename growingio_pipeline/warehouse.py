"""The lake's tables: DDL from the registry, the atomic partition replace, the load ledger and rejects.

Each part's rows are written, as the parser makes them, to a Parquet data file in the partition's folder of
the table (``write_data_file``), outside any transaction. ``replace_partition`` then runs one short transaction
per (event type, partition): delete the partition's rows, add the files (``ducklake_add_data_files``), replace
the partition's rejects, count what the partition now holds, write the load's ledger row, commit. Any error
rolls the whole transaction back, leaving the table and the ledger as they were, and removes the files it did
not add; a commit conflict with a concurrent writer runs the whole transaction again
(``lake.write_transaction``). A failed load's ledger row is written in a transaction of its own
(``record_attempt``). SQL identifiers come only from the registry.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path, PurePosixPath

import duckdb
import pyarrow as pa

from growingio_pipeline.event_types import EVENT_TYPES, ColumnKind, EventType
from growingio_pipeline.lake import LAKE_DATABASE, METADATA_DATABASE, sql_literal, write_transaction
from growingio_pipeline.parsing import EXTRA_COLUMNS, UNPARSED_MAPS, ParsedPart, read_staged

SCHEMA = "growingio"
LEDGER_TABLE = f"{SCHEMA}._load_ledger"
REJECTS_TABLE = f"{SCHEMA}._rejects"
FINGERPRINT_COLUMN = "parts_fingerprint"
"""The ledger column holding a digest of the loaded parts' sizes, ETags and Last-Modified dates (no link)."""
ERROR_MSG_LIMIT = 2000
"""Characters of an error message kept in the ledger."""

_PARQUET = {"row_group_size": 30720, "version": 2, "compression": "zstd", "compression_level": 1}
"""How the lake's Parquet files are written, by DuckLake (``LAKE_OPTIONS``) and by ``write_data_file``.

Row groups of 30,720 rows (15 of DuckDB's 2,048-row vectors; DuckDB rounds to those) instead of 122,880:
writing one hour of 400,000 hard-to-compress page rows (three parts, benchmarks/hour_benchmark.py's data)
took 2.62 s instead of 3.82 s, and a 1,000,000-row part 5.1 s instead of 7.1 s, at the same peak memory.
Groups of 15,000 and 60,000 rows measured within noise of it. Parquet version 2 with zstd at level 1: writing
a 1,000,000-row page part took 1.29 s and 52 MiB, against 1.38 s and 96 MiB with DuckLake's default (version 1,
snappy); version 2 with snappy took 1.25 s and 91 MiB.
"""
LAKE_OPTIONS = {f"parquet_{name}": str(value) for name, value in _PARQUET.items()}
"""DuckLake options this project sets on every lake it writes (``ensure_schema``)."""
# PRESERVE_ORDER false: rows have no order, and keeping the reader's order took a 1,000,000-row part's write
# from 1.5 s to 3.2 s (one thread encoding instead of two).
_COPY_OPTIONS = (
    f"FORMAT parquet, ROW_GROUP_SIZE {_PARQUET['row_group_size']}, PARQUET_VERSION V{_PARQUET['version']}, "
    f"COMPRESSION {_PARQUET['compression']}, COMPRESSION_LEVEL {_PARQUET['compression_level']}, PRESERVE_ORDER false"
)

WRITE_CONNECTION_CONFIG: dict[str, str] = {"memory_limit": "512MB"}
"""DuckDB settings for the connection that loads partitions (``duckdb.connect(..., config=...)``).

DuckDB's default limit (80% of RAM) lets its buffer cache grow with the data: inserting one
1M-row part peaked at ~730 MiB RSS, and ~375 MiB with this limit, no slower (DuckDB spills past it).
"""

_MAP_TYPE = "MAP(VARCHAR, VARCHAR)"
_TIMESTAMPTZ = "TIMESTAMP WITH TIME ZONE"  # as DESCRIBE spells it
_DUCKDB_TYPES = {
    ColumnKind.STRING: "VARCHAR",
    ColumnKind.BIGINT: "BIGINT",
    ColumnKind.DOUBLE: "DOUBLE",
    ColumnKind.TIME: _TIMESTAMPTZ,
    ColumnKind.MAP: _MAP_TYPE,
}
_LINEAGE_COLUMNS = (
    (UNPARSED_MAPS, _MAP_TYPE),
    (EXTRA_COLUMNS, _MAP_TYPE),
    ("_partition_key", "VARCHAR"),
    ("_source_part", "VARCHAR"),
    ("_loaded_at", _TIMESTAMPTZ),
)


class LoadStatus(str, Enum):
    """What a load attempt came to."""

    LOADED = "LOADED"
    FAILED = "FAILED"
    NOT_EXISTS = "NOT_EXISTS"
    ERROR = "ERROR"
    RUNNING = "RUNNING"


def column_schema(event_type: EventType) -> list[tuple[str, str]]:
    """(name, DuckDB type) of every column of ``event_type``'s table, lineage columns last."""
    registry = [(column.name, _DUCKDB_TYPES[column.kind]) for column in event_type.columns]
    return registry + list(_LINEAGE_COLUMNS)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the schema, the ten tables, ledger and rejects; add registry columns added since. Idempotent.

    One transaction, retried when a concurrent run creates them at the same time.
    """
    write_transaction(conn, _ensure_schema)


def _ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    _set_lake_options(conn)
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    tables = _schema_columns(conn)
    for event_type in EVENT_TYPES.values():
        columns = column_schema(event_type)
        if event_type.name not in tables:
            definition = ", ".join(f"{_quote(name)} {sql_type}" for name, sql_type in columns)
            conn.execute(f"CREATE TABLE {event_type.table_name} ({definition})")
            # Files per partition: replacing a partition drops its files instead of writing delete files,
            # and merging small files never mixes partitions.
            conn.execute(f"ALTER TABLE {event_type.table_name} SET PARTITIONED BY (_partition_key)")
            continue
        for name, sql_type in columns:
            if name not in tables[event_type.name]:
                conn.execute(f"ALTER TABLE {event_type.table_name} ADD COLUMN {_quote(name)} {sql_type}")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
            attempt_id VARCHAR NOT NULL, event_type VARCHAR NOT NULL, partition_key VARCHAR NOT NULL,
            export_type VARCHAR, status VARCHAR NOT NULL, parts INTEGER, bytes BIGINT, rows_read BIGINT,
            rows_loaded BIGINT, rows_rejected BIGINT, unparsed_maps BIGINT, started_at TIMESTAMPTZ,
            finished_at TIMESTAMPTZ, duration_s DOUBLE, error_msg VARCHAR, {FINGERPRINT_COLUMN} VARCHAR)"""
    )
    # Ledgers made before fingerprints were kept get the column, empty for their rows.
    if FINGERPRINT_COLUMN not in ledger_columns(conn):
        conn.execute(f"ALTER TABLE {LEDGER_TABLE} ADD COLUMN {FINGERPRINT_COLUMN} VARCHAR")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {REJECTS_TABLE} (
            event_type VARCHAR NOT NULL, partition_key VARCHAR NOT NULL, source_part VARCHAR,
            row_number BIGINT, reason VARCHAR, raw_text VARCHAR, loaded_at TIMESTAMPTZ)"""
    )


def _set_lake_options(conn: duckdb.DuckDBPyConnection) -> None:
    current = dict(
        conn.execute(
            "SELECT option_name, value FROM ducklake_options(current_database()) WHERE scope = 'GLOBAL'"
        ).fetchall()
    )
    for name, value in LAKE_OPTIONS.items():
        if current.get(name) != value:
            conn.execute("CALL set_option(?, ?)", [name, value])


def _schema_columns(conn: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Each table of schema ``growingio`` with its columns, in one catalog query."""
    tables: dict[str, set[str]] = {}
    for table_name, column_name in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = ?",
        [SCHEMA],
    ).fetchall():
        tables.setdefault(table_name, set()).add(column_name)
    return tables


def table_columns(conn: duckdb.DuckDBPyConnection, table_name: str) -> set[str]:
    """The columns of table ``growingio.<table_name>``; empty when there is no such table."""
    return _schema_columns(conn).get(table_name, set())


def ledger_columns(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """The ledger's columns; empty when the lake has no ledger yet (nothing was ever loaded)."""
    return table_columns(conn, LEDGER_TABLE.removeprefix(f"{SCHEMA}."))


@dataclass(frozen=True)
class LoadSummary:
    """What one ``replace_partition`` wrote."""

    event_type: str
    partition_key: str
    rows_loaded: int
    rows_rejected: int
    parts: int
    bytes: int
    unparsed_maps: int
    """map values in ``_unparsed_maps``, counted in the table (the parser's plus those DuckDB refused)"""
    rows_read: int
    rows_in_table: int
    """the partition's rows in the table as committed"""
    rows_outside_window: int
    """of those, rows whose bucketing time falls outside the window given to ``replace_partition`` (0 without one)"""
    unknown_columns: tuple[str, ...]
    """header names the registry does not know, over all parts (kept in ``_extra_columns``)"""
    missing_columns: tuple[str, ...]
    """documented columns absent from at least one part's header (loaded as NULL)"""
    duration_s: float
    """from the start of ``replace_partition`` to the end of its work, before the commit"""


@dataclass(frozen=True)
class PartitionCounts:
    """What one partition holds in its table."""

    rows: int
    rows_outside_window: int
    """rows whose bucketing time falls outside the window counted against (0 without one)"""
    unparsed_maps: int
    """map values in ``_unparsed_maps`` (the parser's plus those DuckDB refused)"""


def count_partition(
    conn: duckdb.DuckDBPyConnection,
    event_type: EventType,
    partition_key: str,
    window: tuple[datetime, datetime] | None = None,
) -> PartitionCounts:
    """Count the partition's rows, those whose bucketing time is outside ``window`` (UTC), and their unparsed
    map values, in one scan."""
    bucket = event_type.bucket_column_name
    start, end = window or (None, None)
    [(rows, rows_outside, unparsed_maps)] = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {bucket} < $start::TIMESTAMPTZ OR {bucket} >= $end::TIMESTAMPTZ), "
        f"COALESCE(sum(cardinality(_unparsed_maps)), 0) FROM {event_type.table_name} WHERE _partition_key = $key",
        {"start": start, "end": end, "key": partition_key},
    ).fetchall()
    return PartitionCounts(rows=rows, rows_outside_window=rows_outside, unparsed_maps=int(unparsed_maps))


_STAGED_VIEW = "__growingio_staged"
_CAST_MAP = "__map_"


def _select_staged(event_type: EventType) -> str:
    """The SELECT turning the rows registered as ``_STAGED_VIEW`` (``parsing.staged_schema``) into table rows.

    Map text becomes ``MAP(VARCHAR, VARCHAR)``. A map the parser let through that DuckDB still
    refuses (duplicate keys) is kept, as text, in ``_unparsed_maps`` like the parser's own.
    """
    maps = [column.name for column in event_type.columns if column.kind is ColumnKind.MAP]
    casts = "".join(f", {_map_cast(name)} AS {_quote(_CAST_MAP + name)}" for name in maps)
    items = [
        f"{_quote(_CAST_MAP + column.name)} AS {_quote(column.name)}"
        if column.kind is ColumnKind.MAP
        else _quote(column.name)
        for column in event_type.columns
    ]
    items += [
        f"{_unparsed_maps(maps)} AS {_quote(UNPARSED_MAPS)}",
        f"CAST(CAST({_quote(EXTRA_COLUMNS)} AS JSON) AS {_MAP_TYPE}) AS {_quote(EXTRA_COLUMNS)}",
        "$partition_key AS _partition_key",
        "$source AS _source_part",
        "now() AS _loaded_at",
    ]
    return f"SELECT {', '.join(items)} FROM (SELECT *{casts} FROM {_STAGED_VIEW})"


def _map_cast(name: str) -> str:
    """The map text as ``MAP(VARCHAR, VARCHAR)``, NULL when DuckDB cannot take it.

    Duplicate keys are checked first: DuckDB 1.5.5's TRY_CAST raises "Map keys must be unique" instead of
    giving NULL (CASE evaluates the cast only for the rows that pass).
    """
    as_json = f"TRY_CAST({_quote(name)} AS JSON)"
    keys = f"json_keys({as_json})"
    return f"CASE WHEN len(list_distinct({keys})) = len({keys}) THEN TRY_CAST({as_json} AS {_MAP_TYPE}) END"


def _unparsed_maps(maps: list[str]) -> str:
    """``_unparsed_maps`` from the parser, plus the map texts DuckDB refused."""
    from_parser = f"CAST(CAST({_quote(UNPARSED_MAPS)} AS JSON) AS {_MAP_TYPE})"
    if not maps:
        return from_parser
    refused = [f"({_quote(name)} IS NOT NULL AND {_quote(_CAST_MAP + name)} IS NULL)" for name in maps]
    entries = ", ".join(
        f"{{'key': '{name}', 'value': CASE WHEN {condition} THEN {_quote(name)} END}}"
        for name, condition in zip(maps, refused, strict=True)
    )
    added = f"map_from_entries(list_filter([{entries}], lambda entry: entry.value IS NOT NULL))"
    return (
        f"CASE WHEN {' OR '.join(refused)} "
        f"THEN map_concat(COALESCE({from_parser}, CAST(MAP {{}} AS {_MAP_TYPE})), {added}) "
        f"ELSE {from_parser} END"
    )


DATA_FILE_WRITES_AT_ONCE = 2
"""Data files this process writes at once; a part waiting for its turn is not parsed yet (its download waits).

Each ``COPY`` holds its own row groups: an hour of 8 hard-to-compress parts (1,000,000 rows, 339 MB of gzip)
peaked at 1,263 MiB with all 4 downloading parts writing at once, 1,002 MiB with 2 and 889 MiB with 1, in
9.8 s, 10.2 s and 12.8 s. Two keep both cores busy.
"""
_data_file_turns = threading.BoundedSemaphore(DATA_FILE_WRITES_AT_ONCE)


@dataclass(frozen=True)
class DataFile:
    """A Parquet file of one part's table rows in its partition's folder; the table's once a commit adds it."""

    path: str
    rows: int


def write_data_file(
    conn: duckdb.DuckDBPyConnection, event_type: EventType, partition_key: str, rows: pa.RecordBatchReader, source: str
) -> DataFile:
    """Write ``rows`` (``parsing.staged_schema``) of the part ``source`` as the table's rows of ``partition_key``
    to a new data file.

    Meant as the parser's ``RowWriter`` (bind the first three arguments), so the file is written while the part is
    parsed. Safe from several threads at once: each write runs on a cursor of its own, at most
    ``DATA_FILE_WRITES_AT_ONCE`` at a time. A failed write deletes its local file; ``replace_partition`` adds
    the file to the table.
    """
    # A plain COPY, not DuckLake's insert: 1.3-1.9 s for a 1,000,000-row part against 3.3-5.0 s, and outside the
    # transaction, so other writers do not wait for it.
    with _data_file_turns, conn.cursor() as cursor:
        path = f"{_partition_folder(cursor, event_type, partition_key)}ducklake-{uuid.uuid4()}.parquet"
        copy = f"COPY ({_select_staged(event_type)}) TO {sql_literal(path)} ({_COPY_OPTIONS})"
        try:
            written = _run_over(cursor, rows, copy, {"partition_key": partition_key, "source": source})
        except BaseException:
            _remove_local(path)
            raise
    return DataFile(path=path, rows=written)


def replace_partition(
    conn: duckdb.DuckDBPyConnection,
    event_type: EventType,
    partition_key: str,
    parts: Sequence[ParsedPart[DataFile]],
    *,
    window: tuple[datetime, datetime] | None = None,
    ledger: Callable[[LoadSummary], LoadAttempt] | None = None,
) -> LoadSummary:
    """Replace the partition's rows and rejects with ``parts`` in one transaction; roll back on any error.

    The summary counts the partition's rows as committed, and those outside ``window`` (UTC). ``ledger`` makes
    the load's ledger row of the summary, committed with the rows. Zero parts empties the partition (a finished
    export with no data for the hour). On failure the parts' data files are removed unless the catalog lists
    them. A data file is added once: to load a part again, parse it again.
    """
    started = datetime.now(timezone.utc)
    data_files = [part.written.path for part in parts]

    def replace(transaction: duckdb.DuckDBPyConnection) -> LoadSummary:
        _replace_rows(transaction, event_type, partition_key, parts)
        counts = count_partition(transaction, event_type, partition_key, window)
        summary = LoadSummary(
            event_type=event_type.name,
            partition_key=partition_key,
            rows_loaded=sum(part.written.rows for part in parts),
            rows_rejected=sum(part.rows_rejected for part in parts),
            parts=len(parts),
            bytes=sum(part.size_bytes for part in parts),
            unparsed_maps=counts.unparsed_maps,
            rows_read=sum(part.rows_read for part in parts),
            rows_in_table=counts.rows,
            rows_outside_window=counts.rows_outside_window,
            unknown_columns=tuple(dict.fromkeys(name for part in parts for name in part.unknown_columns)),
            missing_columns=tuple(dict.fromkeys(name for part in parts for name in part.missing_columns)),
            duration_s=(datetime.now(timezone.utc) - started).total_seconds(),
        )
        if ledger is not None:
            _upsert_attempt(transaction, ledger(summary))
        return summary

    try:
        for part in parts:
            if part.event_type != event_type.name:
                raise ValueError(f"part {part.source} holds {part.event_type!r} rows, not {event_type.name!r}")
        return write_transaction(conn, replace)
    except BaseException:
        remove_unadded_files(conn, data_files)
        raise


def _partition_folder(conn: duckdb.DuckDBPyConnection, event_type: EventType, partition_key: str) -> str:
    """The folder (or S3 prefix) of the partition's data files, as DuckLake lays them out, ending in ``/``."""
    [(data_path, schema_path, schema_relative, table_path, table_relative)] = conn.execute(
        f"SELECT m.value, s.path, s.path_is_relative, t.path, t.path_is_relative "
        f"FROM {METADATA_DATABASE}.ducklake_table t JOIN {METADATA_DATABASE}.ducklake_schema s USING (schema_id), "
        f"{METADATA_DATABASE}.ducklake_metadata m "
        "WHERE m.key = 'data_path' AND m.scope IS NULL AND s.schema_name = ? AND t.table_name = ? "
        "AND s.end_snapshot IS NULL AND t.end_snapshot IS NULL",
        [SCHEMA, event_type.name],
    ).fetchall()
    schema_folder = data_path + schema_path if schema_relative else schema_path
    table_folder = schema_folder + table_path if table_relative else table_path
    folder = f"{table_folder}_partition_key={partition_key}/"
    if _is_local(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
    return folder


def _is_local(path: str) -> bool:
    """Whether ``path`` is on this machine's file system (not ``s3://...``)."""
    return "://" not in path


def _replace_rows(
    conn: duckdb.DuckDBPyConnection, event_type: EventType, partition_key: str, parts: Sequence[ParsedPart[DataFile]]
) -> None:
    """Delete, add the data files, replace rejects (inside the caller's transaction)."""
    conn.execute(f"DELETE FROM {event_type.table_name} WHERE _partition_key = ?", [partition_key])
    conn.execute(
        f"DELETE FROM {REJECTS_TABLE} WHERE event_type = ? AND partition_key = ?", [event_type.name, partition_key]
    )
    for part in parts:
        _add_data_file(conn, event_type, part.written.path)
        if part.rejects_path is not None:
            params = {"partition_key": partition_key, "source": part.source, "event_type": event_type.name}
            _run_over(conn, read_staged(part.rejects_path), _INSERT_REJECTS, params)


def _add_data_file(conn: duckdb.DuckDBPyConnection, event_type: EventType, path: str) -> None:
    """Make the table read ``path`` (in this transaction); the lake owns the file from then on."""
    conn.execute(
        "CALL ducklake_add_data_files(?, ?, ?, schema => ?, hive_partitioning => true)",
        [LAKE_DATABASE, event_type.name, path, SCHEMA],
    ).fetchall()


def remove_unadded_files(conn: duckdb.DuckDBPyConnection, data_files: Sequence[str]) -> None:
    """Delete the local files of ``data_files`` that the catalog does not list (a failed load's).

    A file the catalog does list stays (the commit went through after all); a file in S3, or any file
    when the catalog cannot be read, is left to maintenance (``maintenance.ORPHAN_AGE``).
    """
    local = [path for path in data_files if _is_local(path)]
    if not local:
        return
    try:
        listed = conn.execute(f"SELECT path FROM {METADATA_DATABASE}.ducklake_data_file").fetchall()
    except duckdb.Error:
        return
    listed_names = {PurePosixPath(listed_path).name for (listed_path,) in listed}  # each name holds a new UUID
    for path in local:
        if Path(path).name not in listed_names:
            _remove_local(path)


def _remove_local(path: str) -> None:
    if _is_local(path):
        Path(path).unlink(missing_ok=True)


def _count(result: duckdb.DuckDBPyConnection) -> int:
    # fetchall, not fetchone: DuckDB 2 refuses further work on a connection with an unfinished result.
    rows = result.fetchall()
    return int(rows[0][0]) if rows else 0


_INSERT_REJECTS = f"""INSERT INTO {REJECTS_TABLE} BY NAME
    SELECT $event_type AS event_type, $partition_key AS partition_key, $source AS source_part,
           row_number, reason, raw_text, now() AS loaded_at
    FROM {_STAGED_VIEW}"""


def _run_over(
    conn: duckdb.DuckDBPyConnection, rows: pa.RecordBatchReader, statement: str, params: dict[str, str]
) -> int:
    """Run ``statement`` (an INSERT or COPY) over ``rows``, registered as ``_STAGED_VIEW``; the rows it wrote."""
    conn.register(_STAGED_VIEW, rows)
    try:
        return _count(conn.execute(statement, params))
    finally:
        conn.unregister(_STAGED_VIEW)


@dataclass(frozen=True)
class LoadAttempt:
    """One ledger row: an attempt to load one event type's partition, whatever came of it.

    ``attempt_id`` identifies the row: recording the same id again replaces it (a RUNNING row
    can be updated to its outcome). ``error_msg`` must already be redacted by the caller; it is
    truncated to ``ERROR_MSG_LIMIT`` characters.
    """

    event_type: str
    partition_key: str
    export_type: str
    status: str
    started_at: datetime
    finished_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    parts: int = 0
    bytes: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    unparsed_maps: int = 0
    error_msg: str | None = None
    parts_fingerprint: str | None = None
    """of a LOADED attempt: what the parts were (``reissue.fingerprint``), to notice a re-issued export"""
    attempt_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        LoadStatus(self.status)  # a clear ValueError for an unknown status

    @property
    def duration_s(self) -> float:
        """Seconds from start to finish."""
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def loaded(
        cls, summary: LoadSummary, *, export_type: str, started_at: datetime, parts_fingerprint: str | None = None
    ) -> LoadAttempt:
        """The ledger row of a successful ``replace_partition``."""
        return cls(
            event_type=summary.event_type,
            partition_key=summary.partition_key,
            export_type=export_type,
            status=LoadStatus.LOADED.value,
            started_at=started_at,
            parts=summary.parts,
            bytes=summary.bytes,
            rows_read=summary.rows_read,
            rows_loaded=summary.rows_loaded,
            rows_rejected=summary.rows_rejected,
            unparsed_maps=summary.unparsed_maps,
            parts_fingerprint=parts_fingerprint,
        )

    @classmethod
    def unloaded(
        cls,
        *,
        event_type: str,
        partition_key: str,
        export_type: str,
        status: str,
        error_msg: str | None,
        started_at: datetime,
    ) -> LoadAttempt:
        """The ledger row of an attempt that loaded nothing (not ready, no export, failure)."""
        return cls(
            event_type=event_type,
            partition_key=partition_key,
            export_type=export_type,
            status=status,
            started_at=started_at,
            error_msg=error_msg,
        )


def record_attempt(conn: duckdb.DuckDBPyConnection, attempt: LoadAttempt) -> None:
    """Write (or replace, by ``attempt_id``) the attempt's ledger row, committed on its own.

    DuckLake has no primary keys, so the upsert is a delete and an insert in one transaction.
    """
    write_transaction(conn, lambda c: _upsert_attempt(c, attempt))


def _upsert_attempt(conn: duckdb.DuckDBPyConnection, attempt: LoadAttempt) -> None:
    error_msg = None if attempt.error_msg is None else attempt.error_msg[:ERROR_MSG_LIMIT]
    conn.execute(f"DELETE FROM {LEDGER_TABLE} WHERE attempt_id = ?", [attempt.attempt_id])
    conn.execute(
        f"""INSERT INTO {LEDGER_TABLE}
            (attempt_id, event_type, partition_key, export_type, status, parts, bytes, rows_read, rows_loaded,
             rows_rejected, unparsed_maps, started_at, finished_at, duration_s, error_msg, {FINGERPRINT_COLUMN})
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            attempt.attempt_id,
            attempt.event_type,
            attempt.partition_key,
            attempt.export_type,
            attempt.status,
            attempt.parts,
            attempt.bytes,
            attempt.rows_read,
            attempt.rows_loaded,
            attempt.rows_rejected,
            attempt.unparsed_maps,
            attempt.started_at,
            attempt.finished_at,
            attempt.duration_s,
            error_msg,
            attempt.parts_fingerprint,
        ],
    )


def table_row_counts(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows in each event type's table, by event type name."""
    return {
        name: _count(conn.execute(f"SELECT count(*) FROM {event_type.table_name}"))
        for name, event_type in EVENT_TYPES.items()
    }
