"""``growingio-migrate-duckdb``: a single-file warehouse written by DuckDB 2.0.1 (the previous version's) is
copied into the lake partition by partition, with its ledger and rejects, and a second run copies nothing twice.

The old file is made by DuckDB 2.0.1 itself, installed from the package registry the way the command installs
it for such files, from the tables of a lake loaded by a real run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.migrate import _install_legacy_duckdb, default_legacy_dir
from growingio_pipeline_tests.pipeline_harness import lake_environment, ledger, read_lake, table_snapshot
from growingio_pipeline_tests.reliability_support import build_baseline

TABLES = [*EVENT_TYPES, "_load_ledger", "_rejects"]
WRITE_OLD_FILE = (
    "import duckdb, sys\n"
    "assert duckdb.__version__ == '2.0.1', duckdb.__version__\n"
    "connection = duckdb.connect(sys.argv[1])\n"
    "connection.execute('CREATE SCHEMA growingio')\n"
    "for table in sys.argv[3:]:\n"
    "    source = f\"read_parquet('{sys.argv[2]}/{table}.parquet')\"\n"
    "    connection.execute(f'CREATE TABLE growingio.{table} AS FROM {source}')\n"
    "connection.close()\n"
)
"""Run under DuckDB 2.0.1: a warehouse file with the tables exported from the lake."""


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_baseline(tmp_path_factory.mktemp("baseline") / "lake")


@pytest.fixture(scope="module")
def old_file(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The baseline's tables in a DuckDB file written by DuckDB 2.0.1."""
    directory = tmp_path_factory.mktemp("old")
    with read_lake(baseline) as conn:
        for table in TABLES:
            conn.execute(f"COPY (FROM growingio.{table}) TO '{directory}/{table}.parquet' (FORMAT parquet)")
    legacy = _install_legacy_duckdb(default_legacy_dir())
    path = directory / "growingio_events.duckdb"
    subprocess.run(
        [sys.executable, "-c", WRITE_OLD_FILE, str(path), str(directory), *TABLES],
        env={**os.environ, "PYTHONPATH": str(legacy)},
        check=True,
    )
    return path


def migrate(old_file: Path, lake_dir: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("growingio-migrate-duckdb")
    env = {**os.environ, **lake_environment(lake_dir)}
    return subprocess.run([str(command), str(old_file)], env=env, capture_output=True, text=True, timeout=600)


def test_a_duckdb_2_file_is_copied_into_the_lake_and_a_second_run_copies_nothing(
    baseline: Path, old_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(duckdb.IOException, match="newer version"):
        duckdb.connect(str(old_file), read_only=True)  # why the export runs under DuckDB 2.0.1
    lake_dir = tmp_path / "lake"

    first = migrate(old_file, lake_dir)

    assert first.returncode == 0, first.stderr
    assert "page" in first.stdout and "1 partitions copied" in first.stdout
    assert table_snapshot(lake_dir) == table_snapshot(baseline)
    assert sorted(map(str, ledger(lake_dir))) == sorted(map(str, ledger(baseline)))
    with read_lake(lake_dir) as new, read_lake(baseline) as old:
        rejects = "SELECT * EXCLUDE (loaded_at) FROM growingio._rejects ORDER BY ALL"
        assert new.execute(rejects).fetchall() == old.execute(rejects).fetchall()

    second = migrate(old_file, lake_dir)

    assert second.returncode == 0, second.stderr
    assert "0 partitions copied (0 rows), 1 already in the lake" in second.stdout
    assert "ledger: 0 attempts added" in second.stdout
    assert table_snapshot(lake_dir) == table_snapshot(baseline)
    assert len(ledger(lake_dir)) == len(ledger(baseline))


def test_a_missing_file_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = migrate(tmp_path / "nothing.duckdb", tmp_path / "lake")
    assert result.returncode == 1
    assert f"no DuckDB file at {tmp_path / 'nothing.duckdb'}" in result.stderr
