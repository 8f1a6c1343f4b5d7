"""Loading one export partition: request and wait, download, parse and write data files as the parts arrive,
then one short transaction per type, each attempt in the ledger.

Free of Dagster, so it can be reused alone (:func:`load_partition`); the Dagster assets turn its result into
materializations and check results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import BinaryIO

import duckdb
import pyarrow as pa

from growingio_pipeline.event_types import EventType
from growingio_pipeline.export_api import ExportClient, ExportResult, ExportStatus, ExportStillRunning
from growingio_pipeline.parsing import (
    LARGER_BLOCK_SIZE_BYTES,
    ParsedPart,
    RowTooLargeError,
    RowWriter,
    parse_inflated_part,
    parse_part,
)
from growingio_pipeline.redaction import redact_url
from growingio_pipeline.reissue import fingerprint
from growingio_pipeline.staging import staging_directory
from growingio_pipeline.warehouse import (
    DataFile,
    LoadAttempt,
    LoadStatus,
    LoadSummary,
    ensure_schema,
    record_attempt,
    remove_unadded_files,
    replace_partition,
    write_data_file,
)

ConnectionFactory = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
"""Opens a short-lived warehouse connection, closed on exit (how it connects is the caller's business)."""

PREVIEW_ROWS = 5


@dataclass(frozen=True)
class PartitionAttempt:
    """One run's attempt at one partition: what all its ledger rows share."""

    export_type: str
    partition_key: str
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class StagedType:
    """One event type's parts of one partition, downloaded and parsed into data files, ready to commit."""

    event_type: EventType
    parts: tuple[ParsedPart[DataFile], ...]
    started_at: datetime
    parts_fingerprint: str | None = None
    """what the downloaded parts were (``reissue.fingerprint``), recorded with the load"""


@dataclass(frozen=True)
class PartitionVerification:
    """Counts the checks compare: the partition's rows as committed, and what the load read and rejected."""

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
    table_rows: int
    """Rows in the whole table after the commit, every partition together."""
    preview: tuple[tuple[object, ...], ...] = ()
    """The partition's first rows (documented columns), read after the commit."""


@dataclass(frozen=True)
class PartitionLoad:
    """What :func:`load_partition` came to; every attempt it made is already in the ledger.

    ``export`` is None when the API never answered usably. ``loads`` holds the types written, in order.
    ``failure`` is what stopped the load (the caller re-raises it): the types after it were not written.
    """

    attempt: PartitionAttempt
    export: ExportResult | None
    loads: tuple[TypeLoad, ...] = ()
    failure: Exception | None = None

    @property
    def unloaded_status(self) -> LoadStatus | None:
        """NOT_EXISTS or ERROR when the export had nothing to load; None otherwise."""
        if self.export is None or self.export.status is ExportStatus.FINISHED:
            return None
        return LoadStatus(self.export.status.value)


def load_partition(
    client: ExportClient,
    connect: ConnectionFactory,
    staging_root: Path,
    attempt: PartitionAttempt,
    event_types: Sequence[EventType],
    window: tuple[datetime, datetime],
) -> PartitionLoad:
    """Load ``event_types`` of one partition: wait for the export, stage every type, then write each.

    Each type is written in its own transaction, so a failure leaves the failing type and those not yet
    written exactly as they were. Every failure is handled here, once: a RUNNING export past the polling
    deadline gets RUNNING ledger rows (``failure`` is :class:`ExportStillRunning`), any other failure FAILED
    rows for the types it stopped: all of them before writing starts, else the one being written.
    """
    export: ExportResult | None = None
    loads: list[TypeLoad] = []
    unfinished: Sequence[EventType] = event_types
    try:
        export = client.wait_for_export(attempt.export_type, attempt.partition_key)
        if export.status is not ExportStatus.FINISHED:
            _record_unloaded(connect, attempt, event_types, LoadStatus(export.status.value), export.error_msg)
            return PartitionLoad(attempt, export)
        with (
            staging_directory(staging_root) as workdir,
            ExitStack() as opened,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="growingio-lake-open") as opener,
        ):
            # The lake connection opens (extensions, catalog, schema check) while the first parts download.
            data_files = DataFiles(opener.submit(_open_for_writing, connect, opened).result, attempt.partition_key)
            try:
                staged = [
                    stage_event_type(client, export, event_type, workdir, data_files) for event_type in event_types
                ]
                for staged_type in staged:
                    unfinished = [staged_type.event_type]
                    loads.append(write_staged(data_files.connection(), staged_type, attempt, window))
            except BaseException:
                data_files.remove_unadded()
                raise
    except Exception as failure:
        status = LoadStatus.RUNNING if isinstance(failure, ExportStillRunning) else LoadStatus.FAILED
        _record_unloaded(connect, attempt, unfinished, status, str(failure))
        return PartitionLoad(attempt, export, tuple(loads), failure)
    return PartitionLoad(attempt, export, tuple(loads))


def _open_for_writing(connect: ConnectionFactory, opened: ExitStack) -> duckdb.DuckDBPyConnection:
    """A connection from ``connect``, closed with ``opened``, on a lake whose tables are in place."""
    conn = opened.enter_context(connect())
    ensure_schema(conn)
    return conn


def _record_unloaded(
    connect: ConnectionFactory,
    attempt: PartitionAttempt,
    event_types: Sequence[EventType],
    status: LoadStatus,
    error_msg: str,
) -> None:
    with connect() as conn:
        ensure_schema(conn)
        record_unloaded(conn, attempt, event_types, status, error_msg)


@dataclass
class DataFiles:
    """Writes parts' rows to the partition's data files on the write connection, and remembers every file.

    ``connection`` gives the connection, waiting for it to open; the files a failed load leaves unadded are
    removed with ``remove_unadded``.
    """

    connection: Callable[[], duckdb.DuckDBPyConnection]
    partition_key: str
    paths: list[str] = field(default_factory=list)

    def writer(self, event_type: EventType) -> RowWriter[DataFile]:
        """The parser's writer for the parts of ``event_type``."""

        def write(rows: pa.RecordBatchReader, source: str) -> DataFile:
            data_file = write_data_file(self.connection(), event_type, self.partition_key, rows, source)
            self.paths.append(data_file.path)
            return data_file

        return write

    def remove_unadded(self) -> None:
        """Delete the local files written here that no commit added."""
        if self.paths:
            remove_unadded_files(self.connection(), self.paths)


def stage_event_type(
    client: ExportClient, export: ExportResult, event_type: EventType, workdir: Path, data_files: DataFiles
) -> StagedType:
    """Download every part of ``event_type`` in ``export``, parsing each into a data file as it arrives."""
    started_at = datetime.now(timezone.utc)
    type_dir = workdir / event_type.name
    type_dir.mkdir(parents=True, exist_ok=True)
    read = partial(_parse_as_it_downloads, event_type, type_dir, data_files)
    downloaded = client.download_and_read_parts(export, event_type.name, type_dir, read)
    parts = tuple(
        parsed
        or parse_part(
            event_type,
            part.path,
            source=_part_label(part.source),
            staging_dir=type_dir,
            write=data_files.writer(event_type),
            block_size=LARGER_BLOCK_SIZE_BYTES,
        )
        for part, parsed in downloaded
    )
    return StagedType(
        event_type=event_type,
        parts=parts,
        started_at=started_at,
        parts_fingerprint=fingerprint(part.version for part, _ in downloaded),
    )


def _parse_as_it_downloads(
    event_type: EventType, type_dir: Path, data_files: DataFiles, gz_path: Path, source: str, csv_stream: BinaryIO
) -> ParsedPart[DataFile] | None:
    """The part parsed from its download stream; None for a row too large for the stream's block (the caller
    parses the file again, with larger blocks)."""
    try:
        return parse_inflated_part(
            event_type,
            csv_stream,
            gz_path=gz_path,
            source=_part_label(source),
            staging_dir=type_dir,
            write=data_files.writer(event_type),
        )
    except RowTooLargeError:
        return None


def _part_label(source: str) -> str:
    # The file's path names the part; the host varies (CDN, on-premise, local server port).
    return redact_url(source, keep_host=False)


def write_staged(
    conn: duckdb.DuckDBPyConnection,
    staged: StagedType,
    attempt: PartitionAttempt,
    window: tuple[datetime, datetime],
) -> TypeLoad:
    """Replace the partition's rows and record the attempt in one transaction, then read the table back."""
    ledger_row = partial(
        LoadAttempt.loaded,
        export_type=attempt.export_type,
        started_at=staged.started_at,
        parts_fingerprint=staged.parts_fingerprint,
    )
    summary = replace_partition(
        conn, staged.event_type, attempt.partition_key, staged.parts, window=window, ledger=ledger_row
    )
    verification = PartitionVerification(
        rows_read=summary.rows_read,
        rows_in_table=summary.rows_in_table,
        rows_rejected=summary.rows_rejected,
        rows_outside_window=summary.rows_outside_window,
    )
    [(table_rows,)] = conn.execute(f"SELECT count(*) FROM {staged.event_type.table_name}").fetchall()
    preview = _preview_rows(conn, staged.event_type, attempt.partition_key)
    return TypeLoad(staged=staged, summary=summary, verification=verification, table_rows=table_rows, preview=preview)


def _preview_rows(
    conn: duckdb.DuckDBPyConnection, event_type: EventType, partition_key: str
) -> tuple[tuple[object, ...], ...]:
    rows = conn.execute(
        f"SELECT {', '.join(event_type.column_names)} FROM {event_type.table_name} "
        f"WHERE _partition_key = ? LIMIT {PREVIEW_ROWS}",
        [partition_key],
    ).fetchall()
    return tuple(tuple(row) for row in rows)


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
