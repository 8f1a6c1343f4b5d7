"""Write frames in the vendor's CSV dialect and split them into gzip parts.

The dialect (Spark-style, not RFC 4180): separator ``,``, quote ``"``, escape ``\\``.
A quoted value escapes ``"`` as ``\\"`` and ``\\`` as ``\\\\``; a NULL is an empty unquoted
field; an empty string is written ``""``; rows end with ``\\n``.

Parts are compressed pigz-style: rows are cut into blocks, each block is written and deflated
on its own (two threads: polars and zlib release the GIL), and blocks are joined into gzip files
of about ``part_size_bytes`` compressed bytes, each starting with the header line.
"""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

DEFAULT_PART_SIZE_BYTES = 64 * 1024 * 1024
DEFAULT_COMPRESSLEVEL = 1
"""Level 1: on 1M page rows, 3.8x smaller at half the CPU time of level 6 (4.5x smaller)."""
_MAX_BLOCK_BYTES = 4 * 1024 * 1024
_SAMPLE_ROWS = 2000
_SPECIAL_CHARACTERS = [",", '"', "\\", "\r", "\n"]
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, no mtime: deterministic bytes
_FINAL_EMPTY_BLOCK = zlib.compressobj(wbits=-15).flush(zlib.Z_FINISH)


def header_line(frame: pl.DataFrame) -> bytes:
    """The header line: the frame's column names, comma-separated, ending with ``\\n``."""
    return (",".join(frame.columns) + "\n").encode()


def _dialect_text(values: pl.Series) -> pl.Series:
    """Text values as dialect fields: unchanged when safe, quoted and escaped when needed; nulls stay null.

    Only the values that need quoting are escaped (gather, escape, scatter back).
    """
    needs_quotes = (values.str.contains_any(_SPECIAL_CHARACTERS) | (values.str.len_bytes() == 0)).fill_null(False)
    rows = needs_quotes.arg_true()
    if not len(rows):
        return values
    chosen = values.gather(rows)
    escaped = chosen.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    return values.clone().scatter(rows, '"' + escaped + '"')  # scatter works in place: keep the caller's data


def _dialect_column(values: pl.Series) -> pl.Series:
    """One column as dialect fields; an Enum column is escaped once per category."""
    if isinstance(values.dtype, pl.Enum):
        categories = values.dtype.categories
        escaped = _dialect_text(categories)
        if escaped.equals(categories):
            return values  # polars writes Enum values as their text
        return escaped.gather(values.to_physical()).alias(values.name)
    return _dialect_text(values.cast(pl.Utf8))


def _dialect_fields(frame: pl.DataFrame) -> pl.DataFrame:
    if not frame.columns:
        raise ValueError("cannot write a CSV with no columns")
    return pl.DataFrame([_dialect_column(frame.get_column(name)) for name in frame.columns])


def _written(fields: pl.DataFrame) -> bytes:
    """Dialect fields as CSV rows (no header); polars must write them verbatim."""
    buffer = io.BytesIO()
    fields.write_csv(buffer, include_header=False, quote_style="never", null_value="", line_terminator="\n")
    return buffer.getvalue()


def to_csv_text(frame: pl.DataFrame) -> bytes:
    """The whole frame as uncompressed dialect CSV (header line first), UTF-8."""
    return header_line(frame) + _written(_dialect_fields(frame))


@dataclass(frozen=True)
class _Block:
    """Rows deflated on their own, ending byte-aligned so blocks can be concatenated."""

    deflated: bytes
    crc: int
    raw_size: int


def _deflate_block(data: bytes, compresslevel: int) -> _Block:
    compressor = zlib.compressobj(compresslevel, zlib.DEFLATED, -15)
    deflated = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return _Block(deflated, zlib.crc32(data), len(data))


def _gzip_file(blocks: list[_Block]) -> bytes:
    """Join independently deflated blocks into one complete gzip file."""
    crc = 0
    size = 0
    for block in blocks:
        crc = _crc32_combine(crc, block.crc, block.raw_size)
        size += block.raw_size
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return b"".join([_GZIP_HEADER, *(block.deflated for block in blocks), _FINAL_EMPTY_BLOCK, trailer])


def _rows_per_block(fields: pl.DataFrame, part_size_bytes: int) -> int:
    """Rows in a block of about min(part size, 4 MiB) raw bytes, judged from a sample."""
    sample = fields.head(_SAMPLE_ROWS)
    bytes_per_row = max(1.0, len(_written(sample)) / max(1, sample.height))
    return max(1, int(min(_MAX_BLOCK_BYTES, part_size_bytes) / bytes_per_row))


def write_csv_parts(
    frame: pl.DataFrame,
    part_size_bytes: int = DEFAULT_PART_SIZE_BYTES,
    compresslevel: int = DEFAULT_COMPRESSLEVEL,
) -> list[bytes]:
    """The frame as dialect CSV in gzip parts of about ``part_size_bytes`` compressed bytes each.

    Every part is a complete gzip file whose text starts with the header line; rows are never
    split across parts. A part exceeds the size by at most one block (~4 MiB raw). An empty
    frame gives one part holding only the header. Columns may be text or ``pl.Enum``.
    """
    if part_size_bytes < 1:
        raise ValueError(f"part_size_bytes must be positive, got {part_size_bytes}")
    if not 0 <= compresslevel <= 9:
        raise ValueError(f"compresslevel must be 0..9, got {compresslevel}")
    fields = _dialect_fields(frame)
    header = _deflate_block(header_line(frame), compresslevel)
    rows_per_block = _rows_per_block(fields, part_size_bytes)

    def block(start: int) -> _Block:
        return _deflate_block(_written(fields.slice(start, rows_per_block)), compresslevel)

    with ThreadPoolExecutor(max_workers=2) as pool:
        blocks = list(pool.map(block, range(0, fields.height, rows_per_block)))
    parts: list[bytes] = []
    current: list[_Block] = [header]
    current_size = len(header.deflated)
    for next_block in blocks:
        if len(current) > 1 and current_size + len(next_block.deflated) > part_size_bytes:
            parts.append(_gzip_file(current))
            current, current_size = [header], len(header.deflated)
        current.append(next_block)
        current_size += len(next_block.deflated)
    parts.append(_gzip_file(current))
    return parts


# --- crc32_combine: zlib's algorithm (1.2.12+), which Python's zlib module does not expose --------

_CRC32_POLYNOMIAL = 0xEDB88320  # reflected


def _multiply_mod_polynomial(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (reflected bit order)."""
    product = 0
    mask = 1 << 31
    while True:
        if a & mask:
            product ^= b
            if not a & (mask - 1):
                return product
        mask >>= 1
        b = (b >> 1) ^ _CRC32_POLYNOMIAL if b & 1 else b >> 1


def _powers_of_x() -> list[int]:
    """x^(2^k) modulo the polynomial, for k in 0..31."""
    powers = [1 << 30]  # x^1
    for _ in range(31):
        powers.append(_multiply_mod_polynomial(powers[-1], powers[-1]))
    return powers


_X_POWERS = _powers_of_x()


def _crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A+B from crc32(A), crc32(B) and len(B)."""
    shift = 1 << 31  # x^0
    bit = 3  # x^(8 * length2): start at 2^3
    while length2:
        if length2 & 1:
            shift = _multiply_mod_polynomial(_X_POWERS[bit & 31], shift)
        length2 >>= 1
        bit += 1
    return _multiply_mod_polynomial(shift, crc1) ^ crc2
