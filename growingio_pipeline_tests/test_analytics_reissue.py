"""An hour the vendor exports again: its partition run leaves the models exactly as a full rebuild would.

GrowingIO re-runs an hour's export now and then, with other rows (the reissue sensor reloads it), or with none.
Sessions, page views and visitors that only the old rows held must then leave the models, and the sessions that
kept rows in other hours must be rebuilt without the old ones. Real parts only: the local export server on
loopback, real Dagster runs of the raw and the dbt assets, dbt through its CLI, a lake in a temporary folder.
"""

from __future__ import annotations

from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import LakeSettings, connect_lake, write_transaction
from growingio_pipeline.local_server import BEIJING, LocalExportServer
from growingio_pipeline.partitions import KEY_FORMATS
from growingio_pipeline_tests.analytics_harness import (
    USER_MODELS,
    hour_keys,
    load_hour_by_hour,
    model_rows,
    query,
    run_dbt,
    run_hour,
)

# Five hours across midnight: sessions span hours and the date line, visits sit in the hour before their pages.
HOURS = hour_keys(datetime(2026, 11, 27, 22, tzinfo=BEIJING), 5)
CURRENT_INDEX = (
    "SELECT visit_user_id, session_id, _partition_key FROM analytics.session_hours "
    "WHERE departed IS NOT TRUE ORDER BY ALL"
)


@pytest.fixture(scope="module")
def loaded_lake(tmp_path_factory: pytest.TempPathFactory, analytics_server: LocalExportServer) -> Path:
    return load_hour_by_hour(analytics_server, tmp_path_factory.mktemp("reissue"), HOURS)


def assert_equals_a_full_rebuild(lake_dir: Path, target: Path) -> None:
    """The models as partition runs left them equal the models rebuilt from all raw rows."""
    incremental, index = model_rows(lake_dir, USER_MODELS), query(lake_dir, CURRENT_INDEX)
    run_dbt(lake_dir, ["build", "--full-refresh"], target)
    full = model_rows(lake_dir, USER_MODELS)
    for model in USER_MODELS:
        assert full[model], f"{model} is empty"
        assert incremental[model] == full[model], model
    assert index == query(lake_dir, CURRENT_INDEX)


@pytest.mark.slow
def test_an_hour_exported_again_with_other_rows_leaves_the_models_a_full_rebuild_would(
    loaded_lake: Path, analytics_server: LocalExportServer, tmp_path: Path
) -> None:
    after_midnight = HOURS[2]
    old_sessions = sessions_in_hour(loaded_lake, after_midnight)

    analytics_server.reissue(after_midnight[:10])
    assert run_hour(analytics_server, loaded_lake, after_midnight).success

    assert old_sessions.isdisjoint(sessions_in_hour(loaded_lake, after_midnight)), "the reissue kept its sessions"
    # the index remembers whose rows left the hour (page rows among them)
    assert old_sessions <= set(query(loaded_lake, departed_sessions(after_midnight)))
    assert_equals_a_full_rebuild(loaded_lake, tmp_path / "full")


@pytest.mark.slow
def test_an_hour_exported_again_with_no_rows_leaves_the_models_a_full_rebuild_would(
    loaded_lake: Path, analytics_server: LocalExportServer, tmp_path: Path
) -> None:
    emptied = HOURS[-1]
    assert sessions_in_hour(loaded_lake, emptied)
    for event_type in EVENT_TYPES:
        analytics_server.override_parts(event_type, emptied[:10], [])

    assert run_hour(analytics_server, loaded_lake, emptied).success

    assert sessions_in_hour(loaded_lake, emptied) == set()
    assert query(loaded_lake, f"SELECT count(*) FROM analytics.events WHERE {export_hour_is(emptied)}") == [(0,)]
    assert_equals_a_full_rebuild(loaded_lake, tmp_path / "full")


@pytest.mark.slow
def test_an_hour_exported_again_without_its_ad_clicks_leaves_the_models_a_full_rebuild_would(
    loaded_lake: Path, analytics_server: LocalExportServer, tmp_path: Path
) -> None:
    before_midnight = HOURS[1]
    its_date = datetime.strptime(before_midnight, KEY_FORMATS["hour"]).date()
    later_days = f"SELECT * FROM analytics.ads_attribution WHERE beijing_date > DATE '{its_date}'"
    matched_later = query(loaded_lake, later_days)
    assert query(
        loaded_lake, f"SELECT count(*) FROM growingio.ads_track_click WHERE _partition_key = '{before_midnight}'"
    )[0][0]

    analytics_server.override_parts("ads_track_click", before_midnight[:10], [])
    assert run_hour(analytics_server, loaded_lake, before_midnight).success

    # the clicks matched activations of the next day, whose numbers a run of the hour must rebuild
    assert query(loaded_lake, later_days) != matched_later
    assert_equals_a_full_rebuild(loaded_lake, tmp_path / "full")


@pytest.mark.slow
def test_a_lake_built_before_departed_entries_gets_their_columns_on_its_next_partition_run(
    loaded_lake: Path, analytics_server: LocalExportServer
) -> None:
    kept_columns = "SELECT * EXCLUDE (visitor_variables_export_hour) FROM analytics.visitors ORDER BY visit_user_id"
    others = [model for model in USER_MODELS if model != "visitors"]
    before, visitors = model_rows(loaded_lake, others), query(loaded_lake, kept_columns)
    index = query(loaded_lake, CURRENT_INDEX)
    drop_new_columns = (
        "ALTER TABLE analytics.session_hours DROP COLUMN departed",
        "ALTER TABLE analytics.visitors DROP COLUMN visitor_variables_export_hour",
    )
    with closing(connect_lake(LakeSettings.in_folder(loaded_lake))) as conn:
        write_transaction(conn, lambda lake: [lake.execute(statement) for statement in drop_new_columns])

    assert run_hour(analytics_server, loaded_lake, HOURS[1]).success

    assert model_rows(loaded_lake, others) == before
    assert query(loaded_lake, kept_columns) == visitors
    assert query(loaded_lake, CURRENT_INDEX) == index


def sessions_in_hour(lake_dir: Path, partition_key: str) -> set[tuple[str, str]]:
    """The sessions with page rows in the raw hour."""
    sql = f"SELECT DISTINCT visit_user_id, session_id FROM growingio.page WHERE _partition_key = '{partition_key}'"
    return {(visit_user_id, session_id) for visit_user_id, session_id in query(lake_dir, sql)}


def departed_sessions(partition_key: str) -> str:
    return (
        "SELECT visit_user_id, session_id FROM analytics.session_hours "
        f"WHERE departed AND _partition_key = '{partition_key}'"
    )


def export_hour_is(partition_key: str) -> str:
    return f"strftime(timezone('Asia/Shanghai', export_hour), '%Y%m%d%H%M') = '{partition_key}'"
