"""The local server's data: deterministic, realistic, joinable rows and the vendor CSV dialect writer."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import math
from datetime import datetime

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from growingio_pipeline import event_types
from growingio_pipeline.event_types import EVENT_TYPES, Column, ColumnKind
from growingio_pipeline.local_server import BEIJING
from growingio_pipeline.local_server.csv_writer import to_csv_text, write_csv_parts
from growingio_pipeline.local_server.generator import (
    DEFAULT_ROWS_PER_PAGE,
    generate_export,
    generate_hour,
    rows_per_page,
)
from growingio_pipeline_tests.pipeline_harness import COUPON

HOUR = "2026112910"
PREVIOUS_HOUR = "2026112909"
SETTINGS = {"project_id": "9b0d1f56d5baff1a", "seed": 1, "rows_per_hour": 400}


def hour_of(event_type: str, export_date: str = HOUR, **overrides) -> pl.DataFrame:
    return generate_hour(event_type, export_date, **{**SETTINGS, **overrides})


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_every_registry_column_in_order_as_text(event_type: str) -> None:
    frame = hour_of(event_type)

    assert frame.columns == [column.vendor_name for column in EVENT_TYPES[event_type].columns]
    assert set(frame.dtypes) == {pl.Utf8}
    assert frame.height == math.ceil(400 * rows_per_page(event_type))


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_typed_columns_hold_parsable_values(event_type: str) -> None:
    frame = hour_of(event_type)
    for column in EVENT_TYPES[event_type].columns:
        values = frame.get_column(column.vendor_name).drop_nulls()
        if column.kind in (ColumnKind.TIME, ColumnKind.BIGINT):
            assert values.cast(pl.Int64, strict=True).len() == values.len()
        elif column.kind is ColumnKind.DOUBLE:
            assert values.cast(pl.Float64, strict=True).len() == values.len()
        elif column.kind is ColumnKind.MAP:
            assert all(isinstance(json.loads(value), dict) for value in values)


def test_generation_is_deterministic_and_seeded() -> None:
    assert hour_of("page").equals(hour_of("page"))
    assert not hour_of("page").equals(hour_of("page", seed=2))
    assert not hour_of("page").equals(hour_of("page", project_id="0123456789abcdef"))
    assert not hour_of("page").equals(hour_of("page", PREVIOUS_HOUR))


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_send_time_is_inside_the_utc_window_of_the_beijing_hour(event_type: str) -> None:
    start = datetime(2026, 11, 29, 10, tzinfo=BEIJING)
    start_ms = int(start.timestamp() * 1000)
    bucket = EVENT_TYPES[event_type].bucket_column
    sent = hour_of(event_type).get_column(bucket).cast(pl.Int64)

    assert sent.min() >= start_ms
    assert sent.max() < start_ms + 3_600_000


WITH_CLIENT_TIME = [name for name, spec in EVENT_TYPES.items() if "time" in [c.vendor_name for c in spec.columns]]


@pytest.mark.parametrize("event_type", WITH_CLIENT_TIME)
def test_client_time_is_a_little_before_send_time(event_type: str) -> None:
    frame = hour_of(event_type).select(pl.col("time", "sendTime").cast(pl.Int64))
    lag = frame.get_column("sendTime") - frame.get_column("time")

    assert lag.min() >= 0
    assert lag.max() <= 10_000


def test_pages_join_to_visits_of_this_or_the_previous_hour() -> None:
    visits = pl.concat([hour_of("visit"), hour_of("visit", PREVIOUS_HOUR)])
    pages = hour_of("page")
    joined = pages.join(visits, on="vstRequestId", how="left", suffix="_visit")

    assert joined.get_column("sessionId_visit").null_count() == 0
    assert (joined.get_column("sessionId") == joined.get_column("sessionId_visit")).all()
    assert (joined.get_column("visitUserId") == joined.get_column("visitUserId_visit")).all()
    assert pages.get_column("vstRequestId").is_in(hour_of("visit").get_column("vstRequestId").implode()).any()
    assert not pages.get_column("vstRequestId").is_in(hour_of("visit").get_column("vstRequestId").implode()).all()


@pytest.mark.parametrize("event_type", ["action", "custom_event", "pvar"])
def test_page_events_join_to_their_page_and_session(event_type: str) -> None:
    pages = hour_of("page").select("pageRequestId", "visitUserId", "sessionId", "page")
    events = hour_of(event_type)
    joined = events.join(pages, on="pageRequestId", how="left", suffix="_page")

    assert joined.get_column("sessionId_page").null_count() == 0
    assert (joined.get_column("sessionId") == joined.get_column("sessionId_page")).all()
    assert (joined.get_column("visitUserId") == joined.get_column("visitUserId_page")).all()
    assert (joined.get_column("page") == joined.get_column("page_page")).all()


def test_request_ids_are_unique_where_they_count_events() -> None:
    assert hour_of("page").get_column("pageRequestId").is_unique().all()
    assert hour_of("visit").get_column("sessionId").is_unique().all()
    assert hour_of("action").get_column("actionRequestId").is_unique().all()


def test_action_tags_join_to_actions_and_action_ids_name_the_platform() -> None:
    actions = hour_of("action")
    tags = hour_of("action_tag")

    assert tags.get_column("actionRequestId").is_in(actions.get_column("actionRequestId").implode()).all()
    assert actions.get_column("actionRequestId").str.contains("^(wa|ma)[0-9a-f]{32}$").all()


@pytest.mark.parametrize("event_type", ["evar", "vstr"])
def test_session_events_belong_to_this_hours_visits(event_type: str) -> None:
    visits = hour_of("visit").select("visitUserId", "sessionId")

    assert hour_of(event_type).join(visits, on=["visitUserId", "sessionId"], how="anti").height == 0


def test_activations_belong_to_visitors_and_share_link_ids_with_clicks() -> None:
    activations = hour_of("ads_track_activation", rows_per_hour=4000)
    clicks = hour_of("ads_track_click", rows_per_hour=4000)

    visitors = hour_of("visit", rows_per_hour=4000).get_column("visitUserId").implode()
    assert activations.get_column("visitUserId").is_in(visitors).all()
    assert activations.get_column("linkId").is_in(clicks.get_column("linkId").implode()).any()


def test_ad_types_can_be_empty_in_an_hour() -> None:
    quiet = hour_of("ads_track_click", "2026112903")

    assert quiet.height == 0
    assert quiet.columns == [column.vendor_name for column in EVENT_TYPES["ads_track_click"].columns]


def test_data_carries_awkward_real_world_values() -> None:
    frame = hour_of("page", rows_per_hour=20_000)
    values = pl.concat([frame.get_column(name).drop_nulls() for name in frame.columns])

    for needle in ("首页", ",", '"', "\\", "\n", "\r\n"):
        assert values.str.contains(needle, literal=True).any(), needle
    assert (values == "").any()
    assert frame.select(pl.all().null_count()).sum_horizontal().item() > 0
    assert values.str.len_bytes().max() > 2_000  # a very long URL


def test_a_day_is_its_24_hours() -> None:
    day = generate_export("evar", "20261128", **SETTINGS)

    assert day.equals(pl.concat([hour_of("evar", f"20261128{hour:02d}") for hour in range(24)]))


def test_a_registry_column_without_a_recipe_gets_values_of_its_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    vstr = EVENT_TYPES["vstr"]
    extended = dataclasses.replace(vstr, columns=(*vstr.columns, Column("favouriteCount", ColumnKind.BIGINT)))
    monkeypatch.setitem(event_types.EVENT_TYPES, "vstr", extended)

    counts = hour_of("vstr").get_column("favouriteCount")

    assert counts.drop_nulls().str.contains(r"^\d+$").all()
    assert 0 < counts.null_count() < len(counts)


def test_a_type_only_the_registry_knows_is_generated_inside_its_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(event_types.EVENT_TYPES, "coupon", COUPON)

    frame = hour_of("coupon")

    assert frame.columns == [column.vendor_name for column in COUPON.columns]
    assert frame.height == math.ceil(400 * DEFAULT_ROWS_PER_PAGE)
    start_ms = int(datetime(2026, 11, 29, 10, tzinfo=BEIJING).timestamp() * 1000)
    issued = frame.get_column("issueTime").cast(pl.Int64)
    assert issued.min() >= start_ms and issued.max() < start_ms + 3_600_000
    assert frame.get_column("visitUserId").null_count() == 0, "a session's event names its visitor"


def test_bad_generator_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown GrowingIO event type"):
        hour_of("pages")
    with pytest.raises(ValueError, match="yyyyMMddHH"):
        hour_of("page", "20261129")
    with pytest.raises(ValueError, match="not a real date"):
        hour_of("page", "2026113125")


# --- the dialect writer -------------------------------------------------------------------------


def test_writer_encodes_nulls_empty_strings_quotes_and_backslashes_exactly() -> None:
    frame = pl.DataFrame({"a": [None, "", 'say "hi"', "C:\\dir\\", "one\r\ntwo", "中文,逗号", "plain"], "b": ["1"] * 7})

    assert (
        to_csv_text(frame)
        == ('a,b\n,1\n"",1\n"say \\"hi\\"",1\n"C:\\\\dir\\\\",1\n"one\r\ntwo",1\n"中文,逗号",1\nplain,1\n').encode()
    )


def test_an_empty_frame_is_a_header_only_part() -> None:
    frame = pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Utf8, "b": pl.Utf8})

    assert [gzip.decompress(part) for part in write_csv_parts(frame, 1024)] == [b"a,b\n"]


def test_bad_writer_arguments_are_rejected() -> None:
    frame = pl.DataFrame({"a": ["x"]})
    with pytest.raises(ValueError, match="part_size_bytes"):
        write_csv_parts(frame, 0)
    with pytest.raises(ValueError, match="compresslevel"):
        write_csv_parts(frame, 1024, compresslevel=10)


_AWKWARD_CHARACTERS = st.sampled_from([",", '"', "\\", "\n", "\r\n", "\r", " ", "中", "🎉", "a", "\t", "'"])
_VALUES = st.one_of(st.none(), st.lists(_AWKWARD_CHARACTERS, max_size=8).map("".join), st.text(max_size=8))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(_VALUES, _VALUES), min_size=1, max_size=20), part_size=st.integers(1, 200))
def test_any_values_round_trip_through_the_recommended_readers(rows, part_size) -> None:
    frame = pl.DataFrame(rows, schema={"first": pl.Utf8, "second": pl.Utf8}, orient="row")
    parts = write_csv_parts(frame, part_size)
    texts = [gzip.decompress(part) for part in parts]

    assert b"".join(text.split(b"\n", 1)[1] for text in texts) == to_csv_text(frame).split(b"\n", 1)[1]
    python_rows = [row for text in texts for row in _python_csv(text)[1:]]
    assert python_rows == [["" if value is None else value for value in row] for row in rows]
    # pyarrow keeps NULL (unquoted empty) apart from "" (quoted empty).
    arrow_rows = [row for text in texts for row in _pyarrow_csv(text)]
    assert arrow_rows == [list(row) for row in rows]


def _python_csv(text: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.decode(), newline=""), escapechar="\\", doublequote=False, strict=True))


def _pyarrow_csv(text: bytes) -> list[list[str | None]]:
    table = pacsv.read_csv(
        io.BytesIO(text),
        parse_options=pacsv.ParseOptions(escape_char="\\", double_quote=False, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={"first": pa.string(), "second": pa.string()},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return [list(row.values()) for row in table.to_pylist()]


def test_a_day_with_empty_hours_concatenates_for_the_writer() -> None:
    day = generate_export("ads_track_click", "20261128", **SETTINGS, enum_columns=True)
    text_day = generate_export("ads_track_click", "20261128", **SETTINGS)

    assert day.height == text_day.height == 21 * math.ceil(400 * rows_per_page("ads_track_click"))
    assert to_csv_text(day) == to_csv_text(text_day)


def test_writing_leaves_the_frame_unchanged() -> None:
    frame = pl.DataFrame({"a": ['q"uote', "plain", None, ""]})
    before = frame.clone()
    to_csv_text(frame)
    write_csv_parts(frame, 16)

    assert frame.equals(before)
    assert frame.get_column("a").to_list() == ['q"uote', "plain", None, ""]


@pytest.mark.parametrize("rows_per_hour", [0, 1, 3])
def test_tiny_volumes_still_join(rows_per_hour: int) -> None:
    frames = {name: hour_of(name, rows_per_hour=rows_per_hour) for name in EVENT_TYPES}

    assert frames["page"].height == rows_per_hour
    pages = frames["page"].get_column("pageRequestId").implode()
    assert frames["action"].get_column("pageRequestId").is_in(pages).all()
    actions = frames["action"].get_column("actionRequestId").implode()
    assert frames["action_tag"].get_column("actionRequestId").is_in(actions).all()


def test_users_log_in_mid_session_and_two_visitors_share_a_login() -> None:
    pages = pl.concat([hour_of("page", PREVIOUS_HOUR), hour_of("page")])
    per_session = pages.group_by("visitUserId", "sessionId").agg(
        pl.col("loginUserId").sort_by("sendTime").first().is_null().alias("anonymous_first"),
        pl.col("loginUserId").drop_nulls().n_unique().alias("logins"),
    )
    visitors_per_login = pages.drop_nulls("loginUserId").group_by("loginUserId").agg(pl.col("visitUserId").n_unique())

    assert per_session.filter(pl.col("anonymous_first") & (pl.col("logins") == 1)).height > 0
    assert per_session.get_column("logins").max() == 1  # one person per session
    assert visitors_per_login.get_column("visitUserId").max() == 2


def test_activations_match_earlier_clicks_by_device_id_or_only_by_ip_and_user_agent() -> None:
    hours = [f"202611{day:02d}{hour:02d}" for day in (26, 27, 28, 29) for hour in range(24)][:-13]
    clicks = pl.concat([hour_of("ads_track_click", hour, rows_per_hour=4000) for hour in hours])
    activations = hour_of("ads_track_activation", HOUR, rows_per_hour=4000)
    device_columns = {"idfa": "idfa", "imei": "IMEI", "androidId": "androidId", "OAID": "OAID"}

    by_device = pl.concat(
        [
            activations.join(clicks, left_on=own, right_on=click, how="semi")
            for own, click in device_columns.items()
            if own in activations.columns
        ]
    ).unique()
    by_ip = activations.join(clicks, on=["ip", "userAgent"], how="semi")
    no_device = activations.filter(pl.all_horizontal(pl.col(list(device_columns)).is_null()))
    matched_clicks = activations.join(clicks, on=["ip", "userAgent"], suffix="_click")

    assert by_device.height > 0
    assert no_device.join(clicks, on=["ip", "userAgent"], how="semi").height > 0  # matched only by IP and user agent
    assert (
        matched_clicks.get_column("eventTime").cast(pl.Int64) < matched_clicks.get_column("sendTime").cast(pl.Int64)
    ).all()
    assert (matched_clicks.get_column("linkId") == matched_clicks.get_column("linkId_click")).all()
    assert by_ip.height < activations.height  # some activations match no click
