"""The vendor's CSV dialect to typed polars frames, streamed to a writer as Arrow batches.

pyarrow reads the CSV as a stream (bounded blocks, multithreaded parse) with the dialect's escape
character: the CSV the download inflates as it arrives (``parse_inflated_part``: each part is inflated
once, and parsing overlaps the network), or a gzip file on disk (``parse_part``). Every column is read
as text: no reader default turns ``NA``, ``null`` or ``1e3`` into nulls or numbers. An unquoted empty
field is NULL, a quoted one ``""``. Each Arrow batch goes to polars and is typed with vectorised casts
keyed on header names (``EventType.column_for_header``):

- bigint and double: polars' numeric parse; text that does not parse rejects the row.
- time (UTC epoch ms): an integer within years 1..9999, else the row is rejected.
- map: a flat JSON object of string (or null) values stays as its JSON text, which the warehouse
  casts to ``MAP(VARCHAR, VARCHAR)``. Anything else (``{"city"->"beijing"}``, numbers, nested
  values) is moved, exactly as written, to ``_unparsed_maps`` and counted. (A regular expression
  decides, cheaply; duplicate keys it cannot see are caught by the warehouse.)
- columns the registry does not know go to ``_extra_columns`` (JSON object text, header -> value);
  documented columns absent from the header load as NULL; both are reported.
- rows with more or fewer fields than the header, and rows with a value that does not type, go to
  the rejects frame with a reason; the other rows load.

Invalid UTF-8, a file that is not gzip, a truncated file, a header that names no documented column
(an HTML error page, say) and ambiguous headers raise :class:`ParseError` naming the part: the
caller then loads nothing for that partition.

The typed batches go, as they are made, to the caller's writer (a ``RowWriter``: the warehouse writes
them to a data file), so parsing and writing overlap; the rejects are staged to an Arrow IPC file.
"""

from __future__ import annotations

import csv
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Generic, TypeAlias, TypeVar, cast

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from growingio_pipeline.event_types import Column, ColumnKind, EventType
from growingio_pipeline.inflate import GZIP_READ_ERRORS, open_gzip
from growingio_pipeline.redaction import redact_url

BLOCK_SIZE_BYTES = 4 * 1024 * 1024
"""pyarrow's CSV block size: bounds memory. A row must fit in one block: ``parse_part`` retries larger."""

MAX_BLOCK_SIZE_BYTES = 1024 * 1024 * 1024
"""The largest block ``parse_part`` tries: rows bigger than this are refused."""

RAW_TEXT_LIMIT = 2000
"""Characters of a rejected row's text kept in the rejects."""

PREFETCH_BATCHES = 2
"""Batches read ahead in a background thread while the previous ones are typed and written."""

_HEADER_LINE_LIMIT = 1024 * 1024
_HEADER_PREVIEW = 200
_MS_MIN = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_MS_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

_NO_ROWS_AFTER_HEADER = "Empty CSV file"
"""pyarrow's error for a part with a header and no rows (its header is read before pyarrow starts)."""

UNPARSED_MAPS = "_unparsed_maps"
EXTRA_COLUMNS = "_extra_columns"

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    ColumnKind.STRING: pa.string(),
    ColumnKind.BIGINT: pa.int64(),
    ColumnKind.DOUBLE: pa.float64(),
    ColumnKind.TIME: pa.timestamp("ms", tz="UTC"),
    ColumnKind.MAP: pa.string(),
}

# A JSON object whose values are strings or null, in strict JSON: control characters must be
# escaped and \u escapes must not be lone surrogates (DuckDB's JSON rejects both).
_WS = r"[ \t\n\r]*"
_JSON_STRING = (
    r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]'
    r"|\\u(?:[0-9a-cA-CefEF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})"
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})*\""
)
_JSON_PAIR = f"{_WS}{_JSON_STRING}{_WS}:{_WS}(?:{_JSON_STRING}|null){_WS}"
_FLAT_JSON_OBJECT = f"^{_WS}\\{{(?:{_JSON_PAIR}(?:,{_JSON_PAIR})*|{_WS})\\}}{_WS}$"

# Working column names in typed frames; typed frames hold only registry names and these.
_REASON = "__reason"
_ROWS = "__rows"
_VALID_MAP = "__valid_map_"

REJECTS_SCHEMA = pl.Schema({"row_number": pl.Int64(), "reason": pl.Utf8(), "raw_text": pl.Utf8()})
"""Rejected rows: ``row_number`` counts the part's well-formed data rows from 1 (null for a row with the
wrong number of fields, whose position the multithreaded reader does not know), ``reason``, ``raw_text``."""


class ParseError(Exception):
    """A part that cannot be read at all; the message names the part and the problem."""


class RowTooLargeError(ParseError):
    """A row does not fit in the reader's block; reading again with a larger ``block_size`` helps."""


def staged_schema(event_type: EventType) -> pa.Schema:
    """Typed rows of ``event_type`` as Arrow: registry columns, then ``_unparsed_maps``, ``_extra_columns``.

    Map columns hold JSON object text; a ``RowWriter``'s batches and ``ParsedFrame.batch`` use this schema.
    """
    fields = [pa.field(column.name, _ARROW_TYPES[column.kind]) for column in event_type.columns]
    return pa.schema([*fields, pa.field(UNPARSED_MAPS, pa.string()), pa.field(EXTRA_COLUMNS, pa.string())])


def frame_schema(event_type: EventType) -> pl.Schema:
    """``staged_schema`` as polars types (``ParsedFrame.data``)."""
    return pl.DataFrame(staged_schema(event_type).empty_table()).schema


@dataclass(frozen=True)
class HeaderMap:
    """How a part's header names map onto the registry."""

    names: tuple[str, ...]
    known: dict[str, Column]
    """header name -> documented column"""
    unknown_columns: tuple[str, ...]
    missing_columns: tuple[str, ...]
    """vendor names of documented columns the header lacks"""


@dataclass(frozen=True)
class ParsedFrame:
    """One streamed batch of a part: typed rows (``staged_schema``) and the rows rejected."""

    batch: pa.RecordBatch
    rejects: pl.DataFrame
    rows_read: int
    """data rows in the batch, rejected ones included"""
    unparsed_maps: int
    unknown_columns: tuple[str, ...]
    missing_columns: tuple[str, ...]

    @property
    def data(self) -> pl.DataFrame:
        """The typed rows as a polars frame (``frame_schema``)."""
        return pl.DataFrame(self.batch)


Written = TypeVar("Written")
RowWriter: TypeAlias = Callable[[pa.RecordBatchReader, str], Written]
"""Consumes a part's typed rows (``staged_schema``) as they are parsed, with the part's redacted source; what it
returns is kept in the part."""


@dataclass(frozen=True)
class ParsedPart(Generic[Written]):
    """One downloaded part, parsed: what its writer made of its rows, and its rejects staged to Arrow IPC."""

    event_type: str
    source: str
    written: Written
    """what the ``RowWriter`` returned"""
    rows_read: int
    rows_rejected: int
    unparsed_maps: int
    """map values that are not JSON objects of strings (the warehouse may refuse more: duplicate keys)"""
    unknown_columns: tuple[str, ...]
    missing_columns: tuple[str, ...]
    size_bytes: int
    rejects_path: Path | None = None
    """rejects (``REJECTS_SCHEMA``, Arrow IPC); None when the part had none"""


def _map_header_line(event_type: EventType, first_line: bytes, label: str) -> HeaderMap:
    """Decode, split and map a part's header line."""
    try:
        text = first_line.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        raise ParseError(f"part {label}: header is not valid UTF-8 ({error})") from None
    if not text.strip():
        raise ParseError(f"part {label}: empty file, no header line")
    try:
        names = tuple(next(csv.reader([text.rstrip("\r\n")], escapechar="\\", doublequote=False)))
    except csv.Error as error:
        raise ParseError(f"part {label}: unreadable header line ({error})") from None
    return _map_header(event_type, names, label)


def _map_header(event_type: EventType, names: tuple[str, ...], label: str) -> HeaderMap:
    known: dict[str, Column] = {}
    unknown: list[str] = []
    for name in names:
        column = event_type.column_for_header(name)
        if column is None:
            unknown.append(name)
        elif column in known.values():
            raise ParseError(f"part {label}: header names column {column.vendor_name!r} twice ({name!r})")
        else:
            known[name] = column
    if not known:
        preview = ",".join(names)[:_HEADER_PREVIEW]
        raise ParseError(f"part {label}: header matches no {event_type.name} column (not an export CSV?): {preview!r}")
    if len(set(unknown)) != len(unknown):
        raise ParseError(f"part {label}: header repeats an unknown column name: {unknown!r}")
    present = set(known.values())
    missing = tuple(column.vendor_name for column in event_type.columns if column not in present)
    return HeaderMap(names=names, known=known, unknown_columns=tuple(unknown), missing_columns=missing)


def read_frames(
    event_type: EventType, gz_path: Path, *, source: str, block_size: int = BLOCK_SIZE_BYTES
) -> Iterator[ParsedFrame]:
    """Stream a gzip CSV part as typed frames with their rejects; at least one frame, maybe empty.

    Raises :class:`RowTooLargeError` for a row larger than ``block_size`` bytes.
    """
    label = redact_url(source)
    with ExitStack() as opened:
        try:
            csv_stream = opened.enter_context(open_gzip(gz_path))
            first_line = csv_stream.readline(_HEADER_LINE_LIMIT)
        except GZIP_READ_ERRORS as error:
            raise ParseError(f"part {label}: not a readable gzip file ({error})") from None
        header = _map_header_line(event_type, first_line, label)
        yield from _typed_frames(event_type, header, _arrow_batches(csv_stream, header, label, block_size))


def read_inflated_frames(
    event_type: EventType, csv_stream: BinaryIO, *, source: str, block_size: int = BLOCK_SIZE_BYTES
) -> Iterator[ParsedFrame]:
    """:func:`read_frames` for a part's CSV already inflated, as a stream with ``readline`` (header first)."""
    label = redact_url(source)
    header = _map_header_line(event_type, csv_stream.readline(_HEADER_LINE_LIMIT), label)
    return _typed_frames(event_type, header, _arrow_batches(csv_stream, header, label, block_size))


def _typed_frames(
    event_type: EventType, header: HeaderMap, batches: Generator[tuple[pa.RecordBatch | None, list[str]], None, None]
) -> Iterator[ParsedFrame]:
    rows_before = 0
    yielded = False
    # Reading and CSV parsing run ahead in a thread (pyarrow releases the GIL) while this thread
    # types the previous batch for the writer: the two cores overlap instead of taking turns.
    for batch, invalid_rows in _prefetched(batches, PREFETCH_BATCHES):
        yield _type_batch(event_type, header, batch, invalid_rows, rows_before)
        rows_before += 0 if batch is None else batch.num_rows
        yielded = True
    if not yielded:
        yield _type_batch(event_type, header, None, [], rows_before)


_Item = TypeVar("_Item")


def _prefetched(items: Generator[_Item, None, None], depth: int) -> Iterator[_Item]:
    """``items``, produced in a background thread up to ``depth`` ahead; its exceptions re-raised here."""
    # Each hand-over is (more items follow, the item or None, the producer's exception or None).
    handoff: queue.Queue[tuple[bool, _Item | None, BaseException | None]] = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def hand_over(entry: tuple[bool, _Item | None, BaseException | None]) -> bool:
        while not stopped.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over((True, item, None)):
                    return
            hand_over((False, None, None))
        except BaseException as error:
            hand_over((False, None, error))
        finally:
            items.close()

    producer = threading.Thread(target=produce, name="growingio-csv-reader", daemon=True)
    producer.start()
    try:
        while True:
            more, item, error = handoff.get()
            if error is not None:
                raise error
            if not more:
                return
            yield cast(_Item, item)
    finally:
        stopped.set()
        producer.join()


def _arrow_batches(
    csv_stream: BinaryIO, header: HeaderMap, label: str, block_size: int
) -> Generator[tuple[pa.RecordBatch | None, list[str]], None, None]:
    """The part's Arrow batches of text, each with the malformed rows reported since the previous one.

    ``csv_stream`` is the part's inflated CSV, already past the header line. A last ``(None, rows)``
    carries malformed rows reported after the last batch.
    """
    invalid_rows: deque[str] = deque()  # appended from pyarrow's threads, drained here

    def drain() -> list[str]:
        drained = []
        while invalid_rows:
            drained.append(invalid_rows.popleft())
        return drained

    def collect_invalid(row: pacsv.InvalidRow) -> str:
        invalid_rows.append(f"expected {row.expected_columns} fields, found {row.actual_columns}\0{row.text}")
        return "skip"

    # The header is already read and mapped: named here, so that the reader takes no other view of it.
    read_options = pacsv.ReadOptions(
        block_size=block_size,
        use_threads=True,
        column_names=list(header.names),
    )
    parse_options = pacsv.ParseOptions(
        delimiter=",",
        quote_char='"',
        escape_char="\\",
        double_quote=False,
        newlines_in_values=True,
        invalid_row_handler=collect_invalid,
    )
    convert_options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header.names},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        check_utf8=True,
    )
    try:
        try:
            reader = pacsv.open_csv(
                csv_stream,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
        except pa.ArrowInvalid as error:
            if str(error) == _NO_ROWS_AFTER_HEADER:
                return
            raise
        for batch in reader:
            yield batch, drain()
        if invalid_rows:
            yield None, drain()
    except (pa.ArrowException, *GZIP_READ_ERRORS) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "straddling" in message or "block size" in message:
            raise RowTooLargeError(f"part {label}: a row is over {block_size} bytes ({message})") from None
        if "UTF8" in message or "UTF-8" in message:
            raise ParseError(f"part {label}: invalid UTF-8 text ({message})") from None
        raise ParseError(f"part {label}: {message}") from None


def _type_batch(
    event_type: EventType,
    header: HeaderMap,
    batch: pa.RecordBatch | None,
    invalid_rows: list[str],
    rows_before: int,
) -> ParsedFrame:
    """Type one batch; rows whose typed values are null where text was present become rejects.

    String columns pass through as the reader's Arrow arrays; only the columns that need work
    (numbers, times, maps, unknown columns) go through polars.
    """
    if batch is None:
        text_schema = pa.schema([pa.field(name, pa.string()) for name in header.names])
        batch = pa.RecordBatch.from_pylist([], schema=text_schema)
    typed_exprs, reason_exprs = _typing_exprs(event_type, header)
    reason = pl.concat_str(reason_exprs, separator="; ", ignore_nulls=True) if reason_exprs else pl.lit("")
    typed = (
        _polars_source(batch, header)
        .lazy()
        .with_columns(*typed_exprs, reason.alias(_REASON))
        .select(*(expr.meta.output_name() for expr in typed_exprs), _REASON)
        .collect()
    )
    rejected = typed.get_column(_REASON) != ""
    rejects = pl.DataFrame(schema=REJECTS_SCHEMA)
    if rejected.any():
        rejects = _rejects(batch, typed.get_column(_REASON), rejected, rows_before)
        batch = batch.filter(pa.array(~rejected))
        typed = typed.filter(~rejected)
    if invalid_rows:
        rejects = pl.concat([rejects, _invalid_row_rejects(invalid_rows)])
    typed, unparsed = _move_unparsed_maps(typed)
    return ParsedFrame(
        batch=_assemble(event_type, header, batch, typed),
        rejects=rejects,
        rows_read=len(rejected) + len(invalid_rows),
        unparsed_maps=unparsed,
        unknown_columns=header.unknown_columns,
        missing_columns=header.missing_columns,
    )


def _polars_source(batch: pa.RecordBatch, header: HeaderMap) -> pl.DataFrame:
    """The columns polars types or encodes: all but the documented string ones.

    With none of them, one placeholder column keeps the batch's height (a frame without columns has none).
    """
    names = [
        name for name in header.names if name not in header.known or header.known[name].kind is not ColumnKind.STRING
    ]
    if not names:
        return pl.DataFrame(pa.RecordBatch.from_arrays([pa.nulls(batch.num_rows, pa.bool_())], names=[_ROWS]))
    return pl.DataFrame(batch.select(names))


def _assemble(event_type: EventType, header: HeaderMap, strings: pa.RecordBatch, typed: pl.DataFrame) -> pa.RecordBatch:
    """The typed batch: string columns from the reader, the rest from the typed polars frame."""
    schema = staged_schema(event_type)
    header_of = {column.name: name for name, column in header.known.items()}
    arrays = []
    for schema_field in schema:
        name = header_of.get(schema_field.name)
        if schema_field.name in typed.columns:
            arrays.append(typed.get_column(schema_field.name).to_arrow().cast(schema_field.type))
        elif name is not None:
            arrays.append(strings.column(name))
        else:
            arrays.append(pa.nulls(strings.num_rows, schema_field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _typing_exprs(event_type: EventType, header: HeaderMap) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """Expressions for the non-string columns present, a validity flag per map column, the reject reasons."""
    header_of = {column.name: name for name, column in header.known.items()}
    typed: list[pl.Expr] = [_extra_columns(header).alias(EXTRA_COLUMNS)]
    reasons: list[pl.Expr] = []
    for column in event_type.columns:
        name = header_of.get(column.name)
        if name is None or column.kind is ColumnKind.STRING:
            continue
        text = pl.col(name)
        if column.kind is ColumnKind.MAP:
            typed += [text.alias(column.name), _is_flat_json_object(text).alias(_VALID_MAP + column.name)]
            continue
        value, bad = _typed_value(column.kind, text)
        typed.append(value.alias(column.name))
        problem = pl.concat_str(pl.lit(f"{name}: {_KIND_PROBLEM[column.kind]}: "), text.str.slice(0, 60))
        reasons.append(pl.when(bad).then(problem))
    return typed, reasons


def _move_unparsed_maps(typed: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Null map values that are not usable maps, keeping their text in ``_unparsed_maps``; count them."""
    flags = [name for name in typed.columns if name.startswith(_VALID_MAP)]
    unparsed = int(typed.select(pl.sum_horizontal(~pl.col(flag) for flag in flags).sum()).item() if flags else 0)
    if not unparsed:
        return typed.with_columns(pl.lit(None, pl.Utf8).alias(UNPARSED_MAPS)), 0
    map_names = [flag.removeprefix(_VALID_MAP) for flag in flags]
    members = [_json_member(name, pl.when(~pl.col(_VALID_MAP + name)).then(pl.col(name))) for name in map_names]
    moved = typed.with_columns(
        _json_object(members).alias(UNPARSED_MAPS),
        *(pl.when(pl.col(_VALID_MAP + name)).then(pl.col(name)).alias(name) for name in map_names),
    )
    return moved, unparsed


_KIND_PROBLEM = {
    ColumnKind.BIGINT: "not an integer",
    ColumnKind.DOUBLE: "not a number",
    ColumnKind.TIME: "not epoch milliseconds in years 1..9999",
}


def _typed_value(kind: ColumnKind, text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The typed value of a number or time column, and when it makes the row a reject."""
    if kind is ColumnKind.BIGINT:
        value = text.cast(pl.Int64, strict=False)
    elif kind is ColumnKind.DOUBLE:
        value = text.cast(pl.Float64, strict=False)
    else:
        millis = text.cast(pl.Int64, strict=False)
        millis = pl.when(millis.is_between(_MS_MIN, _MS_MAX)).then(millis)
        value = millis.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    return value, text.is_not_null() & value.is_null()


def _is_flat_json_object(text: pl.Expr) -> pl.Expr:
    """True for JSON object text whose values are strings or null; null stays null."""
    return text.str.contains(_FLAT_JSON_OBJECT)


def _json_member(key: str, value: pl.Expr) -> pl.Expr:
    """``"key":"value"`` JSON text, or null when ``value`` is null."""
    encoded = pl.struct(value.alias(key)).struct.json_encode()
    return pl.when(value.is_not_null()).then(encoded.str.slice(1, encoded.str.len_chars() - 2))


def _json_object(members: list[pl.Expr]) -> pl.Expr:
    """A JSON object of the non-null members, or null when there are none."""
    if not members:
        return pl.lit(None, pl.Utf8)
    body = pl.concat_str(members, separator=",", ignore_nulls=True)
    return pl.when(body != "").then(pl.concat_str(pl.lit("{"), body, pl.lit("}")))


def _extra_columns(header: HeaderMap) -> pl.Expr:
    """Unknown columns as a JSON object (null values kept as JSON null), or null with none."""
    if not header.unknown_columns:
        return pl.lit(None, pl.Utf8)
    return pl.struct([pl.col(name) for name in header.unknown_columns]).struct.json_encode()


def _rejects(batch: pa.RecordBatch, reasons: pl.Series, rejected: pl.Series, rows_before: int) -> pl.DataFrame:
    """Rejected typed rows: their ordinal, reason, and raw fields as JSON (header -> text)."""
    raw = pl.DataFrame(batch.filter(pa.array(rejected)))
    raw_text = pl.struct(raw.columns).struct.json_encode().str.slice(0, RAW_TEXT_LIMIT)
    return pl.DataFrame(
        {
            "row_number": rejected.arg_true().cast(pl.Int64) + (rows_before + 1),
            "reason": reasons.filter(rejected),
            "raw_text": raw.select(raw_text).to_series(),
        },
        schema=REJECTS_SCHEMA,
    )


def _invalid_row_rejects(invalid_rows: list[str]) -> pl.DataFrame:
    reasons, texts = zip(*(row.split("\0", 1) for row in invalid_rows), strict=True)
    return pl.DataFrame(
        {
            "row_number": [None] * len(invalid_rows),
            "reason": list(reasons),
            "raw_text": [text[:RAW_TEXT_LIMIT] for text in texts],
        },
        schema=REJECTS_SCHEMA,
    )


def parse_part(
    event_type: EventType,
    gz_path: Path,
    *,
    source: str,
    staging_dir: Path,
    write: RowWriter[Written],
    block_size: int = BLOCK_SIZE_BYTES,
) -> ParsedPart[Written]:
    """Parse one gzip CSV part, streaming its typed rows to ``write`` and its rejects to ``staging_dir``.

    A row larger than the block is read again with blocks four times larger, up to
    ``MAX_BLOCK_SIZE_BYTES``: ``write`` is called again, and what it wrote of the first attempt is its own to
    discard (it saw the error).
    """
    while True:
        try:
            frames = read_frames(event_type, gz_path, source=source, block_size=block_size)
            return _write_frames(event_type, frames, gz_path, source, staging_dir, write)
        except RowTooLargeError:
            if block_size >= MAX_BLOCK_SIZE_BYTES:
                raise
            block_size = min(block_size * 4, MAX_BLOCK_SIZE_BYTES)


def parse_inflated_part(
    event_type: EventType,
    csv_stream: BinaryIO,
    *,
    gz_path: Path,
    source: str,
    staging_dir: Path,
    write: RowWriter[Written],
) -> ParsedPart[Written]:
    """:func:`parse_part` for a part read as it downloads: ``csv_stream`` is its inflated CSV, and ``gz_path``
    where the gzip file is once the stream has ended.

    A row larger than the block raises :class:`RowTooLargeError` (the stream cannot be read again):
    :func:`parse_part` of the file, with ``block_size=LARGER_BLOCK_SIZE_BYTES``, takes over.
    """
    frames = read_inflated_frames(event_type, csv_stream, source=source)
    return _write_frames(event_type, frames, gz_path, source, staging_dir, write)


LARGER_BLOCK_SIZE_BYTES = BLOCK_SIZE_BYTES * 4
"""Where :func:`parse_part` starts when :func:`parse_inflated_part` met a row too large for its block."""


@dataclass
class _Tally:
    """What the frames of one part said besides their rows, gathered as the writer consumes them."""

    rows_read: int = 0
    unparsed_maps: int = 0
    rejects: list[pl.DataFrame] = field(default_factory=list)
    unknown_columns: tuple[str, ...] = ()
    missing_columns: tuple[str, ...] = ()
    error: BaseException | None = None

    def batches(self, frames: Iterator[ParsedFrame]) -> Generator[pa.RecordBatch, None, None]:
        """The frames' non-empty batches; the rest of each frame is counted here, and an error kept."""
        try:
            for frame in frames:
                self.rows_read += frame.rows_read
                self.unparsed_maps += frame.unparsed_maps
                self.unknown_columns, self.missing_columns = frame.unknown_columns, frame.missing_columns
                if frame.rejects.height:
                    self.rejects.append(frame.rejects)
                if frame.batch.num_rows:
                    yield frame.batch
        except GeneratorExit:
            raise
        except BaseException as error:
            self.error = error
            raise


def _write_frames(
    event_type: EventType,
    frames: Iterator[ParsedFrame],
    gz_path: Path,
    source: str,
    staging_dir: Path,
    write: RowWriter[Written],
) -> ParsedPart[Written]:
    tally = _Tally()
    batches = tally.batches(frames)
    label = redact_url(source)
    try:
        written = write(pa.RecordBatchReader.from_batches(staged_schema(event_type), batches), label)
    except BaseException:
        # The writer sees the parser's error wrapped in its own (DuckDB's, say); the caller gets the original.
        if tally.error is not None:
            raise tally.error from None
        raise
    finally:
        batches.close()
    if tally.error is not None:  # a writer that swallowed the error must not pass for a whole part
        raise tally.error
    rejects_path = staging_dir / f"{event_type.name}.{gz_path.name}.rejects.arrow"
    rejected = pl.concat(tally.rejects) if tally.rejects else None
    if rejected is not None:
        staging_dir.mkdir(parents=True, exist_ok=True)
        rejected.write_ipc(rejects_path)
    return ParsedPart(
        event_type=event_type.name,
        source=label,
        written=written,
        rows_read=tally.rows_read,
        rows_rejected=0 if rejected is None else rejected.height,
        unparsed_maps=tally.unparsed_maps,
        unknown_columns=tally.unknown_columns,
        missing_columns=tally.missing_columns,
        size_bytes=gz_path.stat().st_size,
        rejects_path=None if rejected is None else rejects_path,
    )


def read_staged(path: Path) -> pa.RecordBatchReader:
    """Stream a staged Arrow IPC file batch by batch (memory stays at about one batch)."""
    source = pa.OSFile(str(path))
    reader = pa.ipc.open_file(source)

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for index in range(reader.num_record_batches):
                yield reader.get_batch(index)
        finally:
            source.close()

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
