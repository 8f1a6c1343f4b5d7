"""The ``dagster`` command line against the project, as a user runs it from a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline_tests.conftest import PROJECT_ROOT
from growingio_pipeline_tests.pipeline_harness import FINISHED_PARTITION, expected_rows, loaded_rows

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("GROWINGIO_")}
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    return {**env, "DAGSTER_HOME": str(home), **settings}


def _dagster(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DAGSTER, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)


MATERIALIZE_FINISHED_PARTITION = [
    *("asset", "materialize", "-m", "growingio_pipeline.definitions"),
    *("--select", "*", "--partition", FINISHED_PARTITION),
]


def test_definitions_validate_without_any_setting(tmp_path):
    result = _dagster(["definitions", "validate", "-w", "workspace.yaml"], _clean_env(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_asset_materialize_from_a_terminal_loads_every_type(local_server, tmp_path):
    duckdb_path = tmp_path / "events.duckdb"
    env = _clean_env(
        tmp_path,
        GROWINGIO_BASE_URL=local_server.base_url,
        GROWINGIO_TOKEN=local_server.token,
        GROWINGIO_PROJECT_ID=local_server.project_id,
        GROWINGIO_DUCKDB_PATH=str(duckdb_path),
        GROWINGIO_START_DATE="202611150000",
    )

    result = _dagster(MATERIALIZE_FINISHED_PARTITION, env)

    assert result.returncode == 0, result.stdout + result.stderr
    for event_type in EVENT_TYPES.values():
        expected = expected_rows(local_server, event_type, FINISHED_PARTITION)
        assert loaded_rows(duckdb_path, event_type, FINISHED_PARTITION) == expected, event_type.name
    assert local_server.token not in result.stdout + result.stderr


def test_a_run_without_token_fails_with_a_clear_message(local_server, tmp_path):
    env = _clean_env(
        tmp_path,
        GROWINGIO_BASE_URL=local_server.base_url,
        GROWINGIO_DUCKDB_PATH=str(tmp_path / "events.duckdb"),
        GROWINGIO_START_DATE="202611150000",
    )

    result = _dagster(MATERIALIZE_FINISHED_PARTITION, env)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "GrowingIO credentials missing: set GROWINGIO_TOKEN and GROWINGIO_PROJECT_ID" in output
    assert not local_server.api_calls, "nothing is requested without credentials"
