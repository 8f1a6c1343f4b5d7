"""Key-pair mode end to end in one process: the export client and real Dagster runs against the local server.

- The client fetches one code, reuses it, and recovers from an outside invalidation with one refresh.
- A half-set configuration fails before any request, naming what is missing.
- A wrong private key fails with "check the private key and project UID".
- Neither the private key nor any code appears in logs, metadata, errors, the ledger or the DuckDB file.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from growingio_pipeline.auth import code_request_body
from growingio_pipeline.auth_code_store import TABLE
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.export_api import AuthenticationError, ExportClient, ExportStatus
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline_tests.conftest import client_for, start_server
from growingio_pipeline_tests.pipeline_harness import FINISHED_PARTITION, materialize_partition
from growingio_pipeline_tests.reliability_support import assert_partition_equals_ground_truth, step_failure_message
from growingio_pipeline_tests.test_reliability_security import everything_a_run_leaves

PRIVATE_KEY = "priv-5e0c7a31d2f94b68"
KEY_PAIR = {"client_id": "pub-3c1d9e7a", "private_key": PRIVATE_KEY, "project_uid": "nxog09md"}
HOUR = FINISHED_PARTITION[:10]


@pytest.fixture
def server():
    started = start_server(**KEY_PAIR)
    yield started
    started.stop()


def key_pair_settings(server: LocalExportServer, catalog: Path, **overrides: Any) -> dict[str, Any]:
    """Resource (and client) settings in key-pair mode: no token."""
    return {"token": None, "lake_catalog": str(catalog), **KEY_PAIR, **overrides}


def key_pair_client(server: LocalExportServer, catalog: Path, **overrides: Any) -> ExportClient:
    return client_for(server, **key_pair_settings(server, catalog, **overrides))


def stored_codes(catalog: Path) -> list[str]:
    with sqlite3.connect(catalog) as conn:
        return [code for (code,) in conn.execute(f"SELECT code FROM {TABLE}")]


def invalidate_from_outside(server: LocalExportServer) -> str:
    """Another user of the key pair gets a new code, which invalidates the pipeline's."""
    body = code_request_body(PRIVATE_KEY, server.project_uid, server.project_id, time.time_ns() // 10**6)
    answer = httpx.post(f"{server.base_url}/auth/token", content=body, headers={"X-Client-Id": server.client_id})
    assert answer.status_code == 200, answer.text
    return answer.json()["code"]


def test_the_client_fetches_one_code_and_reuses_it(server: LocalExportServer, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.sqlite"
    with key_pair_client(server, catalog) as first, key_pair_client(server, catalog) as second:
        results = [first.request_export("hour", HOUR), second.request_export("hour", HOUR)]

    assert [result.status for result in results] == [ExportStatus.FINISHED] * 2
    assert server.codes_issued == 1
    assert [call.path for call in server.api_calls].count("/auth/token") == 1


def test_an_invalidated_code_is_replaced_once(server: LocalExportServer, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.sqlite"
    with key_pair_client(server, catalog) as first, key_pair_client(server, catalog) as second:
        first.request_export("hour", HOUR)
        invalidate_from_outside(server)
        results = [first.request_export("hour", HOUR), second.request_export("hour", HOUR)]

    assert [result.status for result in results] == [ExportStatus.FINISHED] * 2
    assert server.codes_issued == 3, "ours, the outsider's, and one replacement shared by both clients"
    statuses = [call.status for call in server.api_calls if call.path != "/auth/token"]
    assert statuses == [200, 401, 200, 200], "one refused call, then the replacement; the second client is not refused"


def test_a_half_set_key_pair_fails_before_any_request(server: LocalExportServer, tmp_path: Path) -> None:
    settings = key_pair_settings(server, tmp_path / "c.sqlite", private_key=None)
    result = materialize_partition(server, tmp_path / "events.duckdb", raise_on_error=False, **settings)

    assert not result.success
    assert (
        "GrowingIO key-pair credentials incomplete (no GROWINGIO_TOKEN): set GROWINGIO_PRIVATE_KEY in the environment"
        in step_failure_message(result)
    )
    assert not server.api_calls


def test_a_wrong_private_key_fails_with_a_clear_message(
    server: LocalExportServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "priv-wrong-0a1b2c3d"
    settings = key_pair_settings(server, tmp_path / "c.sqlite", private_key=wrong)
    result = materialize_partition(server, tmp_path / "events.duckdb", raise_on_error=False, **settings)

    assert not result.success
    message = step_failure_message(result)
    assert "GrowingIO refused the auth code request (HTTP 401" in message
    assert "check the private key and project UID" in message
    assert wrong not in message + caplog.text
    assert server.codes_issued == 0
    with (
        key_pair_client(server, tmp_path / "c.sqlite", private_key=wrong) as client,
        pytest.raises(AuthenticationError, match="check the private key and project UID"),
    ):
        client.request_export("hour", HOUR)


def test_key_pair_runs_load_exact_rows_and_leave_no_secret_anywhere(
    server: LocalExportServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    catalog, duckdb_path = tmp_path / "lake" / "catalog.sqlite", tmp_path / "events.duckdb"
    settings = key_pair_settings(server, catalog)
    instance_dir = tmp_path / "dagster_home"
    instance_dir.mkdir()
    with dg.DagsterInstance.local_temp(str(instance_dir)) as instance:
        loaded = materialize_partition(server, duckdb_path, instance=instance, raise_on_error=False, **settings)
        codes = stored_codes(catalog)
        codes.append(invalidate_from_outside(server))
        reloaded = materialize_partition(server, duckdb_path, instance=instance, raise_on_error=False, **settings)
        codes += stored_codes(catalog)
        # A wrong key only shows when a code is fetched: with the shared code stored, it would not be needed.
        no_code_yet = {"private_key": "priv-x1", "lake_catalog": str(tmp_path / "empty.sqlite")}
        wrong_key = materialize_partition(
            server, duckdb_path, instance=instance, raise_on_error=False, **{**settings, **no_code_yet}
        )
        results = [loaded, reloaded, wrong_key]

        assert [result.success for result in results] == [True, True, False]
        assert server.codes_issued == 3 and len(set(codes)) == 3
        assert_partition_equals_ground_truth(server, duckdb_path, EVENT_TYPES)
        left = everything_a_run_leaves(instance, instance_dir, duckdb_path, results) + caplog.text
    assert "replacing it once" in left and "check the private key" in left, "the search covers the auth messages"
    for secret in [PRIVATE_KEY, *codes]:
        assert secret not in left
