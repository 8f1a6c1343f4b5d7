"""A separate process that writes or reads a DuckLake on PostgreSQL and S3 with plain DuckDB SQL.

Configured by the lake's variables (``services.lake_environment``), this checks what the lake writer
relies on, without it: the offline extensions, the two secrets, and a PostgreSQL catalog with S3 files.
``python -m growingio_pipeline_tests.ducklake_probe write N`` writes N rows to ``growingio.probe``;
``... read`` prints what it reads, and where the extensions were loaded from, as JSON.
"""

from __future__ import annotations

import json
import os
import sys

import duckdb

from growingio_pipeline.duckdb_extensions import extension_directory

NOWHERE = "http://127.0.0.1:9"
"""An extension repository that refuses connections: any attempt to download an extension fails."""


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as ``lake``, from the environment."""
    env = os.environ
    conn = duckdb.connect(config={"extension_directory": str(extension_directory())})
    conn.execute(f"SET custom_extension_repository = {_quoted(NOWHERE)}")
    conn.execute(
        f"CREATE SECRET (TYPE s3, KEY_ID {_quoted(env['GROWINGIO_S3_ACCESS_KEY_ID'])}, "
        f"SECRET {_quoted(env['GROWINGIO_S3_SECRET_ACCESS_KEY'])}, ENDPOINT {_quoted(env['GROWINGIO_S3_ENDPOINT'])}, "
        f"REGION {_quoted(env['GROWINGIO_S3_REGION'])}, URL_STYLE {_quoted(env['GROWINGIO_S3_URL_STYLE'])}, "
        f"USE_SSL {env['GROWINGIO_S3_USE_SSL']})"
    )
    # The catalog string carries no password; the postgres secret supplies it to every connection libpq opens.
    conn.execute(f"CREATE SECRET (TYPE postgres, PASSWORD {_quoted(env['GROWINGIO_LAKE_CATALOG_PASSWORD'])})")
    catalog = _quoted("ducklake:" + env["GROWINGIO_LAKE_CATALOG"])
    conn.execute(f"ATTACH {catalog} AS lake (DATA_PATH {_quoted(env['GROWINGIO_LAKE_DATA_PATH'])})")
    conn.execute("USE lake")
    return conn


def main(argv: list[str]) -> None:
    conn = connect()
    if argv[0] == "write":
        conn.execute("CREATE SCHEMA IF NOT EXISTS growingio")
        conn.execute(
            "CREATE TABLE growingio.probe AS SELECT range AS id, 'row ' || range AS label FROM range(?)", [int(argv[1])]
        )
        return
    rows, id_sum = conn.execute("SELECT count(*), sum(id) FROM growingio.probe").fetchone()
    loaded = conn.execute("SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded").fetchall()
    unsigned = conn.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone()[0]
    print(json.dumps({"rows": rows, "id_sum": int(id_sum), "extensions": dict(loaded), "unsigned": unsigned}))


if __name__ == "__main__":
    main(sys.argv[1:])
