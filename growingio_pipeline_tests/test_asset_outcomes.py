"""Every hour's outcome is on the asset, checks can run alone, and metadata is labelled for people.

Real Dagster runs (``dg.materialize``) against the local export server and a real lake.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from growingio_pipeline.assets import CHECKS_NEED_A_PARTITION
from growingio_pipeline.checks import CHECK_KINDS, EXPORT_STATUS, NEVER_TRIED, ROWS_COMPLETE
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.metadata import LINEAGE_DESCRIPTIONS, human_bytes
from growingio_pipeline_tests.pipeline_harness import (
    EVENT_ASSETS,
    FINISHED_PARTITION,
    export_resource,
    materialize_partition,
    warehouse_resource,
)

NOT_PRODUCED_YET = "202611300300"
"""03:00 Beijing on 2026-11-30: after the test servers' frozen clock, so NOT_EXISTS."""
MISLEADING_LINE = "did not yield or return expected outputs"


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def observations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetObservation]:
    """The run's observations by event type name."""
    found = [event.asset_observation_data.asset_observation for event in result.get_asset_observation_events()]
    return {observation.asset_key.path[-1]: observation for observation in found}


def log_messages(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(record.user_message for record in instance.all_logs(result.run_id))


def run_checks_alone(
    server, lake_dir: Path, instance: dg.DagsterInstance, partition_key: str | None
) -> dg.ExecuteInProcessResult:
    """A run of the 40 checks and no asset, as the UI launches one (with the partition as a run tag, if any)."""
    return dg.materialize(
        [EVENT_ASSETS],
        selection=dg.AssetSelection.all_asset_checks(),
        # materialize(partition_key=...) wants an asset to take the partitions from; the UI tags the run.
        tags={"dagster/partition": partition_key} if partition_key else None,
        resources={"growingio": export_resource(server), "warehouse": warehouse_resource(lake_dir)},
        instance=instance,
        raise_on_error=False,
    )


def test_a_not_exists_hour_is_observed_on_every_asset_without_a_missing_output_line(local_server, lake_dir, instance):
    result = materialize_partition(local_server, lake_dir, NOT_PRODUCED_YET, instance=instance)

    assert result.success
    observed = observations(result)
    assert set(observed) == set(EVENT_TYPES)
    page = observed["page"]
    assert page.partition == NOT_PRODUCED_YET
    assert page.metadata["status"].value == "NOT_EXISTS"
    assert page.metadata["request_time"].value.endswith(" Beijing (UTC+8)")
    assert page.metadata["window (Beijing)"].value == "2026-11-30 03:00 to 2026-11-30 04:00 Beijing (UTC+8)"
    assert page.metadata["window (UTC)"].value == "2026-11-29 19:00 to 2026-11-29 20:00 UTC"
    assert len(result.get_asset_check_evaluations()) == len(CHECK_KINDS) * len(EVENT_TYPES)
    assert MISLEADING_LINE not in log_messages(instance, result)


def test_an_error_hour_is_observed_with_the_vendors_message(make_local_server, lake_dir, instance):
    server = make_local_server(error_hours={FINISHED_PARTITION[:10]: "export job crashed: disk full"})

    result = materialize_partition(
        server, lake_dir, selection=["page", "visit"], instance=instance, raise_on_error=False
    )

    assert not result.success
    observed = observations(result)
    assert set(observed) == {"page", "visit"}, "each selected asset, and only those"
    assert observed["page"].metadata["status"].value == "ERROR"
    assert observed["page"].metadata["error_msg"].value == "export job crashed: disk full"


def test_an_hour_still_running_past_the_deadline_is_observed(make_local_server, lake_dir, instance):
    server = make_local_server(running_polls=1000)

    result = materialize_partition(server, lake_dir, selection=["page"], instance=instance, raise_on_error=False)

    assert observations(result)["page"].metadata["status"].value == "RUNNING"


def test_a_failed_hour_is_observed_with_the_failure(make_local_server, lake_dir, instance):
    server = make_local_server()
    server.faults.fail_next_api_calls(10, status=503)

    result = materialize_partition(
        server, lake_dir, selection=["page"], instance=instance, raise_on_error=False, max_retries=0
    )

    assert not result.success
    page = observations(result)["page"]
    assert page.metadata["status"].value == "FAILED"
    assert "503" in page.metadata["error_msg"].value
    assert page.metadata["request_time"].value == "none (the API gave no answer)"


def test_checks_alone_for_an_hour_are_evaluated_from_the_warehouse_without_an_api_call(
    local_server, lake_dir, instance
):
    materialize_partition(local_server, lake_dir)
    with connect_lake(LakeSettings.in_folder(lake_dir)) as conn:  # lose rows behind the pipeline's back
        conn.execute(
            "DELETE FROM growingio.page WHERE _partition_key = $key AND page_request_id = "
            "(SELECT min(page_request_id) FROM growingio.page WHERE _partition_key = $key)",
            {"key": FINISHED_PARTITION},
        )
    api_calls = len(local_server.api_calls)

    result = run_checks_alone(local_server, lake_dir, instance, FINISHED_PARTITION)

    assert result.success
    assert len(local_server.api_calls) == api_calls
    assert not result.get_asset_materialization_events()
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(CHECK_KINDS) * len(EVENT_TYPES)
    assert {e.partition for e in evaluations} == {FINISHED_PARTITION}
    failed = {(e.asset_key.path[-1], e.check_name) for e in evaluations if not e.passed}
    assert failed == {("page", ROWS_COMPLETE.name)}
    assert MISLEADING_LINE not in log_messages(instance, result)


def test_checks_alone_for_an_hour_never_tried_fail_the_export_status_with_what_to_do(local_server, lake_dir, instance):
    result = run_checks_alone(local_server, lake_dir, instance, FINISHED_PARTITION)

    status = [e for e in result.get_asset_check_evaluations() if e.check_name == EXPORT_STATUS.name]
    assert len(status) == len(EVENT_TYPES)
    assert all(not e.passed and e.description == NEVER_TRIED for e in status)
    assert not local_server.api_calls


def test_checks_alone_without_a_partition_fail_at_once_with_one_plain_sentence(local_server, lake_dir, instance):
    result = run_checks_alone(local_server, lake_dir, instance, None)

    assert not result.success
    error = result.failure_data_for_node("growingio_export").error
    assert error.message.strip().endswith(CHECKS_NEED_A_PARTITION)
    assert "DagsterInvariantViolationError" not in error.to_string()
    assert not local_server.api_calls
    assert not lake_dir.exists(), "nothing was touched"


def test_metadata_is_labelled_for_people(local_server, lake_dir):
    materialize_partition(local_server, lake_dir, selection=["page"])
    result = materialize_partition(local_server, lake_dir, "202611290400", selection=["page"])

    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    hour_rows = len(local_server.ground_truth("page", "2026112904"))
    assert metadata["dagster/partition_row_count"].value == hour_rows
    assert metadata["dagster/row_count"].value == hour_rows + len(local_server.ground_truth("page", "2026112903"))
    assert metadata["window (Beijing)"].value == "2026-11-29 04:00 to 2026-11-29 05:00 Beijing (UTC+8)"
    assert metadata["window (UTC)"].value == "2026-11-28 20:00 to 2026-11-28 21:00 UTC"
    assert metadata["download size"].value.endswith(" bytes)")
    preview = metadata["preview"].value
    assert preview.startswith("Times in Beijing time (UTC+8)")
    assert "2026-11-29 04:" in preview and "+08:00" in preview
    columns = {column.name: column.description for column in metadata["dagster/column_schema"].schema.columns}
    assert {name: columns[name] for name in LINEAGE_DESCRIPTIONS} == LINEAGE_DESCRIPTIONS
    assert "lineage" not in columns.values()


@pytest.mark.parametrize(
    ("size", "label"),
    [
        (0, "0 bytes"),
        (1023, "1,023 bytes"),
        (1536, "1.5 KiB (1,536 bytes)"),
        (73 * 2**20, "73.0 MiB (76,546,048 bytes)"),
    ],
)
def test_bytes_are_shown_in_binary_units(size: int, label: str) -> None:
    assert human_bytes(size) == label


def test_past_retention_the_checks_still_describe_the_rows_kept(make_local_server, lake_dir, instance):
    server = make_local_server()
    materialize_partition(server, lake_dir, selection=["page"])
    server.clock.advance(timedelta(days=16))

    materialize_partition(server, lake_dir, selection=["page"], instance=instance)
    result = run_checks_alone(server, lake_dir, instance, FINISHED_PARTITION)

    by_name = {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key.path[-1] == "page"}
    assert not by_name[EXPORT_STATUS.name].passed
    assert by_name[EXPORT_STATUS.name].severity == dg.AssetCheckSeverity.WARN
    assert by_name[ROWS_COMPLETE.name].passed
    assert by_name[ROWS_COMPLETE.name].metadata["rows_in_table"].value == len(server.ground_truth("page", "2026112903"))
