"""The DuckDB writer: tables from the registry, typed round trip, maps, extras, rejects, ledger."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from growingio_pipeline.event_types import EVENT_TYPES, Column, ColumnKind, EventType
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.warehouse import (
    LAKE_OPTIONS,
    LEDGER_TABLE,
    REJECTS_TABLE,
    LoadAttempt,
    column_schema,
    ensure_schema,
    record_attempt,
    replace_partition,
    table_row_counts,
)
from growingio_pipeline_tests.csv_fixtures import write_part, write_raw_part
from growingio_pipeline_tests.parsed_parts import parse_into_partition
from growingio_pipeline_tests.test_parsing import AWKWARD_STRINGS, TEXT_VALUES

PAGE = EVENT_TYPES["page"]
CUSTOM_EVENT = EVENT_TYPES["custom_event"]
PARTITION = "202611290300"


def load(conn, event_type, tmp_path: Path, header, rows, *, name: str = "part-0.csv.gz", partition: str = PARTITION):
    part = write_part(tmp_path / name, header, rows)
    source = f"https://cdn.example/{name}?X-Signature=SECRET"
    parsed = parse_into_partition(conn, event_type, partition, part, source=source, staging_dir=tmp_path / "stage")
    return replace_partition(conn, event_type, partition, [parsed])


def test_ensure_schema_is_idempotent_and_follows_the_registry(conn) -> None:
    ensure_schema(conn)
    for event_type in EVENT_TYPES.values():
        described = conn.execute(f"DESCRIBE {event_type.table_name}").fetchall()
        assert [(name, sql_type) for name, sql_type, *_ in described] == column_schema(event_type)
    assert table_row_counts(conn) == {name: 0 for name in EVENT_TYPES}
    assert conn.execute(f"SELECT count(*) FROM {LEDGER_TABLE}").fetchone() == (0,)
    assert conn.execute(f"SELECT count(*) FROM {REJECTS_TABLE}").fetchone() == (0,)


def test_ensure_schema_adds_registry_columns_missing_from_an_older_table(tmp_path: Path) -> None:
    connection = connect_lake(LakeSettings.in_folder(tmp_path / "lake"))
    connection.execute("CREATE SCHEMA growingio")
    connection.execute("CREATE TABLE growingio.vstr (visit_user_id VARCHAR)")
    ensure_schema(connection)
    columns = [row[0] for row in connection.execute("DESCRIBE growingio.vstr").fetchall()]
    assert sorted(columns) == sorted(name for name, _ in column_schema(EVENT_TYPES["vstr"]))


def parquet_layout(conn, data_file: str) -> tuple[list[int], set[str]]:
    """A Parquet file's rows per row group and its column chunks' compression codecs."""
    rows = conn.execute(
        "SELECT DISTINCT row_group_id, row_group_num_rows FROM parquet_metadata(?) ORDER BY 1", [data_file]
    ).fetchall()
    codecs = {
        codec
        for (codec,) in conn.execute("SELECT DISTINCT compression FROM parquet_metadata(?)", [data_file]).fetchall()
    }
    return [count for _, count in rows], codecs


def test_the_lake_and_partition_loads_write_parquet_files_alike(conn, tmp_path: Path) -> None:
    """DuckLake's own inserts and ``replace_partition``'s data files share the row group size and codec."""
    ensure_schema(conn)  # an existing lake keeps its options, set once
    conn.execute(
        f"INSERT INTO {PAGE.table_name} (visit_user_id, _partition_key) SELECT 'v' || i, ? FROM range(70000) t(i)",
        ["202611290400"],
    )
    load(conn, PAGE, tmp_path, ["sendTime", "title"], [["1795892400000", f"title {i}"] for i in range(70000)])
    files = conn.execute(
        "SELECT data_file FROM ducklake_list_files(current_database(), 'page', schema => 'growingio') ORDER BY 1"
    ).fetchall()
    row_group_size = int(LAKE_OPTIONS["parquet_row_group_size"])
    layouts = [parquet_layout(conn, data_file) for (data_file,) in files]
    assert layouts == [([row_group_size, row_group_size, 70000 - 2 * row_group_size], {"ZSTD"})] * 2


def test_awkward_strings_and_typed_values_round_trip_through_duckdb(conn, tmp_path: Path) -> None:
    send_times = [
        datetime(2026, 11, 28, 19, 0, tzinfo=timezone.utc) + timedelta(milliseconds=i * 1001)
        for i in range(len(AWKWARD_STRINGS))
    ]
    header = ["title", "referrer", "sendTime", "time"]
    rows = [
        [value, value, str(int(t.timestamp() * 1000)), str(-1 - i)]
        for i, (value, t) in enumerate(zip(AWKWARD_STRINGS, send_times, strict=True))
    ]
    summary = load(conn, PAGE, tmp_path, header, rows)

    assert (summary.rows_loaded, summary.rows_read, summary.rows_rejected) == (len(rows), len(rows), 0)
    stored = conn.execute(
        "SELECT title, referrer, epoch_ms(send_time), epoch_ms(time), _partition_key, _source_part "
        "FROM growingio.page ORDER BY send_time"
    ).fetchall()
    assert [row[0] for row in stored] == AWKWARD_STRINGS
    assert [row[1] for row in stored] == AWKWARD_STRINGS
    assert [row[2] for row in stored] == [int(t.timestamp() * 1000) for t in send_times]
    assert [row[3] for row in stored] == [-1 - i for i in range(len(rows))]
    assert {row[4:] for row in stored} == {(PARTITION, "https://cdn.example/part-0.csv.gz")}
    sql_types = dict(
        conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'page'"
        ).fetchall()
    )
    assert sql_types["send_time"] == "TIMESTAMP WITH TIME ZONE"


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    """One lake for the property test's examples: each replaces the same partition, as a re-run would."""
    connection = connect_lake(LakeSettings.in_folder(tmp_path_factory.mktemp("shared") / "lake"))
    ensure_schema(connection)
    yield connection
    connection.close()


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(TEXT_VALUES, TEXT_VALUES), max_size=8))
def test_any_table_of_strings_round_trips_through_duckdb(
    shared_lake: duckdb.DuckDBPyConnection, rows: list[tuple[str | None, str | None]]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        numbered = [[str(i), *row] for i, row in enumerate(rows)]
        load(shared_lake, EVENT_TYPES["vstr"], Path(directory), ["sendTime", "visitUserId", "sessionId"], numbered)
    stored = shared_lake.execute("SELECT visit_user_id, session_id FROM growingio.vstr ORDER BY send_time").fetchall()
    assert stored == rows


def test_bigint_and_double_columns_load_exactly(conn, tmp_path: Path) -> None:
    load(
        conn,
        EVENT_TYPES["action"],
        tmp_path,
        ["sendTime", "index"],
        [["1", "9223372036854775807"], ["2", "-5"], ["3", None]],
    )
    assert conn.execute("SELECT index FROM growingio.action ORDER BY send_time").fetchall() == [
        (2**63 - 1,),
        (-5,),
        (None,),
    ]
    load(conn, CUSTOM_EVENT, tmp_path, ["sendTime", "eventNumber"], [["1", "0.1"], ["2", "1e-300"]], name="c.csv.gz")
    assert conn.execute("SELECT event_number FROM growingio.custom_event ORDER BY send_time").fetchall() == [
        (0.1,),
        (1e-300,),
    ]


def test_map_columns_are_queryable_by_key_and_unparsable_maps_kept(conn, tmp_path: Path) -> None:
    rows = [
        ["1", '{"price":"50.0","item":"101"}'],
        ["2", '{"note":"say \\"hi\\"","path":"a\\\\b","gone":null}'],
        ["3", '{"city"->"beijing"}'],
        ["4", None],
    ]
    summary = load(conn, CUSTOM_EVENT, tmp_path, ["sendTime", "eventVariable"], rows)

    assert summary.unparsed_maps == 1
    stored = conn.execute(
        "SELECT event_variable['price'], event_variable['note'], event_variable['path'], "
        "map_contains(event_variable, 'gone'), _unparsed_maps FROM growingio.custom_event ORDER BY send_time"
    ).fetchall()
    assert stored == [
        ("50.0", None, None, False, None),
        (None, 'say "hi"', "a\\b", True, None),
        (None, None, None, None, {"event_variable": '{"city"->"beijing"}'}),
        (None, None, None, None, None),
    ]
    map_type = conn.execute("SELECT typeof(event_variable) FROM growingio.custom_event LIMIT 1").fetchone()[0]
    assert map_type == "MAP(VARCHAR, VARCHAR)"


def test_maps_duckdb_refuses_are_kept_in_unparsed_maps_too(conn, tmp_path: Path) -> None:
    rows = [["1", '{"a":"1","a":"2"}'], ["2", '{"a":"1","\\u0061":"2"}'], ["3", "{oops"], ["4", '{"a":"1"}']]
    summary = load(conn, CUSTOM_EVENT, tmp_path, ["sendTime", "eventVariable"], rows)

    assert summary.unparsed_maps == 3
    stored = conn.execute(
        "SELECT event_variable, _unparsed_maps FROM growingio.custom_event ORDER BY send_time"
    ).fetchall()
    assert stored == [
        (None, {"event_variable": '{"a":"1","a":"2"}'}),
        (None, {"event_variable": '{"a":"1","\\u0061":"2"}'}),
        (None, {"event_variable": "{oops"}),
        ({"a": "1"}, None),
    ]


def test_several_map_columns_in_one_type_are_each_cast_and_kept(conn, tmp_path: Path) -> None:
    two_maps = EventType(
        name="two_maps",
        title="Two maps",
        description="A made-up type with two map columns.",
        columns=(
            Column("sendTime", ColumnKind.TIME),
            Column("firstMap", ColumnKind.MAP),
            Column("secondMap", ColumnKind.MAP),
        ),
        bucket_column="sendTime",
    )
    definition = ", ".join(f"{name} {sql_type}" for name, sql_type in column_schema(two_maps))
    conn.execute(f"CREATE TABLE {two_maps.table_name} ({definition})")
    rows = [["1", '{"a":"1"}', '{"b":"2"}'], ["2", "{bad", '{"k":"1","k":"2"}'], ["3", '{"k":"1","k":"2"}', None]]
    summary = load(conn, two_maps, tmp_path, ["sendTime", "firstMap", "secondMap"], rows)

    assert summary.unparsed_maps == 3
    stored = conn.execute(f"SELECT first_map, second_map, _unparsed_maps FROM {two_maps.table_name} ORDER BY send_time")
    assert stored.fetchall() == [
        ({"a": "1"}, {"b": "2"}, None),
        (None, None, {"first_map": "{bad", "second_map": '{"k":"1","k":"2"}'}),
        (None, None, {"first_map": '{"k":"1","k":"2"}'}),
    ]


def test_unknown_columns_land_in_extra_columns_and_missing_ones_are_null(conn, tmp_path: Path) -> None:
    header = ["IMEI", "channelId", "eventTime", "newVendorColumn"]
    summary = load(
        conn, EVENT_TYPES["ads_track_click"], tmp_path, header, [["860", "ch", "1", "v"], ["861", "ch", "2", None]]
    )

    assert summary.unknown_columns == ("newVendorColumn",)
    assert "clickUrl" in summary.missing_columns
    stored = conn.execute(
        "SELECT imei, channel_id, _extra_columns, click_url, ads_variable "
        "FROM growingio.ads_track_click ORDER BY event_time"
    ).fetchall()
    assert stored == [
        ("860", "ch", {"newVendorColumn": "v"}, None, None),
        ("861", "ch", {"newVendorColumn": None}, None, None),
    ]

    load(
        conn,
        EVENT_TYPES["ads_track_activation"],
        tmp_path,
        ["imei", "channelID", "sendTime"],
        [["1", "c", "1"]],
        name="act.csv.gz",
    )
    assert conn.execute("SELECT imei, channel_id, _extra_columns FROM growingio.ads_track_activation").fetchall() == [
        ("1", "c", None)
    ]


def test_rejected_rows_go_to_rejects_with_reason_and_source_the_rest_loads(conn, tmp_path: Path) -> None:
    text = b"sendTime,index,actionRequestId\n1,1,ok\n2,x,bad-index\n3,3,extra,field\n4,4,ok2\n"
    part = write_raw_part(tmp_path / "mixed.csv.gz", text)
    source = "https://cdn.example/mixed.csv.gz?sig=SECRET"
    parsed = parse_into_partition(conn, EVENT_TYPES["action"], PARTITION, part, source=source, staging_dir=tmp_path)
    summary = replace_partition(conn, EVENT_TYPES["action"], PARTITION, [parsed])

    assert (summary.rows_read, summary.rows_loaded, summary.rows_rejected) == (4, 2, 2)
    assert conn.execute("SELECT action_request_id FROM growingio.action ORDER BY 1").fetchall() == [("ok",), ("ok2",)]
    rejects = conn.execute(
        "SELECT event_type, partition_key, source_part, row_number, reason, raw_text "
        f"FROM {REJECTS_TABLE} ORDER BY reason"
    ).fetchall()
    assert rejects == [
        (
            "action",
            PARTITION,
            "https://cdn.example/mixed.csv.gz",
            None,
            "expected 3 fields, found 4",
            "3,3,extra,field",
        ),
        (
            "action",
            PARTITION,
            "https://cdn.example/mixed.csv.gz",
            2,
            "index: not an integer: x",
            '{"sendTime":"2","index":"x","actionRequestId":"bad-index"}',
        ),
    ]


def test_ledger_records_attempts_including_failures_and_updates_by_id(conn) -> None:
    started = datetime(2026, 11, 29, 3, 40, tzinfo=timezone.utc)
    running = LoadAttempt.unloaded(
        event_type="page",
        partition_key=PARTITION,
        export_type="hour",
        status="RUNNING",
        error_msg=None,
        started_at=started,
    )
    record_attempt(conn, running)
    failed = LoadAttempt(
        event_type="page",
        partition_key=PARTITION,
        export_type="hour",
        status="FAILED",
        started_at=started,
        finished_at=started + timedelta(seconds=2.5),
        error_msg="x" * 10_000,
        attempt_id=running.attempt_id,
    )
    record_attempt(conn, failed)
    rows = conn.execute(f"SELECT attempt_id, status, duration_s, length(error_msg) FROM {LEDGER_TABLE}").fetchall()
    assert rows == [(running.attempt_id, "FAILED", 2.5, 2000)]

    with pytest.raises(ValueError, match="LOADING"):
        LoadAttempt.unloaded(
            event_type="page",
            partition_key=PARTITION,
            export_type="hour",
            status="LOADING",
            error_msg=None,
            started_at=started,
        )


def test_loaded_attempt_carries_the_summary(conn, tmp_path: Path) -> None:
    summary = load(conn, CUSTOM_EVENT, tmp_path, ["sendTime", "eventVariable"], [["1", "{}"], ["x", "{bad"]])
    record_attempt(conn, LoadAttempt.loaded(summary, export_type="hour", started_at=datetime.now(timezone.utc)))
    assert conn.execute(
        f"SELECT status, parts, bytes > 0, rows_read, rows_loaded, rows_rejected, unparsed_maps FROM {LEDGER_TABLE}"
    ).fetchall() == [("LOADED", 1, True, 2, 1, 1, 0)]


def test_every_kind_has_a_duckdb_type() -> None:
    kinds = {column.kind for event_type in EVENT_TYPES.values() for column in event_type.columns}
    assert kinds == set(ColumnKind)
    names = [name for name, _ in column_schema(PAGE)]
    assert names[-5:] == ["_unparsed_maps", "_extra_columns", "_partition_key", "_source_part", "_loaded_at"]
