"""Several runs of different partitions writing one lake at once: no failed run, no lost or duplicated rows.

Each run is its own OS process (``reliability_worker``), all started together against one export
server; their commits to the shared SQLite catalog may conflict, and each conflict is retried. The
multiprocess-executor case runs each step in yet another process, on one persistent Dagster instance
shared by the runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline_tests.pipeline_harness import expected_rows, materialize_partition
from growingio_pipeline_tests.reliability_support import (
    assert_partition_equals_ground_truth,
    ledger,
    start_server,
    start_worker,
    worker_environment,
)

PARTITIONS = ("202611290100", "202611290200", "202611290300")
"""Three hours the test servers' frozen clock (12:00 Beijing) has exported."""
WORKER_TIMEOUT_S = 600
HOLD_READER = (
    "import sys\n"
    "from growingio_pipeline.lake import LakeSettings, connect_lake\n"
    "from pathlib import Path\n"
    "connection = connect_lake(LakeSettings.in_folder(Path(sys.argv[1])), read_only=True)\n"
    "connection.begin()\n"
    "before = connection.execute('SELECT count(*) FROM growingio.page').fetchall()[0][0]\n"
    "print('reading', before, flush=True)\n"
    "sys.stdin.read()\n"
    "after = connection.execute('SELECT count(*) FROM growingio.page').fetchall()[0][0]\n"
    "print('still', after, flush=True)\n"
    "connection.close()\n"
)
"""Another process (a notebook left open) reading the lake in one open transaction until its stdin ends."""


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


def assert_every_partition_loaded_once(server, lake_dir: Path) -> None:
    """Ground truth in every (type, partition), and exactly one LOADED ledger row for each."""
    for key in PARTITIONS:
        assert_partition_equals_ground_truth(server, lake_dir, EVENT_TYPES, key)
    attempts = ledger(lake_dir)
    assert {row["status"] for row in attempts} == {"LOADED"}
    loads = Counter((row["event_type"], row["partition_key"]) for row in attempts)
    assert loads == {(name, key): 1 for name in EVENT_TYPES for key in PARTITIONS}


def test_separate_runs_of_different_partitions_share_one_lake(server, tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"

    run_workers_at_once(worker_environment(server, lake_dir), tmp_path)

    assert_every_partition_loaded_once(server, lake_dir)


def test_multiprocess_executor_runs_share_one_lake_and_one_instance(server, tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    # Create the instance's storage once: processes racing to create it trip over its schema migration.
    dg.DagsterInstance.from_config(str(dagster_home)).dispose()
    env = worker_environment(server, lake_dir, GROWINGIO_WORKER_EXECUTOR="multiprocess", DAGSTER_HOME=str(dagster_home))

    run_workers_at_once(env, tmp_path)

    assert_every_partition_loaded_once(server, lake_dir)
    logs = "".join((tmp_path / f"worker-{key}.log").read_text() for key in PARTITIONS)
    launches = logs.count('Launching subprocess for "growingio_export"')
    assert launches == len(PARTITIONS), "each run's step ran in a child process"


def test_a_reader_left_open_neither_blocks_a_load_nor_sees_it_half_done(server, tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    assert materialize_partition(server, lake_dir, PARTITIONS[0], selection=["page"]).success
    rows_before = len(expected_rows(server, EVENT_TYPES["page"], PARTITIONS[0]))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_READER, str(lake_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().split() == ["reading", str(rows_before)]
        loaded = materialize_partition(server, lake_dir, PARTITIONS[1], selection=["page"])
    finally:
        output, _ = holder.communicate("")  # end of stdin: the reader queries once more and exits

    assert loaded.success, "the load committed while the reader's transaction was open"
    assert output.split() == ["still", str(rows_before)], "the reader's snapshot kept the rows it started with"
    assert_partition_equals_ground_truth(server, lake_dir, ["page"], PARTITIONS[1])
