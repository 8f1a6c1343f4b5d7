"""``growingio-migrate-duckdb PATH``: copy a single-file DuckDB warehouse (the previous version's) into the lake.

Keeps the history older than the vendor's 15-day retention. The old file is only read. Its tables are
exported to Parquet first (``legacy_export``): files written by DuckDB 2.x cannot be opened by DuckDB 1.5.5,
which the lake needs, so for those the export runs under DuckDB ``LEGACY_DUCKDB_VERSION``, installed from the
package registry with pip into a private folder on first use (``--legacy-duckdb-dir``).

Then each (event type, partition) is copied in one transaction (rows and rejects), its row count checked
against the old file's before the commit. Partitions the lake already holds are kept as they are (``--replace``
overwrites them), so running the command again copies nothing twice. Ledger rows are copied once, by attempt id.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from growingio_pipeline.event_types import EVENT_TYPES, EventType
from growingio_pipeline.lake import LakeSettings, LakeUnavailable, connect_lake, write_transaction
from growingio_pipeline.legacy_export import MANIFEST
from growingio_pipeline.warehouse import LEDGER_TABLE, REJECTS_TABLE, ensure_schema

LEGACY_DUCKDB_VERSION = "2.0.1"
"""The DuckDB the previous version of this project pinned; it reads every file that version wrote."""
_NEWER_FILE = "created with an newer version"


class MigrationError(RuntimeError):
    """The old file could not be read, or a partition's row count did not match after the copy."""


class _WrittenByNewerDuckDB(MigrationError):
    """The file's storage version is newer than this DuckDB reads."""


@dataclass
class MigrationReport:
    """What one migration did."""

    copied: dict[str, int] = field(default_factory=dict)
    """partitions copied, by table"""
    kept: dict[str, int] = field(default_factory=dict)
    """partitions already in the lake, left as they were, by table"""
    rows: dict[str, int] = field(default_factory=dict)
    """rows copied, by table"""
    ledger_rows: int = 0


def default_legacy_dir() -> Path:
    """Where DuckDB ``LEGACY_DUCKDB_VERSION`` is installed for reading newer files (a user cache folder)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "growingio-pipeline" / f"duckdb-{LEGACY_DUCKDB_VERSION}"


def export_old_file(database: Path, output_dir: Path, legacy_dir: Path) -> dict[str, Any]:
    """Export ``database`` to Parquet with this DuckDB if it can read the file, else with the legacy one."""
    try:
        return _run_export(database, output_dir, python_path=None)
    except _WrittenByNewerDuckDB:
        return _run_export(database, output_dir, python_path=_install_legacy_duckdb(legacy_dir))


def _run_export(database: Path, output_dir: Path, python_path: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if python_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(python_path), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "growingio_pipeline.legacy_export", str(database), str(output_dir)],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "Error" in line] or ["no error message"]
        failure = _WrittenByNewerDuckDB if _NEWER_FILE in result.stderr else MigrationError
        raise failure(f"could not read {database}: {errors[-1].strip()}")
    manifest: dict[str, Any] = json.loads((output_dir / MANIFEST).read_text())
    return manifest


def _install_legacy_duckdb(legacy_dir: Path) -> Path:
    """DuckDB ``LEGACY_DUCKDB_VERSION`` in ``legacy_dir`` (pip, from the package registry), installed once."""
    marker = legacy_dir / f"duckdb-{LEGACY_DUCKDB_VERSION}.dist-info"
    if not marker.is_dir():
        print(f"the file was written by a newer DuckDB: installing duckdb=={LEGACY_DUCKDB_VERSION} into {legacy_dir}")
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        command += ["--target", str(legacy_dir), f"duckdb=={LEGACY_DUCKDB_VERSION}"]
        if subprocess.run(command).returncode != 0 or not marker.is_dir():
            raise MigrationError(f"could not install duckdb=={LEGACY_DUCKDB_VERSION} into {legacy_dir} with pip")
    return legacy_dir


def _parquet(export_dir: Path, table: str) -> str:
    return "'" + str(export_dir / f"{table}.parquet").replace("'", "''") + "'"


def _lake_partitions(conn: duckdb.DuckDBPyConnection, event_type: EventType) -> set[str]:
    rows = conn.execute(f"SELECT DISTINCT _partition_key FROM {event_type.table_name}").fetchall()
    return {key for (key,) in rows}


def _common_columns(conn: duckdb.DuckDBPyConnection, table: str, parquet: str) -> str:
    """The columns both the old table and the lake's table have (older files may lack newer columns)."""
    lake = [row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()]
    old = {row[0] for row in conn.execute(f"DESCRIBE SELECT * FROM read_parquet({parquet})").fetchall()}
    return ", ".join(f'"{name}"' for name in lake if name in old)


def _copy_partition(
    conn: duckdb.DuckDBPyConnection, event_type: EventType, key: str, expected: int, export_dir: Path, has_rejects: bool
) -> int:
    """Replace one partition's rows (and rejects) with the old file's, in the caller's transaction; checked."""
    parquet = _parquet(export_dir, event_type.name)
    columns = _common_columns(conn, event_type.table_name, parquet)
    conn.execute(f"DELETE FROM {event_type.table_name} WHERE _partition_key = ?", [key])
    conn.execute(
        f"INSERT INTO {event_type.table_name} ({columns}) SELECT {columns} FROM read_parquet({parquet}) "
        "WHERE _partition_key = ?",
        [key],
    )
    [(copied,)] = conn.execute(
        f"SELECT count(*) FROM {event_type.table_name} WHERE _partition_key = ?", [key]
    ).fetchall()
    if copied != expected:
        raise MigrationError(
            f"{event_type.table_name} partition {key}: {copied} rows in the lake, {expected} in the file"
        )
    if has_rejects:
        rejects = _parquet(export_dir, "_rejects")
        conn.execute(f"DELETE FROM {REJECTS_TABLE} WHERE event_type = ? AND partition_key = ?", [event_type.name, key])
        conn.execute(
            f"INSERT INTO {REJECTS_TABLE} BY NAME SELECT * FROM read_parquet({rejects}) "
            "WHERE event_type = ? AND partition_key = ?",
            [event_type.name, key],
        )
    return int(copied)


def _copy_ledger(conn: duckdb.DuckDBPyConnection, export_dir: Path) -> int:
    """Ledger rows whose attempt id the lake does not have yet; how many were added."""
    parquet = _parquet(export_dir, "_load_ledger")
    [(added,)] = conn.execute(
        f"INSERT INTO {LEDGER_TABLE} BY NAME SELECT * FROM read_parquet({parquet}) "
        f"WHERE attempt_id NOT IN (SELECT attempt_id FROM {LEDGER_TABLE})"
    ).fetchall()
    return int(added)


def migrate(
    database: Path, settings: LakeSettings, *, replace: bool = False, legacy_dir: Path | None = None
) -> MigrationReport:
    """Copy every table of the DuckDB file ``database`` into the lake; see the module docstring."""
    if not database.is_file():
        raise MigrationError(f"no DuckDB file at {database}")
    report = MigrationReport()
    with tempfile.TemporaryDirectory(prefix="growingio-migrate-") as directory:
        export_dir = Path(directory)
        tables = export_old_file(database, export_dir, legacy_dir or default_legacy_dir())["tables"]
        with connect_lake(settings) as conn:
            ensure_schema(conn)
            has_rejects = "_rejects" in tables
            for name, event_type in EVENT_TYPES.items():
                if name not in tables:
                    continue
                present = set() if replace else _lake_partitions(conn, event_type)
                report.copied[name] = report.kept[name] = report.rows[name] = 0
                for key, expected in sorted(tables[name]["partitions"].items()):
                    if key in present:
                        report.kept[name] += 1
                        continue
                    report.rows[name] += write_transaction(
                        conn,
                        functools.partial(
                            _copy_partition,
                            event_type=event_type,
                            key=key,
                            expected=expected,
                            export_dir=export_dir,
                            has_rejects=has_rejects,
                        ),
                    )
                    report.copied[name] += 1
            if "_load_ledger" in tables:
                report.ledger_rows = write_transaction(conn, lambda c: _copy_ledger(c, export_dir))
    return report


def main(argv: list[str] | None = None) -> int:
    """The ``growingio-migrate-duckdb`` command."""
    parser = argparse.ArgumentParser(
        prog="growingio-migrate-duckdb",
        description="Copy the tables of a single-file DuckDB warehouse (GROWINGIO_DUCKDB_PATH of the previous "
        "version) into the lake configured by GROWINGIO_LAKE_CATALOG and GROWINGIO_LAKE_DATA_PATH.",
    )
    parser.add_argument("path", type=Path, help="the old DuckDB file, e.g. data/growingio_events.duckdb")
    parser.add_argument("--replace", action="store_true", help="also overwrite partitions the lake already holds")
    parser.add_argument(
        "--legacy-duckdb-dir",
        type=Path,
        default=None,
        help=f"where to install duckdb=={LEGACY_DUCKDB_VERSION} for files this DuckDB cannot read "
        f"(default {default_legacy_dir()})",
    )
    args = parser.parse_args(argv)
    settings = LakeSettings.from_env()
    try:
        report = migrate(args.path, settings, replace=args.replace, legacy_dir=args.legacy_duckdb_dir)
    except (MigrationError, LakeUnavailable, duckdb.Error) as error:
        print(f"growingio-migrate-duckdb: {error}", file=sys.stderr)
        return 1
    print(f"into the lake ({settings.describe()}):")
    for name in report.copied:
        print(
            f"  {name:<24} {report.copied[name]:>5} partitions copied ({report.rows[name]:,} rows), "
            f"{report.kept[name]} already in the lake"
        )
    print(f"  ledger: {report.ledger_rows} attempts added")
    return 0


if __name__ == "__main__":
    sys.exit(main())
