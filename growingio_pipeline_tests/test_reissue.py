"""Re-issued exports: a loaded hour that GrowingIO produces again is noticed by its parts and reloaded, once.

Real parts: the local export server (which re-issues an hour with other rows, ETags and Last-Modified), a lake
in a temporary folder, real Dagster runs, and the sensor evaluated against a real instance.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import dagster as dg
import pytest

from growingio_pipeline.catchup import CatchUpPolicy
from growingio_pipeline.event_types import BEIJING, EVENT_TYPES
from growingio_pipeline.export_api import ExportStatus
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.reissue import fingerprint, loaded_fingerprints
from growingio_pipeline.reissue_sensor import CHECKS_PER_TICK, REISSUE_TAG, build_reissue_sensor, next_batch
from growingio_pipeline.warehouse import FINGERPRINT_COLUMN, LEDGER_TABLE, LoadAttempt, ensure_schema, record_attempt
from growingio_pipeline_tests.conftest import LOCAL_SERVER_NOW, client_for
from growingio_pipeline_tests.pipeline_harness import (
    FINISHED_PARTITION,
    expected_rows,
    export_resource,
    ledger,
    loaded_rows,
    materialize_partition,
    warehouse_resource,
)

POLICY = CatchUpPolicy("hour", datetime(2026, 11, 15, tzinfo=BEIJING))
JOB = dg.define_asset_job("growingio_export_job", selection="*")
SENSOR = build_reissue_sensor(JOB, POLICY, clock=lambda: LOCAL_SERVER_NOW)
TYPES = ["page", "visit"]


def tick(instance: dg.DagsterInstance, server, lake_dir: Path, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"growingio": export_resource(server), "warehouse": warehouse_resource(lake_dir)},
    )
    return SENSOR(context)


def test_a_reissued_hour_is_reloaded_once_with_its_new_rows(local_server, tmp_path):
    lake = tmp_path / "lake"
    page = EVENT_TYPES["page"]
    materialize_partition(local_server, lake, selection=TYPES)
    first_rows = loaded_rows(lake, page, FINISHED_PARTITION)
    with dg.instance_for_test() as instance:
        assert not tick(instance, local_server, lake).run_requests, "nothing changed: no reload"

        local_server.reissue(FINISHED_PARTITION[:10])
        new_truth = expected_rows(local_server, page, FINISHED_PARTITION)
        assert new_truth != first_rows
        [request] = tick(instance, local_server, lake).run_requests
        assert request.partition_key == FINISHED_PARTITION
        assert sorted(key.path[-1] for key in request.asset_selection) == sorted(TYPES)
        assert request.tags[REISSUE_TAG] == ",".join(TYPES)

        # What the daemon would launch: the request's types, for its partition.
        materialize_partition(
            local_server, lake, request.partition_key, selection=[key.path[-1] for key in request.asset_selection]
        )
        assert loaded_rows(lake, page, FINISHED_PARTITION) == new_truth, "the new rows, each exactly once"
        assert not tick(instance, local_server, lake).run_requests, "reloaded: nothing left to do"

    fingerprints = [row[FINGERPRINT_COLUMN] for row in ledger(lake) if row["event_type"] == "page"]
    assert len(fingerprints) == 2
    assert fingerprints[0] != fingerprints[1]
    assert all(len(value) == 32 and "Signature" not in value for value in fingerprints)


def test_a_head_gives_the_versions_the_download_saw_and_a_reissue_changes_them(server, tmp_path):
    with client_for(server) as client:
        export = client.request_export("hour", FINISHED_PARTITION)
        assert export.status is ExportStatus.FINISHED
        downloaded = client.download_parts(export, "page", tmp_path / "parts")
        heads = client.part_versions(export, "page")
        assert heads == [part.version for part in downloaded]
        for part in downloaded:
            assert part.version.etag == f'"{hashlib.md5(part.path.read_bytes()).hexdigest()}"'
            assert part.version.size_bytes == part.path.stat().st_size
        server.clock.advance(timedelta(minutes=30))
        server.reissue(FINISHED_PARTITION[:10])
        reissued = client.request_export("hour", FINISHED_PARTITION)
        versions = client.part_versions(reissued, "page")
    assert fingerprint(versions) != fingerprint(heads)
    reissued_at = LOCAL_SERVER_NOW + timedelta(minutes=30)
    assert {version.last_modified for version in versions} == {
        format_datetime(reissued_at.astimezone(timezone.utc), usegmt=True)
    }
    assert not {version.etag for version in versions} & {version.etag for version in heads}


def test_each_tick_rechecks_a_few_hours_in_turn(local_server, tmp_path, conn):
    keys = [(datetime(2026, 11, 29, 0, tzinfo=BEIJING) + timedelta(hours=h)).strftime("%Y%m%d%H%M") for h in range(6)]
    for key in keys:
        record_attempt(
            conn,
            LoadAttempt(
                event_type="page",
                partition_key=key,
                export_type="hour",
                status="LOADED",
                started_at=datetime(2026, 11, 29, 4, tzinfo=timezone.utc),
                parts_fingerprint="0" * 32,  # not what the server serves: every check finds a change
            ),
        )
    with dg.instance_for_test() as instance:
        calls = len(local_server.api_calls)
        first = tick(instance, local_server, tmp_path / "lake")
        assert len(local_server.api_calls) - calls == CHECKS_PER_TICK, "one API call per hour checked"
        assert [request.partition_key for request in first.run_requests] == keys[:CHECKS_PER_TICK]
        second = tick(instance, local_server, tmp_path / "lake", cursor=first.cursor)
        assert [request.partition_key for request in second.run_requests] == keys[CHECKS_PER_TICK:] + keys[:2]
    assert not [call for call in local_server.api_calls if call.status == 429], "the API's 2 calls/s held"


def test_next_batch_goes_round_the_window():
    keys = ["a", "b", "c", "d", "e"]
    assert next_batch(keys, None, 2) == ["a", "b"]
    assert next_batch(keys, "b", 2) == ["c", "d"]
    assert next_batch(keys, "d", 3) == ["e", "a", "b"]
    assert next_batch(keys, "z", 2) == ["a", "b"]
    assert next_batch([], "b", 2) == []


def test_an_older_ledger_gets_the_fingerprint_column_once_and_its_rows_are_not_compared(tmp_path):
    conn = connect_lake(LakeSettings.in_folder(tmp_path / "lake"))
    try:
        ensure_schema(conn)
        conn.execute(f"ALTER TABLE {LEDGER_TABLE} DROP COLUMN {FINGERPRINT_COLUMN}")  # as an older version made it
        conn.execute(
            f"INSERT INTO {LEDGER_TABLE} (attempt_id, event_type, partition_key, export_type, status, finished_at) "
            "VALUES ('old', 'page', '202611290300', 'hour', 'LOADED', now())"
        )
        assert loaded_fingerprints(conn, "hour") == {}
        ensure_schema(conn)
        ensure_schema(conn)  # idempotent
        columns = [row[0] for row in conn.execute(f"DESCRIBE {LEDGER_TABLE}").fetchall()]
        assert columns.count(FINGERPRINT_COLUMN) == 1
        assert conn.execute(f"SELECT {FINGERPRINT_COLUMN} FROM {LEDGER_TABLE}").fetchall() == [(None,)]
        assert loaded_fingerprints(conn, "hour") == {}, "a load without a fingerprint cannot be compared"
    finally:
        conn.close()


def test_the_local_server_refuses_to_reissue_a_malformed_date(server):
    with pytest.raises(ValueError):
        server.reissue("2026-11-29")
