"""Lake maintenance: it runs beside loads without losing a row, and the Dagster job reports files before and after."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import dagster as dg

from growingio_pipeline.definitions import defs
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.maintenance import maintain
from growingio_pipeline.maintenance_job import MAINTENANCE_JOB, lake_maintenance_job
from growingio_pipeline_tests.pipeline_harness import ledger, materialize_partition, warehouse_resource
from growingio_pipeline_tests.reliability_support import (
    assert_partition_equals_ground_truth,
    start_server,
    start_worker,
    worker_environment,
)

PARTITIONS = ("202611290100", "202611290200", "202611290300")
WORKER_TIMEOUT_S = 600


def parquet_files(lake_dir: Path) -> int:
    """Parquet files on disk under the lake's data folder."""
    return len(list((lake_dir / "files").rglob("*.parquet")))


def test_maintenance_beside_loads_loses_no_row_and_then_removes_replaced_files(tmp_path: Path) -> None:
    server = start_server()
    try:
        server.prepare([key[:10] for key in PARTITIONS])
        lake_dir = tmp_path / "lake"
        for key in PARTITIONS:  # loaded once: the reloads below replace these rows, leaving their files behind
            assert materialize_partition(server, lake_dir, key).success
        env = worker_environment(server, lake_dir)
        workers = {key: start_worker(env, tmp_path / f"worker-{key}.log", key) for key in PARTITIONS}
        passes = 0
        with connect_lake(LakeSettings.in_folder(lake_dir)) as conn:
            while any(worker.poll() is None for worker in workers.values()):
                maintain(conn)  # merges and deletes while the reloads write; default age keeps their snapshots
                passes += 1
            for key, worker in workers.items():
                log = (tmp_path / f"worker-{key}.log").read_text()
                assert worker.wait(timeout=WORKER_TIMEOUT_S) == 0, f"the reload of {key} failed:\n{log[-4000:]}"
            files_before = parquet_files(lake_dir)
            final = maintain(conn, timedelta(0))

        assert passes >= 1
        for key in PARTITIONS:
            assert_partition_equals_ground_truth(server, lake_dir, EVENT_TYPES, key)
        loads = Counter((row["event_type"], row["partition_key"]) for row in ledger(lake_dir))
        assert loads == {(name, key): 2 for name in EVENT_TYPES for key in PARTITIONS}, "every attempt recorded"
        assert final.after.stored_files < final.before.stored_files, "the replaced rows' files were deleted"
        assert final.after.live_files == final.after.stored_files, "only files the current snapshot reads are left"
        assert final.after.awaiting_deletion == 0
        assert parquet_files(lake_dir) == files_before - (final.before.stored_files - final.after.stored_files)
    finally:
        server.stop()


def test_the_maintenance_job_reports_files_and_bytes_before_and_after(local_server, tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    for _ in range(2):
        assert materialize_partition(local_server, lake_dir, selection=["page"]).success

    result = lake_maintenance_job.execute_in_process(
        resources={"warehouse": warehouse_resource(lake_dir)},
        run_config={"ops": {"maintain_lake": {"config": {"snapshot_age_days": 0}}}},
    )

    assert result.success
    [output] = [event for event in result.all_events if event.event_type_value == "STEP_OUTPUT"]
    metadata = {key: value.value for key, value in output.event_specific_data.metadata.items()}
    for name in ("live_files", "live_bytes", "stored_files", "stored_bytes", "awaiting_deletion"):
        assert f"{name}_before" in metadata and f"{name}_after" in metadata
    assert metadata["stored_files_after"] < metadata["stored_files_before"]
    assert metadata["stored_bytes_after"] < metadata["stored_bytes_before"]
    assert metadata["snapshots_expired"] > 0


def test_the_daily_schedule_is_on_by_default() -> None:
    schedule = defs.resolve_schedule_def("growingio_lake_maintenance_daily")
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == MAINTENANCE_JOB
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("40 4 * * *", "Asia/Shanghai")
