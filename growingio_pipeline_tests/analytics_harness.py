"""Runs the raw and the analytics assets hour by hour against a local export server, and compares model tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb

from growingio_pipeline.analytics_assets import build_analytics_assets, dbt_resource, environment_set
from growingio_pipeline.analytics_warehouse import dbt_environment
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.partitions import KEY_FORMATS
from growingio_pipeline_tests.pipeline_harness import PARTITIONS_DEF, materialize_partition

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
)


def hour_keys(first: datetime, hours: int) -> list[str]:
    """``hours`` consecutive partition keys from ``first`` (a Beijing datetime)."""
    return [(first + timedelta(hours=h)).strftime(KEY_FORMATS["hour"]) for h in range(hours)]


def run_hour(server: LocalExportServer, duckdb_path: Path, partition_key: str) -> dg.ExecuteInProcessResult:
    """One real Dagster run for one hour: load the ten raw types, then the models."""
    return materialize_partition(
        server, duckdb_path, partition_key, downstream=[ANALYTICS_ASSETS], downstream_resources={"dbt": dbt_resource()}
    )


def parse_once(duckdb_path: Path, target: Path) -> Path:
    """``dbt parse`` for ``duckdb_path`` into ``target`` (absolute); returns it.

    With ``DBT_TARGET_PATH`` set to ``target``, dagster-dbt copies its ``partial_parse.msgpack`` into every
    run: dbt then skips parsing, which it redoes in full whenever the warehouse path (the profile) differs.
    """
    with environment_set(dbt_environment(duckdb_path)):
        dbt_resource().cli(["parse", "--quiet"], target_path=target).wait()
    return target


def full_rebuild(duckdb_path: Path) -> None:
    """``dbt build --full-refresh``: every model from all raw rows, as a first deployment would build it."""
    with environment_set(dbt_environment(duckdb_path)):
        dbt_resource().cli(["build", "--full-refresh"], target_path=Path("target") / "full-refresh").wait()


def generate_docs(duckdb_path: Path, target: Path) -> Path:
    """``dbt docs generate`` into ``target`` (an absolute path); returns it."""
    with environment_set(dbt_environment(duckdb_path)):
        dbt_resource().cli(["docs", "generate"], target_path=target).wait()
    return target


def model_rows(duckdb_path: Path, models: Sequence[str] = MODELS) -> dict[str, list[tuple]]:
    """Every model's rows, sorted, for exact comparisons."""
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        return {
            model: sorted(conn.execute(f"SELECT * FROM analytics.{model}").fetchall(), key=repr) for model in models
        }


def query(duckdb_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()
