"""Writing test parts in the vendor's CSV dialect.

Escape ``\\``, NULL = empty unquoted field, ``""`` = empty string.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from pathlib import Path

Row = Sequence[str | None]

_NEEDS_QUOTES = (",", '"', "\\", "\r", "\n")


def dialect_field(value: str | None, *, quote_all: bool = True) -> str:
    """One field: NULL empty and unquoted; text quoted (always, or only when it must be) with ``\\`` escapes."""
    if value is None:
        return ""
    if not quote_all and value and not any(mark in value for mark in _NEEDS_QUOTES):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dialect_text(header: Sequence[str], rows: Iterable[Row], *, quote_all: bool = True, line_end: str = "\n") -> str:
    """A whole CSV text: header line, then one line per row."""
    lines = [",".join(header)]
    lines += [",".join(dialect_field(value, quote_all=quote_all) for value in row) for row in rows]
    return line_end.join(lines) + line_end


def write_part(
    path: Path, header: Sequence[str], rows: Iterable[Row], *, quote_all: bool = True, line_end: str = "\n"
) -> Path:
    """Write a gzip part at ``path`` and return ``path``."""
    path.write_bytes(gzip.compress(dialect_text(header, rows, quote_all=quote_all, line_end=line_end).encode(), 1))
    return path


def write_raw_part(path: Path, text: bytes) -> Path:
    """Write exactly ``text``, gzip-compressed (for malformed input)."""
    path.write_bytes(gzip.compress(text, 1))
    return path
