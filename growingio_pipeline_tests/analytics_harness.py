"""Runs the raw and the analytics assets hour by hour against a local export server, and compares model tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

from growingio_pipeline.analytics_assets import (
    build_analytics_assets,
    dbt_resource,
    environment_set,
    window_environment,
)
from growingio_pipeline.analytics_warehouse import dbt_environment
from growingio_pipeline.lake import LakeSettings
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.partitions import KEY_FORMATS
from growingio_pipeline.resources import WarehouseResource
from growingio_pipeline_tests.pipeline_harness import PARTITIONS_DEF, materialize_partition, read_lake

ANALYTICS_ASSETS = build_analytics_assets(PARTITIONS_DEF)
MODELS = (
    "events",
    "sessions",
    "page_views",
    "custom_event_rows",
    "custom_events",
    "visitors",
    "users",
    "daily_metrics",
    "ads_attribution",
    "session_hours",
)
USER_MODELS = MODELS[:-1]
"""The models but the session index, whose rows carry a fingerprint of the raw rows they were built from."""


def hour_keys(first: datetime, hours: int) -> list[str]:
    """``hours`` consecutive partition keys from ``first`` (a Beijing datetime)."""
    return [(first + timedelta(hours=h)).strftime(KEY_FORMATS["hour"]) for h in range(hours)]


def partition_run_environment(partition_key: str) -> dict[str, str]:
    """dbt's window variables for the partition run of ``partition_key`` alone."""
    return window_environment(*hour_keys(datetime.strptime(partition_key, KEY_FORMATS["hour"]), 2))


def run_hour(server: LocalExportServer, lake_dir: Path, partition_key: str) -> dg.ExecuteInProcessResult:
    """One real Dagster run for one hour: load the ten raw types, then the models."""
    return materialize_partition(
        server, lake_dir, partition_key, downstream=[ANALYTICS_ASSETS], downstream_resources={"dbt": dbt_resource()}
    )


def load_hour_by_hour(server: LocalExportServer, lake_dir: Path, hours: Sequence[str]) -> Path:
    """Load ``hours`` into the lake in ``lake_dir``, each with its models in its own partition run, in order."""
    for key in hours:
        result = run_hour(server, lake_dir, key)
        assert result.success
        failed = [check.check_name for check in result.get_asset_check_evaluations() if not check.passed]
        assert failed == [], f"asset checks failed in {key}: {failed}"
    return lake_dir


def run_models(warehouse: WarehouseResource, partition_key: str) -> dg.ExecuteInProcessResult:
    """One real Dagster run of the models alone for one hour (the raw tables as they are in the lake)."""
    return dg.materialize(
        [ANALYTICS_ASSETS], partition_key=partition_key, resources={"warehouse": warehouse, "dbt": dbt_resource()}
    )


def run_dbt(lake_dir: Path, args: Sequence[str], target: Path) -> Path:
    """``dbt <args>`` on the lake inside ``lake_dir``, with its output in ``target`` (absolute); returns it."""
    with environment_set(dbt_environment(LakeSettings.in_folder(lake_dir))):
        dbt_resource().cli(list(args), target_path=target).wait()
    return target


def model_rows(lake_dir: Path, models: Sequence[str] = MODELS) -> dict[str, list[tuple]]:
    """Every model's rows, sorted, for exact comparisons."""
    with read_lake(lake_dir) as conn:
        return {
            model: sorted(conn.execute(f"SELECT * FROM analytics.{model}").fetchall(), key=repr) for model in models
        }


def query(lake_dir: Path, sql: str) -> list[tuple]:
    with read_lake(lake_dir) as conn:
        return conn.execute(sql).fetchall()
