"""Every fault the export server can inject, end to end through a real Dagster run and a real DuckDB file.

A run either ends with exactly the ground-truth rows, or fails with a specific message and leaves the
previously loaded rows as they were; either way the load ledger records the attempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline_tests.reliability_support import (
    FINISHED_PARTITION,
    assert_partition_equals_ground_truth,
    build_baseline,
    copy_baseline,
    ledger,
    materialize_partition,
    new_ledger_rows,
    start_server,
    step_failure_message,
    table_snapshot,
)

SELECTION = ["page"]
"""page has several 16 KiB parts per hour, so download faults hit one part of many."""


@dataclass(frozen=True)
class FaultCase:
    """A fault, how to inject it, and what the run must come to."""

    inject: Callable[[LocalExportServer], None] = lambda server: None
    server_settings: dict[str, Any] = field(default_factory=dict)
    run_settings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """A pattern the failure message matches; None: the run recovers."""
    ledger_status: str = "LOADED"
    ledger_error: str | None = None
    """A pattern the ledger's error_msg matches, when it is not ``error``."""


def _spend_rate_limit(server: LocalExportServer) -> None:
    """Use the token's only call of the current second, so the run's first call answers 429."""
    url = f"{server.base_url}/v2/insights/hour/{server.project_id}/{FINISHED_PARTITION}.json"
    assert httpx.get(url, headers={"Authorization": server.token}).status_code == 200


RECOVERING = {
    "api_5xx_burst": FaultCase(lambda s: s.faults.fail_next_api_calls(3, 503)),
    "api_502": FaultCase(lambda s: s.faults.fail_next_api_calls(1, 502)),
    # One call per 4 s: the run's first call comes well within 4 s of the spent one, so it answers 429.
    "api_429": FaultCase(_spend_rate_limit, server_settings={"calls_per_second": 0.25}),
    "api_stall_past_read_timeout": FaultCase(
        lambda s: s.faults.stall_next_api_calls(1, 30.0), run_settings={"read_timeout_s": 0.3}
    ),
    "truncated_download": FaultCase(lambda s: s.faults.truncate_next_downloads(2)),
    "corrupt_gzip_part": FaultCase(lambda s: s.faults.corrupt_next_downloads(2)),
    "content_length_mismatch": FaultCase(lambda s: s.faults.wrong_length_next_downloads(2)),
    "running_then_finished": FaultCase(server_settings={"running_polls": 2}, run_settings={"running_deadline_s": 30.0}),
}

FAILING = {
    "api_5xx_persistent": FaultCase(
        lambda s: s.faults.fail_next_api_calls(100, 503),
        run_settings={"max_retries": 2},
        error=r"failed 3 times; last: HTTP 503",
        ledger_status="FAILED",
    ),
    "api_429_persistent": FaultCase(
        _spend_rate_limit,
        server_settings={"calls_per_second": 0.1},
        run_settings={"max_retries": 0},
        error=r"failed 1 time; last: HTTP 429",
        ledger_status="FAILED",
    ),
    "api_stall_persistent": FaultCase(
        lambda s: s.faults.stall_next_api_calls(100, 30.0),
        run_settings={"read_timeout_s": 0.3, "max_retries": 1},
        error=r"failed 2 times; last: ReadTimeout",
        ledger_status="FAILED",
    ),
    "truncated_download_persistent": FaultCase(
        lambda s: s.faults.truncate_next_downloads(1000),
        run_settings={"max_link_refreshes": 1},
        error=r"could not download \d+ of \d+ page part\(s\) intact",
        ledger_status="FAILED",
    ),
    "corrupt_gzip_persistent": FaultCase(
        lambda s: s.faults.corrupt_next_downloads(1000),
        run_settings={"max_link_refreshes": 1},
        error=r"gzip check failed",
        ledger_status="FAILED",
    ),
    "content_length_mismatch_persistent": FaultCase(
        lambda s: s.faults.wrong_length_next_downloads(1000),
        run_settings={"max_link_refreshes": 1},
        error=r"gzip check failed",
        ledger_status="FAILED",
    ),
    "expired_links": FaultCase(
        lambda s: s.faults.expire_links_immediately(),
        run_settings={"max_link_refreshes": 1},
        error=r"page part.*HTTP 403",
        ledger_status="FAILED",
    ),
    "running_never_finishes": FaultCase(
        server_settings={"running_polls": 10_000},
        error=r"still RUNNING after waiting",
        ledger_status="RUNNING",
    ),
    "export_error": FaultCase(
        server_settings={"error_hours": {FINISHED_PARTITION[:10]: "export job crashed: disk full"}},
        error=r"failed on the vendor's side: export job crashed: disk full",
        ledger_status="ERROR",
        ledger_error=r"^export job crashed: disk full$",
    ),
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every type of the partition loaded once; each test works on a copy."""
    return build_baseline(tmp_path_factory.mktemp("baseline") / "events.duckdb")


@pytest.fixture
def faulty_run(baseline: Path, tmp_path: Path):
    """Runs the page asset once against a fresh server with ``case``'s fault injected."""
    started: list[LocalExportServer] = []

    def run(case: FaultCase):
        duckdb_path = copy_baseline(baseline, tmp_path)
        before_rows, before_ledger = table_snapshot(duckdb_path), ledger(duckdb_path)
        server = start_server(**case.server_settings)
        started.append(server)
        case.inject(server)
        result = materialize_partition(
            server, duckdb_path, selection=SELECTION, **case.run_settings, raise_on_error=False
        )
        return server, duckdb_path, result, before_rows, new_ledger_rows(duckdb_path, before_ledger)

    yield run
    for server in started:
        server.stop()


@pytest.mark.parametrize("case", RECOVERING.values(), ids=RECOVERING.keys())
def test_a_transient_fault_is_retried_and_the_partition_equals_ground_truth(faulty_run, case: FaultCase) -> None:
    server, duckdb_path, result, before, attempts = faulty_run(case)

    assert result.success
    assert_partition_equals_ground_truth(server, duckdb_path, SELECTION)
    after = table_snapshot(duckdb_path)
    assert {name: rows for name, rows in after.items() if name not in SELECTION} == {
        name: rows for name, rows in before.items() if name not in SELECTION
    }, "types outside the run are untouched"
    assert [(row["event_type"], row["status"]) for row in attempts] == [("page", "LOADED")]
    assert attempts[0]["rows_loaded"] == len(server.ground_truth("page", FINISHED_PARTITION[:10]))
    if case.inject is _spend_rate_limit:
        assert 429 in {call.status for call in server.api_calls}, "the fault really happened"


@pytest.mark.parametrize("case", FAILING.values(), ids=FAILING.keys())
def test_a_lasting_fault_fails_the_run_with_a_specific_message_and_keeps_the_rows(faulty_run, case: FaultCase) -> None:
    server, duckdb_path, result, before, attempts = faulty_run(case)

    assert not result.success
    assert re.search(case.error, step_failure_message(result)), step_failure_message(result)
    assert table_snapshot(duckdb_path) == before, "the previously loaded rows are intact"
    assert [(row["event_type"], row["status"]) for row in attempts] == [("page", case.ledger_status)]
    assert re.search(case.ledger_error or case.error, attempts[0]["error_msg"] or ""), attempts[0]["error_msg"]
    assert server.token not in (attempts[0]["error_msg"] or "")
    assert "Signature=" not in step_failure_message(result)
