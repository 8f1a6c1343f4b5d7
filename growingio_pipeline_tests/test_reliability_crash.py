"""A load killed with SIGKILL while its DuckDB transaction is open leaves the table as it was, and
the next run removes the staged parts the killed one left behind.

The run happens in its own process group (``reliability_worker``). The partition it loads is large, so
its insert writes new blocks to the DuckDB file for a while before committing; the test watches the
file from outside and kills the whole group as soon as the file has grown by well over the size of any
ledger or schema write, that is, while the insert's transaction is open. DuckDB then finds only the
committed state. If the kill ever lands after the commit instead (a very slow poll), the attempt is
repeated on a fresh copy, within a bounded number of tries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from growingio_pipeline.resources import STAGING_FOLDER
from growingio_pipeline_tests.reliability_support import (
    FINISHED_PARTITION,
    assert_partition_equals_ground_truth,
    build_baseline,
    copy_baseline,
    ledger,
    materialize_partition,
    new_ledger_rows,
    start_server,
    start_worker,
    table_snapshot,
    worker_environment,
)

LARGE_ROWS_PER_HOUR = 100_000
"""About 9 MB of page parts: an insert that keeps its transaction open for a good fraction of a second."""
GROWTH_INSIDE_INSERT = 1024 * 1024
"""File growth that only the insert's optimistic block writes produce (schema and ledger writes are KBs)."""
KILL_ATTEMPTS = 3
POLL_INTERVAL_S = 0.005
"""How often the file size is looked at: often enough to see the insert, leaving the CPU to the worker."""


def kill_when_file_grows(worker: subprocess.Popen, duckdb_path: Path, growth: int) -> bool:
    """SIGKILL the worker's group once ``duckdb_path`` grew by ``growth`` bytes; False if it ended first."""
    start_size = duckdb_path.stat().st_size
    while worker.poll() is None:
        if duckdb_path.stat().st_size >= start_size + growth:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            return True
        time.sleep(POLL_INTERVAL_S)
    return False


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_baseline(tmp_path_factory.mktemp("baseline") / "events.duckdb")


@pytest.fixture
def large_server():
    server = start_server(rows_per_hour=LARGE_ROWS_PER_HOUR, part_size_bytes=8 * 1024 * 1024)
    server.prepare([FINISHED_PARTITION[:10]], ["page"])  # generation stays out of the worker's time
    yield server
    server.stop()


def test_sigkill_inside_the_open_transaction_leaves_the_table_and_the_next_run_completes(
    baseline: Path, large_server, tmp_path: Path
) -> None:
    for attempt in range(KILL_ATTEMPTS):
        directory = tmp_path / f"attempt-{attempt}"
        directory.mkdir()
        duckdb_path = copy_baseline(baseline, directory)
        before_rows, before_ledger = table_snapshot(duckdb_path), ledger(duckdb_path)
        env = worker_environment(large_server, duckdb_path)
        log_path = directory / "worker.log"
        worker = start_worker(env, log_path, FINISHED_PARTITION, "page")

        killed = kill_when_file_grows(worker, duckdb_path, GROWTH_INSIDE_INSERT)

        assert killed, f"the worker ended before its insert grew the file: {log_path.read_text()[-2000:]}"
        if table_snapshot(duckdb_path) == before_rows:
            break  # killed inside the open transaction: no trace of it in any table
        # Killed after the commit: the new rows must then be complete, never partial; try again.
        assert_partition_equals_ground_truth(large_server, duckdb_path, ["page"])
    else:
        pytest.fail(f"the kill never landed inside the transaction in {KILL_ATTEMPTS} attempts")

    assert not [row for row in new_ledger_rows(duckdb_path, before_ledger) if row["status"] == "LOADED"]
    staging_root = duckdb_path.parent / STAGING_FOLDER
    assert list(staging_root.glob(f"run-*-{worker.pid}-*")), "the killed run had staged its parts"

    result = materialize_partition(large_server, duckdb_path, selection=["page"], raise_on_error=False)

    assert result.success
    assert not list(staging_root.iterdir()), "the next run removed the killed run's staged parts, then its own"
    assert_partition_equals_ground_truth(large_server, duckdb_path, ["page"])
    assert [row["status"] for row in new_ledger_rows(duckdb_path, before_ledger)] == ["LOADED"]
