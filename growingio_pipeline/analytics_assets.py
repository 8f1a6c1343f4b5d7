"""The dbt models as Dagster assets: hourly partitions like the raw tables, dbt tests as asset checks.

A partition run passes its window to dbt in the environment (``window_environment``), and every model
rebuilds only what those hours can change (see ``dbt_project/macros/partition_window.sql``). The models
update on their own once an hour is loaded: see ``ANALYTICS_AUTOMATION``.
"""

import fcntl
import importlib.metadata
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets
from packaging import version

from growingio_pipeline.analytics_warehouse import DBT_PROJECT_DIR, dbt_environment
from growingio_pipeline.resources import WarehouseResource

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR)
ANALYTICS_JOB = "growingio_analytics_job"

ANALYTICS_AUTOMATION = (
    dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window()).with_label("eager")
)
"""Run a model's partition once its raw hour (or an upstream model) is updated and nothing upstream runs.

Why an automation condition and not a sensor: it is evaluated per asset and partition, so a backfill
of old hours updates their models too (``eager`` alone only looks at the latest hour); it waits for
in-progress upstream runs and never requests a partition twice; and it needs no cursor code of ours.
"""

ANALYTICS_AUTOMATION_SENSOR_NAME = "growingio_analytics_automation"


def build_analytics_automation_sensor(
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates ``ANALYTICS_AUTOMATION``; running by default, so models follow loads without
    anyone turning it on."""
    return dg.AutomationConditionSensorDefinition(
        ANALYTICS_AUTOMATION_SENSOR_NAME,
        target=dg.AssetSelection.groups("analytics"),
        default_status=default_status,
        description="Evaluates the analytics models' automation condition every 30 s and launches their runs.",
    )


# Two model runs on a PostgreSQL catalog (two hours at once) can meet a commit conflict on the same model table:
# dbt then fails the model, and the run is retried whole (a partition run is idempotent).
_CONFLICT_RETRY = dg.RetryPolicy(max_retries=5, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class AnalyticsTranslator(DagsterDbtTranslator):
    """Models are ``analytics/<model>`` in group ``analytics``; sources are the raw ``growingio/<type>`` assets."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return dg.AssetKey(["analytics", dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "analytics"

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition[dg.AssetKey] | None:
        return ANALYTICS_AUTOMATION


def prepare_manifest() -> None:
    """Parse the dbt project when its manifest is missing or older than any project file.

    The profile names no lake (the plugin reads it from the environment at run time), so one parse serves
    every lake and every hour. Processes starting at once (a daemon, its code server, runs) parse once: one
    holds a lock while it parses into a folder of its own, then moves the manifest into place whole, so no
    process ever reads half a manifest.
    """
    manifest = DBT_PROJECT.manifest_path
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest.parent / ".parse-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _manifest_is_current(manifest):
            return
        parse_dir = Path(tempfile.mkdtemp(prefix="parse-", dir=manifest.parent))
        try:
            dbt_resource().cli(["parse", "--quiet"], target_path=parse_dir).wait()
            os.replace(parse_dir / manifest.name, manifest)
        finally:
            shutil.rmtree(parse_dir, ignore_errors=True)


def _manifest_is_current(manifest: Path) -> bool:
    sources = [
        path for path in DBT_PROJECT_DIR.rglob("*") if path.suffix in (".sql", ".yml") and "target" not in path.parts
    ]
    return manifest.exists() and manifest.stat().st_mtime >= max(path.stat().st_mtime for path in sources)


def window_environment(start_key: str, end_key: str) -> dict[str, str]:
    """The partition window for dbt: partition keys (yyyyMMddHHmm, Beijing), end exclusive."""
    return {"GROWINGIO_ANALYTICS_START_KEY": start_key, "GROWINGIO_ANALYTICS_END_KEY": end_key}


def partition_window(context: AssetExecutionContext) -> tuple[str, str]:
    """The run's partition keys as (first key, key after the last)."""
    partitions_def = context.assets_def.partitions_def
    window = context.partition_time_window
    return window.start.strftime(partitions_def.fmt), window.end.strftime(partitions_def.fmt)


@contextmanager
def environment_set(changes: Mapping[str, str]) -> Iterator[None]:
    """Set ``changes`` in this process's environment (dbt subprocesses inherit it), restored afterwards."""
    previous = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_analytics_assets(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The dbt models as one multi-asset, partitioned like the raw assets."""
    prepare_manifest()

    @dbt_assets(
        manifest=DBT_PROJECT.manifest_path,
        project=DBT_PROJECT,
        partitions_def=partitions_def,
        dagster_dbt_translator=AnalyticsTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
        # One run per hour, in order: a single run over a range would still be exact, but the per-hour runs
        # keep each run's work small and its checks per partition.
        backfill_policy=dg.BackfillPolicy.multi_run(1),
        retry_policy=_CONFLICT_RETRY,
    )
    def analytics_models(
        context: AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
    ) -> Iterator[Any]:
        settings = warehouse.lake_settings()
        environment = {**dbt_environment(settings), **window_environment(*partition_window(context))}
        # Each model takes its turn with this host's loads on a SQLite catalog (the project's hooks).
        with environment_set(environment):
            yield from dbt.cli(["build"], context=context).stream()

    return analytics_models


class InstalledDbtCliResource(DbtCliResource):
    """dagster-dbt's dbt CLI resource, told the version of the dbt-core installed in this Python.

    dagster-dbt learns the version by running ``dbt --version`` once per resource instance, and a run gets
    a fresh instance: that was a second dbt start (seconds) in every hourly run. The dbt it runs is the
    one beside this Python (``dbt_resource``), so the installed package's version is the same answer.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))


def dbt_resource(project_dir: Path = DBT_PROJECT.project_dir) -> DbtCliResource:
    """The dbt CLI resource for the project (or the dbt project in ``project_dir``), with the dbt installed beside
    this Python (not on PATH in a venv)."""
    beside_python = Path(sys.executable).parent / "dbt"
    return InstalledDbtCliResource(
        project_dir=str(project_dir), dbt_executable=str(beside_python) if beside_python.exists() else "dbt"
    )
