"""The demo command: it reports its progress and tables, gives the same tables when run again, and leaves
nothing running."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from growingio_pipeline.checks import CHECK_KINDS, asset_key
from growingio_pipeline.demo import MODEL_ANSWERS
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.resources import STAGING_FOLDER
from growingio_pipeline_tests.analytics_harness import MODELS
from growingio_pipeline_tests.conftest import PROJECT_ROOT
from growingio_pipeline_tests.dagster_processes import lingering_group_members, port_is_open
from growingio_pipeline_tests.pipeline_harness import table_snapshot

HOURS = 2
PAGE_ROWS_PER_HOUR = 100
DEMO_TIMEOUT_S = 300
PROGRESS_LINE = re.compile(
    rf"^\[\s*(\d+)/(\d+)\] partition (\d{{12}}): {len(EVENT_TYPES)} tables, [\d,]+ rows in [\d.]+ s$", re.MULTILINE
)
TABLE_COUNT_LINE = re.compile(r"^  (\w+)\s+([\d,]+)$", re.MULTILINE)
SERVER_LINE = re.compile(r"local GrowingIO export server at http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class DemoRun:
    """What one run of the demo printed, and the server port it announced."""

    stdout: str
    server_port: int

    def partitions(self) -> list[str]:
        return [match.group(3) for match in PROGRESS_LINE.finditer(self.stdout)]

    def table_counts(self) -> dict[str, int]:
        return {name: int(rows.replace(",", "")) for name, rows in TABLE_COUNT_LINE.findall(self.stdout)}


def run_demo(lake_dir: Path, dagster_home: Path, hours: int = HOURS) -> DemoRun:
    """One run of the demo in its own process group, with ``DAGSTER_HOME`` set as README's UI section says;
    asserts it succeeded and left no process behind."""
    command = [
        sys.executable, "-m", "growingio_pipeline.demo", "--hours", str(hours),
        "--rows-per-hour", str(PAGE_ROWS_PER_HOUR), "--lake-dir", str(lake_dir),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "DAGSTER_HOME": str(dagster_home)},
    )
    try:
        stdout, stderr = process.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, f"the demo exited with {process.returncode}:\n{stdout}\n{stderr}"
    assert lingering_group_members(process.pid) == [], "the demo left processes running"
    server = SERVER_LINE.search(stdout)
    assert server, stdout
    return DemoRun(stdout, int(server.group(1)))


@dataclass(frozen=True)
class TwoDemoRuns:
    """The demo run twice on the same lake, with a table snapshot after each."""

    first: DemoRun
    tables_after_first: dict[str, list[tuple]]
    second: DemoRun
    tables_after_second: dict[str, list[tuple]]
    dagster_home: Path
    lake_dir: Path


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> TwoDemoRuns:
    demo_dir = tmp_path_factory.mktemp("demo")
    lake_dir, dagster_home = demo_dir / "lake", demo_dir / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
    first = run_demo(lake_dir, dagster_home)
    tables_after_first = table_snapshot(lake_dir)
    second = run_demo(lake_dir, dagster_home)
    return TwoDemoRuns(first, tables_after_first, second, table_snapshot(lake_dir), dagster_home, lake_dir)


def test_the_demo_prints_progress_per_partition_and_rows_per_table(demo_runs: TwoDemoRuns) -> None:
    first = demo_runs.first

    partitions = first.partitions()
    assert len(partitions) == HOURS
    assert partitions == sorted(partitions)
    assert first.table_counts() == {name: len(rows) for name, rows in demo_runs.tables_after_first.items()}
    assert set(first.table_counts()) == set(EVENT_TYPES)
    assert first.table_counts()["page"] == HOURS * PAGE_ROWS_PER_HOUR
    assert "page views and sessions per platform per Beijing hour" in first.stdout
    for question in MODEL_ANSWERS:
        assert f"from the analytics models: {question}" in first.stdout


def test_running_the_demo_again_gives_the_same_tables(demo_runs: TwoDemoRuns) -> None:
    assert demo_runs.second.partitions() == demo_runs.first.partitions()
    assert demo_runs.second.table_counts() == demo_runs.first.table_counts()
    assert demo_runs.tables_after_second == demo_runs.tables_after_first


def test_the_demo_stops_its_export_server(demo_runs: TwoDemoRuns) -> None:
    assert not port_is_open(demo_runs.first.server_port)
    assert not port_is_open(demo_runs.second.server_port)


def test_the_demo_records_its_hours_in_the_instance_of_dagster_home(demo_runs: TwoDemoRuns) -> None:
    partitions = set(demo_runs.first.partitions())
    with dg.DagsterInstance.from_config(str(demo_runs.dagster_home)) as instance:
        # Each demo, each hour: the load's run, then the models' run its automation condition requested.
        assert len(instance.get_runs()) == 2 * HOURS * 2
        for event_type in EVENT_TYPES.values():
            assert instance.get_materialized_partitions(asset_key(event_type)) == partitions, event_type.name
        for model in MODELS:
            assert instance.get_materialized_partitions(dg.AssetKey(["analytics", model])) == partitions, model
        checks = [dg.AssetCheckKey(asset_key(EVENT_TYPES["page"]), kind.name) for kind in CHECK_KINDS]
        for check in checks:
            records = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
            assert {record.partition for record in records} == partitions, check.name
            assert all(record.status.value == "SUCCEEDED" for record in records), check.name
    assert f"DAGSTER_HOME={demo_runs.dagster_home}" in demo_runs.first.stdout


def test_the_demo_leaves_no_staging_folder(demo_runs: TwoDemoRuns) -> None:
    assert not (demo_runs.lake_dir / STAGING_FOLDER).exists()
