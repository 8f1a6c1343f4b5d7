"""Backfills and concurrent runs, in key-pair mode: every run shares one auth code through the SQLite catalog.

- 4 runs started together, each its own OS process with an empty catalog: one code is fetched.
- The 48-hour backfill of all ten types, launched through ``dagster dev``'s GraphQL as the UI launches one
  (two runs at a time, ``dagster_home/dagster.yaml``): no failed run, no lock error, exact rows, one
  successful attempt per (type, hour), one code. Key-pair mode is the harder case for a backfill (the runs
  share a code as well as the lake); token mode's runs through ``dagster dev`` are tested elsewhere.
- A code invalidated from outside mid-backfill is replaced by one refresh, and no run fails.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.partitions import BEIJING, KEY_FORMATS
from growingio_pipeline_tests.conftest import PROJECT_ROOT, start_server
from growingio_pipeline_tests.dagster_processes import launch_backfill, running_dagster_dev, wait_for_backfill
from growingio_pipeline_tests.pipeline_harness import read_lake
from growingio_pipeline_tests.reliability_support import (
    assert_partition_equals_ground_truth,
    start_worker,
    worker_environment,
)
from growingio_pipeline_tests.test_key_pair_auth import KEY_PAIR, invalidate_from_outside

FIRST_HOUR = datetime(2026, 11, 27, 0, tzinfo=BEIJING)
PARTITION_KEYS = [(FIRST_HOUR + timedelta(hours=h)).strftime(KEY_FORMATS["hour"]) for h in range(48)]
INVALIDATED_BACKFILL_HOURS = 8
"""Enough for runs to be in flight, two at a time, when the code is invalidated after the 4th export call."""
CONCURRENT_PARTITIONS = ("202611290100", "202611290200", "202611290300", "202611290400")
"""Four hours the test servers' frozen clock (12:00 Beijing) has exported."""
WORKER_TIMEOUT_S = 600
INVALIDATE_AFTER_EXPORT_CALLS = 4
PROGRESS_TIMEOUT_S = 600


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[LocalExportServer]:
    started = start_server(rows_per_hour=getattr(request, "param", 200), **KEY_PAIR)
    yield started
    started.stop()


def key_pair_environment(server: LocalExportServer, lake_dir: Path) -> dict[str, str]:
    """What a run reads in key-pair mode: the key pair and the lake (whose catalog holds the code), no token."""
    env = worker_environment(
        server,
        lake_dir,
        GROWINGIO_CLIENT_ID=KEY_PAIR["client_id"],
        GROWINGIO_PRIVATE_KEY=KEY_PAIR["private_key"],
        GROWINGIO_PROJECT_UID=KEY_PAIR["project_uid"],
    )
    del env["GROWINGIO_TOKEN"]
    return env


def export_calls(server: LocalExportServer) -> list[int]:
    """The statuses of the export API calls so far (not the code requests)."""
    return [call.status for call in list(server.api_calls) if call.path.startswith("/v2/insights/")]


def test_four_runs_started_together_share_one_code(server: LocalExportServer, tmp_path: Path) -> None:
    server.prepare([key[:10] for key in CONCURRENT_PARTITIONS])
    lake_dir = tmp_path / "lake"
    env = key_pair_environment(server, lake_dir)

    workers = {key: start_worker(env, tmp_path / f"worker-{key}.log", key) for key in CONCURRENT_PARTITIONS}
    for key, worker in workers.items():
        assert worker.wait(timeout=WORKER_TIMEOUT_S) == 0, (tmp_path / f"worker-{key}.log").read_text()[-4000:]

    assert server.codes_issued == 1
    assert 401 not in export_calls(server), "no run was refused (429s for the shared rate limit are retried)"
    for key in CONCURRENT_PARTITIONS:
        assert_partition_equals_ground_truth(server, lake_dir, EVENT_TYPES, key)


def run_backfill(
    server: LocalExportServer, tmp_path: Path, partition_keys: list[str], meanwhile: Callable[[], None] = lambda: None
) -> tuple[str, list[dg.DagsterRun], Path]:
    """A key-pair backfill launched as the UI launches one; ``meanwhile`` runs while it does."""
    lake_dir = tmp_path / "lake"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
    env = key_pair_environment(server, lake_dir)
    env["GROWINGIO_START_DATE"] = partition_keys[0]
    with running_dagster_dev(dagster_home, env, cwd=PROJECT_ROOT) as dev:
        backfill_id = launch_backfill(dev, [["growingio", name] for name in EVENT_TYPES], partition_keys)
        helper = threading.Thread(target=meanwhile, daemon=True)
        helper.start()
        status = wait_for_backfill(dev, backfill_id)
        helper.join()
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = list(instance.get_runs())
    return status, runs, lake_dir


def assert_every_run_succeeded_with_exact_rows(
    server: LocalExportServer, status: str, runs: list[dg.DagsterRun], lake_dir: Path, partition_keys: list[str]
) -> None:
    assert status in ("COMPLETED", "COMPLETED_SUCCESS")
    assert len(runs) == len(partition_keys)
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    for key in partition_keys:
        assert_partition_equals_ground_truth(server, lake_dir, EVENT_TYPES, key)


@pytest.mark.slow
@pytest.mark.parametrize("server", [50], indirect=True)
def test_a_48_hour_backfill_loads_every_partition_once_and_fetches_one_code(
    server: LocalExportServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    status, runs, lake_dir = run_backfill(server, tmp_path, PARTITION_KEYS)
    print(
        f"48-hour key-pair backfill: {status} in {time.monotonic() - started:.0f} s, "
        f"{server.codes_issued} code(s) fetched, {len(export_calls(server))} export calls"
    )

    assert_every_run_succeeded_with_exact_rows(server, status, runs, lake_dir, PARTITION_KEYS)
    assert server.codes_issued == 1
    assert 401 not in export_calls(server)
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        messages = [
            str(record.user_message) + str(record.dagster_event and record.dagster_event.event_specific_data)
            for run in runs
            for record in instance.all_logs(run.run_id)
        ]
    assert not [m for m in messages if "could not set lock" in m.lower() or "conflicting lock" in m.lower()]
    with read_lake(lake_dir) as conn:
        ledger = conn.execute(
            "SELECT status, count(*), count(DISTINCT (event_type, partition_key)) "
            "FROM growingio._load_ledger GROUP BY 1"
        ).fetchall()
    assert ledger == [("LOADED", 480, 480)], "one successful attempt per (type, partition)"


@pytest.mark.slow
@pytest.mark.parametrize("server", [50], indirect=True)
def test_a_code_invalidated_mid_backfill_is_replaced_by_one_refresh(server: LocalExportServer, tmp_path: Path) -> None:
    partition_keys = PARTITION_KEYS[:INVALIDATED_BACKFILL_HOURS]
    outsiders: list[str] = []

    def invalidate_once_runs_are_under_way() -> None:
        deadline = time.monotonic() + PROGRESS_TIMEOUT_S
        while len(export_calls(server)) < INVALIDATE_AFTER_EXPORT_CALLS and time.monotonic() < deadline:
            time.sleep(0.1)
        outsiders.append(invalidate_from_outside(server))

    status, runs, lake_dir = run_backfill(server, tmp_path, partition_keys, invalidate_once_runs_are_under_way)

    assert_every_run_succeeded_with_exact_rows(server, status, runs, lake_dir, partition_keys)
    assert outsiders, "the code was invalidated"
    calls = export_calls(server)
    assert 1 <= calls.count(401) <= 2, "only runs in flight with the old code were refused, once each"
    assert server.codes_issued == 3, "the backfill's code, the outsider's, and one refresh"
