"""Dagster's instance storage in PostgreSQL, with the production ``dagster.yaml`` from docs/production."""

from __future__ import annotations

import json
import subprocess

from growingio_pipeline.checks import CHECK_KINDS
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.guards import EXPIRY_CHECK, FRESHNESS_CHECK
from growingio_pipeline_tests.analytics_harness import ANALYTICS_ASSETS, MODELS
from growingio_pipeline_tests.dagster_processes import (
    dagster_home_on_postgres,
    environment_without_settings,
    materialize_command,
)
from growingio_pipeline_tests.pipeline_harness import FINISHED_PARTITION, export_environment

GUARD_CHECKS = (EXPIRY_CHECK, FRESHNESS_CHECK)


def test_a_run_from_the_command_line_is_stored_in_postgres(postgres_server, local_server, tmp_path):
    database = postgres_server.create_database("dagster_instance")
    env = environment_without_settings() | export_environment(local_server)
    env |= dagster_home_on_postgres(tmp_path / "dagster_home", postgres_server, database)

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
    # `--select '*'` selects the raw tables and the models built on them, with every check on them: the four
    # per hour and the two window-wide guards of each raw table, and the models' dbt tests.
    raw_keys = [json.dumps(["growingio", name]) for name in EVENT_TYPES]
    model_keys = [json.dumps(["analytics", name]) for name in MODELS]
    assert materialized == [(key, FINISHED_PARTITION) for key in sorted(raw_keys + model_keys)]
    raw_checks = (len(CHECK_KINDS) + len(GUARD_CHECKS)) * len(EVENT_TYPES)
    assert check_evaluations == raw_checks + len(ANALYTICS_ASSETS.check_keys)
    # Nothing went to the default SQLite storage beside DAGSTER_HOME.
    assert not list((tmp_path / "dagster_home").rglob("*.db"))
