"""The models in the lake: dbt beside a writer of the raw tables, and dbt on a PostgreSQL catalog with S3 files.

Real parts only: the local export server on loopback, real Dagster runs, dbt through its CLI, the lake on a
SQLite catalog in a temporary folder, or on the test session's real PostgreSQL and SeaweedFS S3 servers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from growingio_pipeline.analytics_assets import DBT_PROJECT, dbt_resource, environment_set
from growingio_pipeline.analytics_warehouse import dbt_environment
from growingio_pipeline.dbt_lake import Plugin
from growingio_pipeline.lake import HostWriteTurn, LakeSettings
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.query import connect
from growingio_pipeline.resources import warehouse_from_env
from growingio_pipeline_tests.analytics_harness import (
    ANALYTICS_ASSETS,
    partition_run_environment,
    query,
    run_hour,
    run_models,
)
from growingio_pipeline_tests.conftest import PROJECT_ROOT
from growingio_pipeline_tests.pipeline_harness import (
    EVENT_ASSETS,
    FINISHED_PARTITION,
    export_resource,
    warehouse_resource,
)
from growingio_pipeline_tests.services import PostgresServer, SeaweedS3, lake_environment
from growingio_pipeline_tests.test_lake import growingio_sql

WRITER_PARTITIONS = ["202612100000", "202612100100"]
"""Hours a concurrent writer replaces, days after the model run's window (its rows never reach the models)."""
WRITER_ROUNDS, WRITER_ROWS = 30, 2000
"""Enough rounds for the writer to outlast the dbt run's start, so its commits meet the models' commits."""
WRITER_TIMEOUT_S = 300


def test_a_model_run_and_a_writer_replacing_partitions_at_the_same_time_both_succeed(
    local_server: LocalExportServer, tmp_path: Path
) -> None:
    lake_dir = tmp_path / "lake"
    assert run_hour(local_server, lake_dir, FINISHED_PARTITION).success  # raw rows and models of one hour
    log_path = tmp_path / "writer.log"
    before_writer = latest_snapshot(lake_dir)
    with log_path.open("wb") as log:
        writer = subprocess.Popen(
            [sys.executable, "-m", "growingio_pipeline_tests.lake_writer", str(lake_dir),
             str(WRITER_ROUNDS), str(WRITER_ROWS), *WRITER_PARTITIONS],
            cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        analyst = AnalystQueries(lake_dir)
        analyst.start()
        try:
            models = run_models(warehouse_resource(lake_dir), FINISHED_PARTITION)
        finally:
            writer_exit = writer.wait(timeout=WRITER_TIMEOUT_S)
            analyst.stop.set()
            analyst.join()

    assert writer_exit == 0, log_path.read_text()[-4000:]
    # README's query, by the installed command, again and again while the loads and the models wrote.
    assert len(analyst.answers) >= 3, analyst.answers
    assert all(answer.returncode == 0 and FINISHED_PARTITION[:4] in answer.stdout for answer in analyst.answers), [
        answer.stderr for answer in analyst.answers if answer.returncode
    ]
    assert models.success
    assert [check.check_name for check in models.get_asset_check_evaluations() if not check.passed] == []
    final = query(lake_dir, "SELECT _partition_key, title, count(*) FROM growingio.page GROUP BY ALL")
    expected = [(key, f"round-{WRITER_ROUNDS - 1}", WRITER_ROWS) for key in WRITER_PARTITIONS]
    assert sorted(row for row in final if row[0] in WRITER_PARTITIONS) == expected
    # Models take this host's write turn per model, not for the whole dbt run: the writer commits between them.
    writer_commits, model_commits = commits_by_schema(lake_dir, since=before_writer)
    assert model_commits, "the models committed nothing"
    assert [commit for commit in writer_commits if model_commits[0] < commit < model_commits[-1]], (
        writer_commits,
        model_commits,
    )


def test_a_model_computes_its_rows_while_a_load_holds_the_write_turn(
    local_server: LocalExportServer, tmp_path: Path
) -> None:
    lake_dir = tmp_path / "lake"
    assert run_hour(local_server, lake_dir, FINISHED_PARTITION).success  # the models exist: the next run is incremental
    settings = LakeSettings.in_folder(lake_dir)
    before = latest_snapshot(lake_dir)
    window = partition_run_environment(FINISHED_PARTITION)
    load_turn = HostWriteTurn(settings)
    load_turn.take()  # as a load holds it for its transaction
    with ThreadPoolExecutor(max_workers=1) as background:
        try:
            with environment_set(dbt_environment(settings) | window):
                invocation = dbt_resource().cli(["run", "--select", "sessions"], target_path=tmp_path / "target")
            succeeded = background.submit(invocation.is_successful)  # reads dbt's output as it comes
            # The model's query runs, and the model then waits for the turn to write what it computed.
            statements = wait_for_statements(
                tmp_path / "target" / "dbt.log", "sessions", "growingio_write_turn('take')", succeeded
            )
            assert any("create temporary table" in statement for statement in statements), statements
            assert latest_snapshot(lake_dir) == before
        finally:
            load_turn.give()
        assert succeeded.result()
    assert latest_snapshot(lake_dir) > before


def latest_snapshot(lake_dir: Path) -> int:
    [(snapshot,)] = query(lake_dir, "SELECT max(snapshot_id) FROM ducklake_snapshots('lake')")
    return int(snapshot)


def wait_for_statements(dbt_log: Path, model: str, until: str, dbt_run: Future[bool]) -> list[str]:
    """The statements dbt has logged for ``model``, once one containing ``until`` is among them."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not dbt_run.done():
        text = dbt_log.read_text() if dbt_log.exists() else ""
        events = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]  # whole lines only
        statements = [
            event["info"]["msg"]
            for event in events
            if (event.get("data", {}).get("node_info") or {}).get("node_name") == model
            and event["info"]["msg"].startswith("On model.")
        ]
        if any(until in statement for statement in statements):
            return statements
        time.sleep(0.2)
    raise AssertionError(f"dbt logged no statement of {model} with {until!r} (dbt run ended: {dbt_run.done()})")


class AnalystQueries(threading.Thread):
    """Runs ``growingio-sql "select * from analytics.daily_metrics order by 1 limit 5"`` until ``stop`` is set."""

    def __init__(self, lake_dir: Path) -> None:
        super().__init__(daemon=True)
        self.lake_dir = lake_dir
        self.stop = threading.Event()
        self.answers: list[subprocess.CompletedProcess[str]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.answers.append(
                growingio_sql(self.lake_dir, "select * from analytics.daily_metrics order by 1 limit 5")
            )


def commits_by_schema(lake_dir: Path, since: int) -> tuple[list[int], list[int]]:
    """The lake's snapshots after ``since`` that inserted into a ``growingio`` table, and into an ``analytics`` one."""
    rows = query(
        lake_dir,
        f"""SELECT DISTINCT snapshot.snapshot_id, schema.schema_name
        FROM ducklake_snapshots('lake') snapshot,
             unnest(snapshot.changes['tables_inserted_into']) inserted(table_id)
        JOIN __ducklake_metadata_lake.ducklake_table tables ON tables.table_id = inserted.table_id::BIGINT
        JOIN __ducklake_metadata_lake.ducklake_schema schema ON schema.schema_id = tables.schema_id
        WHERE snapshot.snapshot_id > {since}
        ORDER BY 1""",
    )
    return (
        [snapshot for snapshot, schema in rows if schema == "growingio"],
        [snapshot for snapshot, schema in rows if schema == "analytics"],
    )


def test_dbt_builds_the_models_in_a_lake_on_postgres_and_s3_without_showing_its_secrets(
    local_server: LocalExportServer,
    postgres_server: PostgresServer,
    seaweed_s3: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    database = postgres_server.create_database("analytics_lake")
    bucket = seaweed_s3.create_bucket("analytics-lake")
    environment = lake_environment(postgres_server, database, seaweed_s3, f"s3://{bucket}/warehouse/")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    secrets = [postgres_server.password, seaweed_s3.secret_access_key]

    result = dg.materialize(
        [EVENT_ASSETS, ANALYTICS_ASSETS],
        partition_key=FINISHED_PARTITION,
        resources={
            "growingio": export_resource(local_server),
            "warehouse": warehouse_from_env(),
            "dbt": dbt_resource(),
        },
    )

    assert result.success
    with connect() as reader:  # growingio-sql's connection, from the same variables
        days = reader.execute("SELECT count(*) FROM analytics.daily_metrics WHERE page_views > 0").fetchone()
    assert days is not None and days[0] > 0
    assert any(name.endswith(".parquet") and "analytics" in name for name in seaweed_s3.stored_files(bucket))
    run_targets = (DBT_PROJECT.project_dir / DBT_PROJECT.target_path).glob(f"*-{result.run_id[:7]}-*")
    dbt_logs = [(target / "dbt.log").read_text() for target in run_targets]
    assert dbt_logs, "the run's dbt.log"
    shown = "\n".join([*dbt_logs, *capfd.readouterr(), *(str(event) for event in result.all_events)])
    for secret in secrets:
        assert secret not in shown


def test_the_lake_settings_reach_dbt_whole_with_local_paths_made_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    on_s3 = LakeSettings(
        catalog="postgres:host=127.0.0.1 dbname=lake user=lake",
        data_path="s3://bucket/lake/",
        catalog_password="catalog-secret",
        s3_endpoint="127.0.0.1:8333",
        s3_access_key_id="key-id",
        s3_secret_access_key="s3-secret",
        s3_use_ssl=False,
        s3_url_style="vhost",
    )
    local = LakeSettings(catalog="data/lake/catalog.sqlite", data_path="data/lake/files")

    assert LakeSettings.from_env(dbt_environment(on_s3)) == on_s3
    assert LakeSettings.from_env(dbt_environment(local)) == LakeSettings(
        catalog=str(PROJECT_ROOT / "data/lake/catalog.sqlite"), data_path=f"{PROJECT_ROOT / 'data/lake/files'}/"
    )


def test_dbt_refuses_a_relative_lake_path_rather_than_making_a_lake_in_its_project_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GROWINGIO_LAKE_CATALOG", raising=False)
    monkeypatch.setenv("GROWINGIO_LAKE_DATA_PATH", str(tmp_path / "files"))
    plugin = Plugin(name="dbt_lake", plugin_config={})

    with duckdb.connect() as conn, pytest.raises(ValueError, match=re.escape("got data/lake/catalog.sqlite:")):
        plugin.configure_connection(conn)
    assert list(tmp_path.iterdir()) == []
