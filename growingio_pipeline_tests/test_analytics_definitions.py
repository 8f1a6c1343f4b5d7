"""The dbt models as Dagster assets: partitions, lineage, checks, descriptions and the automation condition."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

import dagster as dg
import yaml

from growingio_pipeline.analytics_assets import ANALYTICS_AUTOMATION_SENSOR_NAME, dbt_resource
from growingio_pipeline.analytics_warehouse import DBT_PROJECT_DIR
from growingio_pipeline.definitions import build_definitions
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline_tests.analytics_harness import ANALYTICS_ASSETS, MODELS
from growingio_pipeline_tests.pipeline_harness import (
    EVENT_ASSETS,
    PARTITIONS_DEF,
    export_resource,
    materialize_partition,
    warehouse_resource,
)

MODEL_KEYS = [dg.AssetKey(["analytics", model]) for model in MODELS]


def test_every_model_is_an_hourly_asset_downstream_of_the_raw_tables() -> None:
    assert set(ANALYTICS_ASSETS.keys) == set(MODEL_KEYS)
    assert ANALYTICS_ASSETS.partitions_def == PARTITIONS_DEF
    sessions_deps = ANALYTICS_ASSETS.asset_deps[dg.AssetKey(["analytics", "sessions"])]
    assert {dg.AssetKey(["growingio", name]) for name in ("visit", "page", "action", "custom_event")} <= sessions_deps
    assert dg.AssetKey(["analytics", "visitors"]) in ANALYTICS_ASSETS.asset_deps[dg.AssetKey(["analytics", "users"])]


def test_dbt_tests_are_asset_checks_on_the_models() -> None:
    checked = {check.asset_key for check in ANALYTICS_ASSETS.check_keys}

    assert len(ANALYTICS_ASSETS.check_keys) >= 15
    assert checked >= {
        dg.AssetKey(["analytics", model]) for model in ("sessions", "page_views", "users", "daily_metrics")
    }


def test_every_model_column_has_a_description() -> None:
    for key in MODEL_KEYS:
        spec = ANALYTICS_ASSETS.specs_by_key[key]
        columns = spec.metadata["dagster/column_schema"].columns
        assert columns, key
        undescribed = [column.name for column in columns if not (column.description or "").strip()]
        assert spec.description and undescribed == [], (key, undescribed)


def test_the_models_automation_sensor_runs_by_default_and_stays_off_when_asked() -> None:
    def status(defs: dg.Definitions) -> dg.DefaultSensorStatus:
        [sensor] = [sensor for sensor in defs.sensors if sensor.name == ANALYTICS_AUTOMATION_SENSOR_NAME]
        return sensor.default_status

    assert status(build_definitions("hour", "202611150000")) is dg.DefaultSensorStatus.RUNNING
    off = build_definitions("hour", "202611150000", analytics_automation=False)
    assert status(off) is dg.DefaultSensorStatus.STOPPED


def test_a_loaded_hour_makes_the_automation_request_exactly_that_hour_of_every_model(
    local_server: LocalExportServer, tmp_path: Path
) -> None:
    # Evaluating conditions runs nothing: the resources are only there for the definitions to be complete.
    resources = {
        "growingio": export_resource(local_server),
        "warehouse": warehouse_resource(tmp_path),
        "dbt": dbt_resource(),
    }
    defs = dg.Definitions(assets=[EVENT_ASSETS, ANALYTICS_ASSETS], resources=resources)
    partition_key = "202611290300"
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        nothing_loaded = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)

        materialize_partition(local_server, tmp_path, partition_key, instance=instance)
        after_load = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=nothing_loaded.cursor)
        next_tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after_load.cursor)

    assert nothing_loaded.total_requested == 0
    assert {key: after_load.get_requested_partitions(key) for key in MODEL_KEYS} == {
        key: {partition_key} for key in MODEL_KEYS
    }
    assert next_tick.total_requested == 0  # requested once, not again while its run has not happened


def test_every_raw_column_is_described_for_dbt() -> None:
    sources = yaml.safe_load((DBT_PROJECT_DIR / "models" / "sources.yml").read_text())["sources"][0]["tables"]
    described = {
        table["name"]: {column["name"] for column in table["columns"] if column["description"].strip()}
        for table in sources
    }

    assert set(described) == set(EVENT_TYPES)
    for event_type in EVENT_TYPES.values():
        assert set(event_type.column_names) <= described[event_type.name], event_type.name


_READ_MANIFEST = """
import json, time
from growingio_pipeline.analytics_assets import DBT_PROJECT, prepare_manifest
prepare_manifest()
seen, deadline = set(), time.monotonic() + 15
while time.monotonic() < deadline:  # keep reading while the other processes start: never half a manifest
    seen.add(json.loads(DBT_PROJECT.manifest_path.read_text())["metadata"]["invocation_id"])
print(" ".join(sorted(seen)))
"""


def test_processes_starting_at_once_parse_the_project_once_and_read_whole_manifests() -> None:
    os.utime(DBT_PROJECT_DIR / "models" / "events.sql")  # the manifest is now older than a project file
    processes = []
    for _ in range(3):
        processes.append(subprocess.Popen([sys.executable, "-c", _READ_MANIFEST], stdout=PIPE, stderr=PIPE, text=True))
        time.sleep(2)  # each starts while the one before may be parsing, or reading what it parsed
    outputs = [process.communicate(timeout=300) for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], [stderr[-2000:] for _, stderr in outputs]
    assert len({stdout.strip() for stdout, _ in outputs}) == 1, "one parse, read whole by all three"
    assert len(outputs[0][0].split()) == 1, outputs
