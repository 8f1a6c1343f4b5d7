"""Several runs of different partitions writing one DuckDB file at once: no lock errors, no lost or
duplicated rows.

Each run is its own OS process (``reliability_worker``), all started together against one export
server; they contend for DuckDB's single-writer file lock, which ``WarehouseResource.connect``
waits for. The multiprocess-executor case runs each step in yet another process, on one persistent
Dagster instance shared by the runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.resources import WarehouseResource
from growingio_pipeline_tests.pipeline_harness import EVENT_ASSETS, export_resource, materialize_partition
from growingio_pipeline_tests.reliability_support import (
    assert_partition_equals_ground_truth,
    ledger,
    start_server,
    start_worker,
    step_failure_message,
    worker_environment,
)

PARTITIONS = ("202611290100", "202611290200", "202611290300")
"""Three hours the test servers' frozen clock (12:00 Beijing) has exported."""
WORKER_TIMEOUT_S = 600
HOLD_LOCK = (
    "import duckdb, sys\n"
    "connection = duckdb.connect(sys.argv[1])\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
    "connection.close()\n"
)
"""Another process holding the DuckDB file's write lock until its stdin ends."""


@pytest.fixture
def server():
    started = start_server()
    started.prepare([key[:10] for key in PARTITIONS])  # generation stays out of the contended window
    yield started
    started.stop()


def run_workers_at_once(env: dict[str, str], directory: Path) -> None:
    """One worker per partition, all started before any is waited for; each must succeed."""
    workers = {key: start_worker(env, directory / f"worker-{key}.log", key) for key in PARTITIONS}
    for key, worker in workers.items():
        returncode = worker.wait(timeout=WORKER_TIMEOUT_S)
        log = (directory / f"worker-{key}.log").read_text()
        assert returncode == 0, f"the run of {key} failed:\n{log[-4000:]}"
        assert "Could not set lock" not in log and "Conflicting lock" not in log, key


def assert_every_partition_loaded_once(server, duckdb_path: Path) -> None:
    """Ground truth in every (type, partition), and exactly one LOADED ledger row for each."""
    for key in PARTITIONS:
        assert_partition_equals_ground_truth(server, duckdb_path, EVENT_TYPES, key)
    attempts = ledger(duckdb_path)
    assert {row["status"] for row in attempts} == {"LOADED"}
    loads = Counter((row["event_type"], row["partition_key"]) for row in attempts)
    assert loads == {(name, key): 1 for name in EVENT_TYPES for key in PARTITIONS}


def test_separate_runs_of_different_partitions_share_one_duckdb_file(server, tmp_path: Path) -> None:
    duckdb_path = tmp_path / "events.duckdb"

    run_workers_at_once(worker_environment(server, duckdb_path), tmp_path)

    assert_every_partition_loaded_once(server, duckdb_path)


def test_multiprocess_executor_runs_share_one_duckdb_file_and_one_instance(server, tmp_path: Path) -> None:
    duckdb_path = tmp_path / "events.duckdb"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    # Create the instance's storage once: processes racing to create it trip over its schema migration.
    dg.DagsterInstance.from_config(str(dagster_home)).dispose()
    env = worker_environment(
        server, duckdb_path, GROWINGIO_WORKER_EXECUTOR="multiprocess", DAGSTER_HOME=str(dagster_home)
    )

    run_workers_at_once(env, tmp_path)

    assert_every_partition_loaded_once(server, duckdb_path)
    logs = "".join((tmp_path / f"worker-{key}.log").read_text() for key in PARTITIONS)
    launches = logs.count('Launching subprocess for "growingio_export"')
    assert launches == len(PARTITIONS), "each run's step ran in a child process"


def test_a_file_locked_past_the_timeout_fails_the_run_with_a_clear_message(server, tmp_path: Path) -> None:
    duckdb_path = tmp_path / "events.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(duckdb_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        locked = dg.materialize(
            [EVENT_ASSETS],
            partition_key=PARTITIONS[0],
            raise_on_error=False,
            resources={
                "growingio": export_resource(server),
                "warehouse": WarehouseResource(database=str(duckdb_path), lock_timeout_s=0.5),
            },
        )
    finally:
        holder.communicate("")  # end of stdin: the holder closes its connection and exits

    assert not locked.success
    assert "stayed locked by another process for 0.5 s" in step_failure_message(locked)
    assert materialize_partition(server, duckdb_path, PARTITIONS[0]).success, "the next run, unlocked, loads"
    assert_partition_equals_ground_truth(server, duckdb_path, EVENT_TYPES, PARTITIONS[0])
