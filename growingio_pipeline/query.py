"""Reading the lake, for people and programs: ``connect()`` and the ``growingio-sql`` command.

Both are read-only and configured from the same variables as the pipeline (``GROWINGIO_LAKE_*``,
``GROWINGIO_S3_*``). A query reads one DuckLake snapshot: it never fails because a load is writing,
and a load never waits for it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import duckdb

from growingio_pipeline.lake import LakeSettings, LakeUnavailable, connect_lake

FORMATS = ("table", "csv", "json")


def connect(settings: LakeSettings | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection on which ``growingio.<type>`` resolves; the caller closes it.

    ``settings`` default to ``LakeSettings.from_env()``.
    """
    return connect_lake(settings or LakeSettings.from_env(), read_only=True)


def write_result(columns: Sequence[str], rows: Sequence[tuple[Any, ...]], output_format: str, out: TextIO) -> None:
    """Print ``rows`` as an aligned table, CSV (with a header) or a JSON array of objects."""
    if output_format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    elif output_format == "json":
        json.dump(
            [dict(zip(columns, row, strict=True)) for row in rows], out, default=str, ensure_ascii=False, indent=1
        )
        out.write("\n")
    else:
        cells = [list(columns)] + [["NULL" if value is None else str(value) for value in row] for row in rows]
        widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
        lines = [
            " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in cells
        ]
        lines.insert(1, "-+-".join("-" * width for width in widths))
        out.write("\n".join(lines) + f"\n({len(rows)} row{'' if len(rows) == 1 else 's'})\n")


def main(argv: list[str] | None = None) -> int:
    """``growingio-sql [--format table|csv|json] [SQL]``: run SQL on the lake (read-only), print the result."""
    parser = argparse.ArgumentParser(
        prog="growingio-sql",
        description="Run SQL on the GrowingIO lake (read-only) and print the result. "
        "Tables: growingio.<event type>, growingio._load_ledger, growingio._rejects, analytics.<model>.",
    )
    parser.add_argument("sql", nargs="?", help="the query; read from standard input when left out")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    args = parser.parse_args(argv)
    sql = args.sql if args.sql is not None else sys.stdin.read()
    if not sql.strip():
        parser.error("no SQL given (as an argument or on standard input)")
    try:
        with connect() as conn:
            cursor = conn.execute(sql)
            columns = [description[0] for description in cursor.description or []]
            rows = cursor.fetchall() if columns else []
    except (duckdb.Error, LakeUnavailable, FileNotFoundError, ValueError) as error:
        print(f"growingio-sql: {error}", file=sys.stderr)
        return 1
    if columns:
        write_result(columns, rows, args.format, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
