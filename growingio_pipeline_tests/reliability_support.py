"""Shared pieces of the reliability suites: a loaded baseline DuckDB file, runs, and outcome checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline_tests.conftest import PROJECT_ROOT, start_server
from growingio_pipeline_tests.pipeline_harness import (
    FINISHED_PARTITION,
    expected_rows,
    ledger,
    loaded_rows,
    materialize_partition,
    table_snapshot,
)

STEP = "growingio_export"


def build_baseline(path: Path) -> Path:
    """Load every type of ``FINISHED_PARTITION`` into a new DuckDB file at ``path``."""
    server = start_server()
    try:
        materialize_partition(server, path)
    finally:
        server.stop()
    return path


def copy_baseline(baseline: Path, directory: Path) -> Path:
    """A private copy of the baseline file, so each test starts from the same loaded state."""
    return Path(shutil.copy(baseline, directory / "events.duckdb"))


def step_failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's error message, with the causes Dagster chains to it."""
    failure = result.failure_data_for_node(STEP)
    assert failure is not None, "the step did not fail"
    messages = []
    error = failure.error
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


def worker_environment(server: LocalExportServer, duckdb_path: Path, **extra: str) -> dict[str, str]:
    """The environment a worker process reads its resources (and ``extra`` settings) from."""
    return {
        **os.environ,
        "GROWINGIO_BASE_URL": server.base_url,
        "GROWINGIO_TOKEN": server.token,
        "GROWINGIO_PROJECT_ID": server.project_id,
        "GROWINGIO_DUCKDB_PATH": str(duckdb_path),
        **extra,
    }


def start_worker(env: dict[str, str], log_path: Path, partition_key: str, *names: str) -> subprocess.Popen:
    """A ``reliability_worker`` run in a new session (its own process group), its output in ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "growingio_pipeline_tests.reliability_worker", partition_key, *names],
            cwd=PROJECT_ROOT,
            env=env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def new_ledger_rows(duckdb_path: Path, before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger rows written since ``before`` was read."""
    seen = {row["attempt_id"] for row in before}
    return [row for row in ledger(duckdb_path) if row["attempt_id"] not in seen]


def assert_partition_equals_ground_truth(
    server: LocalExportServer, duckdb_path: Path, names: Iterable[str], partition_key: str = FINISHED_PARTITION
) -> None:
    """Each named type's partition holds exactly the server's ground-truth rows."""
    for name in names:
        event_type = EVENT_TYPES[name]
        assert loaded_rows(duckdb_path, event_type, partition_key) == expected_rows(
            server, event_type, partition_key
        ), (name, partition_key)


__all__ = [
    "FINISHED_PARTITION",
    "STEP",
    "assert_partition_equals_ground_truth",
    "build_baseline",
    "copy_baseline",
    "ledger",
    "materialize_partition",
    "new_ledger_rows",
    "start_server",
    "start_worker",
    "step_failure_message",
    "table_snapshot",
    "worker_environment",
]
