"""Export a single-file DuckDB warehouse (the previous version's) to Parquet, with row counts per partition.

Run as ``python -m growingio_pipeline.legacy_export DATABASE OUTPUT_DIR``. It imports only DuckDB and the
standard library, so it runs under whichever DuckDB can read the file: files written by DuckDB 2.x cannot
be opened by the 1.5.5 the lake needs, and ``migrate.py`` runs this module under DuckDB 2.0.1 for them.
Writes ``OUTPUT_DIR/<table>.parquet`` per table of schema ``growingio`` and ``OUTPUT_DIR/manifest.json``:
``{"tables": {table: {"rows": n, "partitions": {partition_key: n}}}}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import duckdb

SCHEMA = "growingio"
MANIFEST = "manifest.json"
_PARTITION_COLUMNS = ("_partition_key", "partition_key")
"""Event tables name it ``_partition_key``; the ledger and rejects ``partition_key``."""


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def export(database: Path, output_dir: Path) -> dict[str, Any]:
    """Copy every table of schema ``growingio`` to Parquet; the manifest of rows per table and partition."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, dict[str, Any]] = {}
    with duckdb.connect(str(database), read_only=True) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY table_name",
                [SCHEMA],
            ).fetchall()
        ]
        for name in names:
            qualified = f"{SCHEMA}.{_quote(name)}"
            target = output_dir / f"{name}.parquet"
            literal = "'" + str(target).replace("'", "''") + "'"
            conn.execute(f"COPY (SELECT * FROM {qualified}) TO {literal} (FORMAT parquet)")
            columns = {row[0] for row in conn.execute(f"DESCRIBE {qualified}").fetchall()}
            partition_column = next((column for column in _PARTITION_COLUMNS if column in columns), None)
            partitions = (
                dict(
                    conn.execute(
                        f"SELECT {_quote(partition_column)}, count(*) FROM {qualified} GROUP BY ALL"
                    ).fetchall()
                )
                if partition_column
                else {}
            )
            [(rows,)] = conn.execute(f"SELECT count(*) FROM {qualified}").fetchall()
            tables[name] = {"rows": rows, "partitions": partitions}
    manifest: dict[str, Any] = {"duckdb_version": duckdb.__version__, "tables": tables}
    (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


if __name__ == "__main__":
    export(Path(sys.argv[1]), Path(sys.argv[2]))
