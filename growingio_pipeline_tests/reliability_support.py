"""Shared pieces of the reliability suites: a loaded baseline lake, runs, and outcome checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import LakeSettings
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline_tests.conftest import PROJECT_ROOT, start_server
from growingio_pipeline_tests.pipeline_harness import (
    FINISHED_PARTITION,
    expected_rows,
    lake_environment,
    ledger,
    materialize_partition,
    partition_rows,
    read_lake,
    table_snapshot,
)

STEP = "growingio_export"


def build_baseline(path: Path) -> Path:
    """Load every type of ``FINISHED_PARTITION`` into a new lake inside ``path``."""
    server = start_server()
    try:
        materialize_partition(server, path)
    finally:
        server.stop()
    return path


def copy_baseline(baseline: Path, directory: Path) -> Path:
    """A private copy of the baseline lake, so each test starts from the same loaded state.

    The catalog records its data path (DuckLake refuses another at ATTACH), so the copy's is rewritten.
    """
    copy = Path(shutil.copytree(baseline, directory / "lake"))
    settings = LakeSettings.in_folder(copy)
    with contextlib.closing(sqlite3.connect(settings.catalog)) as catalog, catalog:
        catalog.execute("UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'", [settings.data_path])
    return copy


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


def worker_environment(server: LocalExportServer, lake_dir: Path, **extra: str) -> dict[str, str]:
    """The environment a worker process reads its resources (and ``extra`` settings) from."""
    return {
        **os.environ,
        "GROWINGIO_BASE_URL": server.base_url,
        "GROWINGIO_TOKEN": server.token,
        "GROWINGIO_PROJECT_ID": server.project_id,
        **lake_environment(lake_dir),
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


def new_ledger_rows(lake_dir: Path, before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger rows written since ``before`` was read."""
    seen = {row["attempt_id"] for row in before}
    return [row for row in ledger(lake_dir) if row["attempt_id"] not in seen]


def assert_partition_equals_ground_truth(
    server: LocalExportServer, lake_dir: Path, names: Iterable[str], partition_key: str = FINISHED_PARTITION
) -> None:
    """Each named type's partition holds exactly the server's ground-truth rows."""
    with read_lake(lake_dir) as conn:  # one connection: attaching the lake takes longer than reading a partition
        for name in names:
            event_type = EVENT_TYPES[name]
            expected = expected_rows(server, event_type, partition_key)
            assert partition_rows(conn, event_type, partition_key) == expected, (name, partition_key)


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
