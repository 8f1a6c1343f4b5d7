"""The core of the analytics layer: loading hours one by one gives exactly the tables a full rebuild gives.

Real parts only: the local export server on loopback, real Dagster runs of the raw and the dbt assets
(one run per hour, as the automation launches them), dbt through its CLI, a lake in a temporary folder.
"""

from __future__ import annotations

import json
import re
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest

from growingio_pipeline.analytics_assets import environment_set
from growingio_pipeline.lake import LakeSettings, connect_lake, write_transaction
from growingio_pipeline.local_server import BEIJING, LocalExportServer
from growingio_pipeline.maintenance import maintain
from growingio_pipeline.partitions import KEY_FORMATS
from growingio_pipeline_tests.analytics_harness import (
    MODELS,
    USER_MODELS,
    hour_keys,
    load_hour_by_hour,
    model_rows,
    partition_run_environment,
    query,
    run_dbt,
    run_hour,
    run_models,
)
from growingio_pipeline_tests.pipeline_harness import warehouse_resource

# Eight hours over two Beijing dates: sessions cross midnight, visits sit in the hour before their pages,
# visitors log in mid-session, and activations match clicks of 1 to 5 hours earlier (ads pause 02:00-04:59).
# Each hour is one Dagster run with one dbt invocation; the hours' count is what the test costs.
HOURS = hour_keys(datetime(2026, 11, 27, 20, tzinfo=BEIJING), 8)


@pytest.fixture(scope="module")
def loaded_hour_by_hour(tmp_path_factory: pytest.TempPathFactory, analytics_server: LocalExportServer) -> Path:
    """A lake where every hour was loaded and its models built by its own partition run, in order."""
    return load_hour_by_hour(analytics_server, tmp_path_factory.mktemp("incremental"), HOURS)


@pytest.mark.slow
def test_hour_by_hour_partition_runs_equal_a_full_rebuild(loaded_hour_by_hour: Path, tmp_path: Path) -> None:
    incremental = model_rows(loaded_hour_by_hour)

    # The same lake rebuilt from all its raw rows (a lake's files cannot be copied to another path): the
    # later tests of this module then read the rebuilt models, equal to the incremental ones when this passes.
    run_dbt(loaded_hour_by_hour, ["build", "--full-refresh"], tmp_path / "target")
    full = model_rows(loaded_hour_by_hour)

    for model in MODELS:
        assert full[model], f"{model} is empty"
        assert incremental[model] == full[model], model


@pytest.mark.slow
def test_the_data_exercises_every_join_the_models_make(loaded_hour_by_hour: Path) -> None:
    db = loaded_hour_by_hour
    # sessions that cross midnight (Beijing), and sessions whose visit sits in an earlier hourly file
    midnight = query(
        db,
        "SELECT count(*) FROM analytics.sessions WHERE cast(timezone('Asia/Shanghai', first_send_time) AS DATE) "
        "< cast(timezone('Asia/Shanghai', last_send_time) AS DATE)",
    )
    earlier_visit = query(
        db,
        "SELECT count(*) FROM analytics.page_views p JOIN growingio.visit v USING (vst_request_id) "
        "WHERE v._partition_key < strftime(timezone('Asia/Shanghai', p.export_hour), '%Y%m%d%H%M')",
    )
    # visitors who log in mid-session: an anonymous page view before a logged-in one in the same session
    mid_session_login = query(
        db,
        "SELECT count(DISTINCT (visit_user_id, session_id)) FROM analytics.page_views a "
        "JOIN analytics.page_views b USING (visit_user_id, session_id) "
        "WHERE a.login_user_id IS NULL AND b.login_user_id IS NOT NULL AND a.time < b.time",
    )
    stitched = query(db, "SELECT count(*) FROM analytics.users WHERE len(visit_user_ids) > 1")
    ads = query(
        db,
        "SELECT sum(matched_by_device), sum(matched_by_ip_user_agent), sum(matched_returning_visitors) "
        "FROM analytics.ads_attribution",
    )
    page_variables = query(db, "SELECT count(*) FROM analytics.custom_events WHERE cardinality(page_variables) > 0")

    assert midnight[0][0] > 0
    assert earlier_visit[0][0] > 0
    assert mid_session_login[0][0] > 0
    assert stitched[0][0] > 0
    assert all(count > 0 for count in ads[0]), ads
    assert page_variables[0][0] > 0


@pytest.mark.slow
def test_dbt_docs_describe_every_column_of_every_model(loaded_hour_by_hour: Path, tmp_path: Path) -> None:
    target = run_dbt(loaded_hour_by_hour, ["docs", "generate"], tmp_path / "target")

    catalog = json.loads((target / "catalog.json").read_text())["nodes"]
    manifest = json.loads((target / "manifest.json").read_text())["nodes"]
    models = {node["name"]: node for node in manifest.values() if node["resource_type"] == "model"}
    assert set(models) == set(MODELS)
    for name, node in models.items():
        actual = {column.lower() for column in catalog[node["unique_id"]]["columns"]}
        described = {column for column, spec in node["columns"].items() if spec["description"].strip()}
        assert actual and actual <= described, (name, sorted(actual - described))
        assert node["description"].strip(), name


@pytest.mark.slow
def test_rerunning_an_hour_after_its_raw_rows_are_reloaded_changes_nothing(
    loaded_hour_by_hour: Path, analytics_server: LocalExportServer
) -> None:
    before = model_rows(loaded_hour_by_hour, USER_MODELS)
    indexed = query(loaded_hour_by_hour, SESSION_INDEX_KEYS)

    for key in (HOURS[4], HOURS[-1]):  # the hour after midnight, and the latest hour
        assert run_hour(analytics_server, loaded_hour_by_hour, key).success

    assert model_rows(loaded_hour_by_hour, USER_MODELS) == before
    assert query(loaded_hour_by_hour, SESSION_INDEX_KEYS) == indexed


SESSION_INDEX_KEYS = "SELECT visit_user_id, session_id, _partition_key FROM analytics.session_hours ORDER BY ALL"


@pytest.mark.slow
def test_lake_maintenance_compacts_the_models_and_keeps_the_session_index_trusted(
    loaded_hour_by_hour: Path, tmp_path: Path
) -> None:
    for key in HOURS[-2:]:  # partition runs delete the rows they rebuild from older files: files with deleted rows
        assert run_models(warehouse_resource(loaded_hour_by_hour), key).success
    models = model_rows(loaded_hour_by_hour)
    latest = HOURS[-1]
    hours_read = hours_read_by_sessions(loaded_hour_by_hour, latest, tmp_path / "before")
    assert 0 < len(hours_read) < len(HOURS), hours_read  # the index narrows the read to the sessions' hours
    assert max(page_files_per_hour(loaded_hour_by_hour).values()) > 1  # hours of several parts: files to merge
    assert set(model_files(loaded_hour_by_hour)) >= {"sessions", "page_views", "visitors", "users"}

    with closing(connect_lake(LakeSettings.in_folder(loaded_hour_by_hour))) as conn:
        maintain(conn)

    assert set(page_files_per_hour(loaded_hour_by_hour).values()) == {1}
    assert model_files(loaded_hour_by_hour) == {}, "files with deleted rows are rewritten, then merged"
    assert model_rows(loaded_hour_by_hour) == models
    assert hours_read_by_sessions(loaded_hour_by_hour, latest, tmp_path / "after") == hours_read


def model_files(lake_dir: Path) -> dict[str, tuple[int, int]]:
    """The models whose current snapshot reads more than one data file, or delete files: (data, delete files)."""
    listings = " UNION ALL ".join(
        f"SELECT '{model}' AS model, data_file, delete_file "
        f"FROM ducklake_list_files('lake', '{model}', schema => 'analytics')"
        for model in MODELS
        if model != "custom_events"  # a view
    )
    return {
        model: (files, delete_files)
        for model, files, delete_files in query(
            lake_dir,
            f"SELECT model, count(*), count(delete_file) FROM ({listings}) GROUP BY model "
            "HAVING count(*) > 1 OR count(delete_file) > 0",
        )
    }


def hours_read_by_sessions(lake_dir: Path, partition_key: str, target: Path) -> list[str]:
    """The export hours the sessions model reads in ``partition_key``'s run: literals in its compiled query."""
    with environment_set(partition_run_environment(partition_key)):
        run_dbt(lake_dir, ["compile", "--select", "sessions"], target)
    compiled = next(target.glob("compiled/**/sessions.sql")).read_text()
    literals = re.search(r"r\._partition_key in \(([^)]*)\)", compiled)
    assert literals, "the sessions model reads its whole window: no hours from the session index"
    return re.findall(r"'([0-9]+)'", literals.group(1))


def page_files_per_hour(lake_dir: Path) -> dict[str, int]:
    return dict(
        query(
            lake_dir,
            "SELECT regexp_extract(data_file, '_partition_key=([0-9]+)/', 1), count(*) "
            "FROM ducklake_list_files('lake', 'page', schema => 'growingio') GROUP BY 1",
        )
    )


@pytest.mark.slow
def test_visitors_users_and_daily_metrics_find_what_they_rebuild_in_the_raw_tables_on_a_lake_without_the_index(
    loaded_hour_by_hour: Path, tmp_path: Path
) -> None:
    latest = HOURS[-1]
    models = ["visitors", "users", "daily_metrics"]
    before = model_rows(loaded_hour_by_hour, models)
    indexed = query(loaded_hour_by_hour, SESSION_INDEX_KEYS)
    latest_visitors = f"(SELECT list(visit_user_id) FROM growingio.page WHERE _partition_key = '{latest}')"
    latest_date = datetime.strptime(latest, KEY_FORMATS["hour"]).date()

    # A lake made before the index, and the latest hour's visitors, users and day counted wrong: only a run that
    # finds its visitors and sessions without the index counts them again (visitor variables are kept from the
    # table itself).
    miscount = (
        "DROP TABLE analytics.session_hours",
        f"UPDATE analytics.visitors SET sessions = 0 WHERE list_contains({latest_visitors}, visit_user_id)",
        f"UPDATE analytics.users SET sessions = 0 WHERE list_has_any(visit_user_ids, {latest_visitors})",
        f"UPDATE analytics.daily_metrics SET sessions = 0 WHERE beijing_date = DATE '{latest_date}'",
    )
    with closing(connect_lake(LakeSettings.in_folder(loaded_hour_by_hour))) as conn:
        write_transaction(conn, lambda lake: [lake.execute(statement) for statement in miscount])
    miscounted = model_rows(loaded_hour_by_hour, models)
    assert all(miscounted[model] != before[model] for model in models)
    with environment_set(partition_run_environment(latest)):
        run_dbt(loaded_hour_by_hour, ["run", "--select", " ".join(models)], tmp_path / "partition-run")

    assert model_rows(loaded_hour_by_hour, models) == before
    run_dbt(loaded_hour_by_hour, ["run", "--select", "session_hours"], tmp_path / "index")
    assert query(loaded_hour_by_hour, SESSION_INDEX_KEYS) == indexed


@pytest.mark.slow
def test_a_partition_run_reads_whole_an_earlier_hour_missing_from_the_session_index(loaded_hour_by_hour: Path) -> None:
    # Last in the module: it leaves the earlier hour out of the index.
    earlier, later = HOURS[5], HOURS[6]
    spanning = query(
        loaded_hour_by_hour,
        "SELECT count(*) FROM growingio.visit v JOIN growingio.page p USING (visit_user_id, session_id) "
        f"WHERE v._partition_key = '{earlier}' AND p._partition_key = '{later}'",
    )
    assert spanning[0][0] > 0, "no session of the later hour has rows in the earlier one"
    before = model_rows(loaded_hour_by_hour, USER_MODELS)

    # As when the earlier hour was loaded and its models have not run yet: its index entries are missing.
    with closing(connect_lake(LakeSettings.in_folder(loaded_hour_by_hour))) as conn:
        write_transaction(
            conn, lambda lake: lake.execute("DELETE FROM analytics.session_hours WHERE _partition_key = ?", [earlier])
        )
    assert run_models(warehouse_resource(loaded_hour_by_hour), later).success

    assert model_rows(loaded_hour_by_hour, USER_MODELS) == before
