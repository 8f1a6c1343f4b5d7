"""Dagster's instance storage in PostgreSQL, with the production ``dagster.yaml`` from docs/production."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline_tests.pipeline_harness import FINISHED_PARTITION
from growingio_pipeline_tests.services import PostgresServer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_DAGSTER_YAML = PROJECT_ROOT / "docs" / "production" / "dagster.yaml"
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def dagster_home_on_postgres(home: Path, postgres: PostgresServer, database: str) -> dict[str, str]:
    """Makes ``home`` a DAGSTER_HOME with the production settings; returns the variables they read."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRODUCTION_DAGSTER_YAML, home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_DB": database,
        "DAGSTER_PG_USERNAME": postgres.user,
        "DAGSTER_PG_PASSWORD": postgres.password,
    }


def materialize_command(partition_key: str) -> list[str]:
    """``dagster asset materialize`` of all ten types for one partition, as a user types it."""
    return [DAGSTER, "asset", "materialize", "-m", "growingio_pipeline.definitions", "--select", "*",
            "--partition", partition_key]  # fmt: skip


def test_a_run_from_the_command_line_is_stored_in_postgres(postgres_server, local_server, tmp_path):
    database = postgres_server.create_database("dagster_instance")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("GROWINGIO_", "DAGSTER_"))}
    env |= dagster_home_on_postgres(tmp_path / "dagster_home", postgres_server, database)
    env |= {
        "GROWINGIO_BASE_URL": local_server.base_url,
        "GROWINGIO_TOKEN": local_server.token,
        "GROWINGIO_PROJECT_ID": local_server.project_id,
        "GROWINGIO_START_DATE": "202611150000",
    }

    result = subprocess.run(
        materialize_command(FINISHED_PARTITION),
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert postgres_server.password not in result.stdout + result.stderr
    with postgres_server.connect(database) as storage, storage.cursor() as cursor:
        cursor.execute("SELECT run_id, status FROM runs")
        [(run_id, status)] = cursor.fetchall()
        cursor.execute(
            "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (run_id, "ASSET_MATERIALIZATION"),
        )
        materialized = sorted(cursor.fetchall())
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (run_id, "ASSET_CHECK_EVALUATION"),
        )
        [(check_evaluations,)] = cursor.fetchall()
    assert status == "SUCCESS"
    expected_keys = sorted(json.dumps(["growingio", name]) for name in EVENT_TYPES)
    assert materialized == [(key, FINISHED_PARTITION) for key in expected_keys]
    assert check_evaluations == 4 * len(EVENT_TYPES)
    # Nothing went to the default SQLite storage beside DAGSTER_HOME.
    assert not list((tmp_path / "dagster_home").rglob("*.db"))
