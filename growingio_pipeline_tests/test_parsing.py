"""The CSV parser: the vendor dialect read exactly, typed per the registry, rejects and unusable parts."""

from __future__ import annotations

import gzip
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from growingio_pipeline.event_types import EVENT_TYPES, ColumnKind
from growingio_pipeline.parsing import (
    EXTRA_COLUMNS,
    UNPARSED_MAPS,
    ParseError,
    RowTooLargeError,
    frame_schema,
    read_frames,
)
from growingio_pipeline_tests.csv_fixtures import write_part, write_raw_part
from growingio_pipeline_tests.parsed_parts import parse_to_table

PAGE = EVENT_TYPES["page"]
CUSTOM_EVENT = EVENT_TYPES["custom_event"]
ACTION = EVENT_TYPES["action"]

AWKWARD_STRINGS: list[str | None] = [
    "plain",
    "a,b,c",
    'say "hi"',
    'backslash-quote \\" inside',
    "ends with backslash \\",
    "\\",
    "\\\\two",
    '"',
    ",",
    "line1\nline2",
    "crlf\r\nline",
    "\r",
    "商品详情：羽绒服，加厚款",
    "emoji 😀 and \t tab",
    "NA",
    "null",
    "NULL",
    "N/A",
    "nan",
    "true",
    "",
    None,
    "007",
    " 12 ",
    "1e3",
    "-0",
    '{"price":"50.0"}',
    "x" * 200_000,
]


def parse(event_type, path: Path, *, source: str = "part-0") -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """All frames of a part, concatenated: (data, rejects, unparsed map count)."""
    frames = list(read_frames(event_type, path, source=source))
    data = pl.concat([frame.data for frame in frames])
    rejects = pl.concat([frame.rejects for frame in frames])
    return data, rejects, sum(frame.unparsed_maps for frame in frames)


def epoch_ms(value: datetime) -> int:
    return int((value - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(milliseconds=1))


@pytest.mark.parametrize("quote_all", [True, False], ids=["quoted", "quoted-when-needed"])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_awkward_strings_arrive_exactly_as_written(tmp_path: Path, quote_all: bool, line_end: str) -> None:
    string_columns = [column for column in PAGE.columns if column.kind is ColumnKind.STRING]
    header = [column.vendor_name for column in string_columns]
    rows = [[value] * len(header) for value in AWKWARD_STRINGS]
    part = write_part(tmp_path / "p.csv.gz", header, rows, quote_all=quote_all, line_end=line_end)

    data, rejects, _ = parse(PAGE, part)

    assert rejects.height == 0
    for column in string_columns:
        assert data.get_column(column.name).to_list() == AWKWARD_STRINGS, column.name


def test_typed_columns_are_exact(tmp_path: Path) -> None:
    times = [
        datetime(2026, 11, 29, 3, 0, 0, 1000, tzinfo=timezone.utc),
        datetime(2026, 11, 29, 3, 59, 59, 999000, tzinfo=timezone.utc),
        datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc),
        datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc),
        datetime(1, 1, 1, tzinfo=timezone.utc),
    ]
    indexes = ["0", "-9223372036854775808", "9223372036854775807", "+7", "007"]
    numbers = ["1.5", "-0.25", "1e3", "123456789.123456789", "2"]
    header = ["sendTime", "time", "index", "requestValue", "actionRequestId"]
    rows = [
        [str(epoch_ms(t)), str(epoch_ms(t)), i, "007", f"wa{n}"]
        for t, i, n in zip(times, indexes, numbers, strict=True)
    ]
    data, rejects, _ = parse(ACTION, write_part(tmp_path / "a.csv.gz", header, rows))

    assert rejects.height == 0
    assert data.schema == frame_schema(ACTION)
    assert data.get_column("send_time").to_list() == times
    assert data.get_column("time").to_list() == times
    assert data.get_column("index").to_list() == [0, -(2**63), 2**63 - 1, 7, 7]
    assert data.get_column("request_value").to_list() == ["007"] * 5  # a string column keeps leading zeros

    doubles = write_part(tmp_path / "c.csv.gz", ["eventNumber", "sendTime"], [[n, "0"] for n in numbers])
    data, _, _ = parse(CUSTOM_EVENT, doubles)
    assert data.get_column("event_number").to_list() == [1.5, -0.25, 1000.0, 123456789.123456789, 2.0]


TEXT_VALUES = st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(TEXT_VALUES, TEXT_VALUES, TEXT_VALUES), max_size=12),
    quote_all=st.booleans(),
)
def test_any_table_of_strings_reads_back_identically(rows: list[tuple[str | None, ...]], quote_all: bool) -> None:
    header = ["visitUserId", "sessionId", "domain"]
    with tempfile.TemporaryDirectory() as directory:
        part = write_part(Path(directory) / "p.csv.gz", header, rows, quote_all=quote_all)
        data, rejects, _ = parse(EVENT_TYPES["evar"], part)
    assert rejects.height == 0
    read_back = list(
        zip(*(data.get_column(name).to_list() for name in ["visit_user_id", "session_id", "domain"]), strict=True)
    )
    assert read_back == rows


def test_map_values_kept_as_json_text_unusable_ones_moved_and_counted(tmp_path: Path) -> None:
    usable = [
        '{"price":"50.0","item":"101"}',
        "{}",
        ' { "note" : "say \\"hi\\"" , "empty":"" , "gone":null } ',
        '{"path":"a\\\\b","u":"\\u4e2d\\ud83d\\ude00"}',
        '{"a":"1","a":"2"}',  # well-formed; the warehouse catches duplicate keys
    ]
    unusable = [
        '{"city"->"beijing"}',
        '{"price":50.0}',
        '{"nested":{"a":"b"}}',
        '["a"]',
        '{"bad":"\\ud800"}',
        '{"a":"b"} trailing',
        "",
        "not json",
    ]
    rows = [[str(i), value] for i, value in enumerate([*usable, *unusable, None])]
    data, rejects, unparsed = parse(
        CUSTOM_EVENT, write_part(tmp_path / "m.csv.gz", ["sendTime", "eventVariable"], rows)
    )

    assert rejects.height == 0 and data.height == len(rows)
    assert unparsed == len(unusable)
    assert data.get_column("event_variable").to_list() == [*usable, *[None] * len(unusable), None]
    moved = [
        None if text is None else pl.Series([text]).str.json_decode().item() for text in data.get_column(UNPARSED_MAPS)
    ]
    assert moved == [None] * len(usable) + [{"event_variable": value} for value in unusable] + [None]


def test_unknown_columns_kept_missing_reported_and_case_variants_normalised(tmp_path: Path) -> None:
    header = ["imei", "channelID", "eventTime", "brandNewColumn", "Other"]
    rows = [["860000000000001", "ch-1", "1", "new", None], ["", None, "2", "", "x"]]
    part = write_part(tmp_path / "ads.csv.gz", header, rows)
    frames = list(read_frames(EVENT_TYPES["ads_track_click"], part, source="https://cdn/x.csv.gz?sig=SECRET"))
    data = pl.concat([frame.data for frame in frames])

    assert data.get_column("imei").to_list() == ["860000000000001", ""]
    assert data.get_column("channel_id").to_list() == ["ch-1", None]
    extras = [pl.Series([text]).str.json_decode().item() for text in data.get_column(EXTRA_COLUMNS)]
    assert extras == [{"brandNewColumn": "new", "Other": None}, {"brandNewColumn": "", "Other": "x"}]
    assert frames[0].unknown_columns == ("brandNewColumn", "Other")
    assert "IMEI" not in frames[0].missing_columns and "clickUrl" in frames[0].missing_columns
    assert data.get_column("click_url").to_list() == [None, None]


def test_rows_with_wrong_field_count_or_bad_numbers_are_rejected_the_rest_loads(tmp_path: Path) -> None:
    text = (
        b"sendTime,actionRequestId,ruleId\n"
        b"1,ok-1,r\n"
        b"2,too,many,fields\n"
        b"3,too-few\n"
        b"abc,bad-time,r\n"
        b'"",empty-time,r\n'
        b"1.5,fractional-time,r\n"
        b"99999999999999999,out-of-range,r\n"
        b"4,ok-2,r\n"
    )
    part = write_raw_part(tmp_path / "t.csv.gz", text)
    data, rejects, _ = parse(EVENT_TYPES["action_tag"], part)

    assert data.get_column("action_request_id").to_list() == ["ok-1", "ok-2"]
    by_reason = dict(zip(rejects.get_column("raw_text"), rejects.get_column("reason"), strict=True))
    assert by_reason["2,too,many,fields"] == "expected 3 fields, found 4"
    assert by_reason["3,too-few"] == "expected 3 fields, found 2"
    typed_rejects = rejects.filter(pl.col("row_number").is_not_null()).sort("row_number")
    assert typed_rejects.get_column("row_number").to_list() == [2, 3, 4, 5]
    assert all(reason.startswith("sendTime: not epoch milliseconds") for reason in typed_rejects.get_column("reason"))
    assert '"actionRequestId":"bad-time"' in typed_rejects.get_column("raw_text")[0]


def test_non_numeric_bigint_and_double_rejected_with_column_and_value(tmp_path: Path) -> None:
    part = write_part(tmp_path / "a.csv.gz", ["sendTime", "index"], [["1", "12"], ["2", "twelve"], ["3", None]])
    data, rejects, _ = parse(ACTION, part)
    assert data.get_column("index").to_list() == [12, None]  # NULL is not a reject
    assert rejects.get_column("reason").to_list() == ["index: not an integer: twelve"]

    part = write_part(tmp_path / "c.csv.gz", ["sendTime", "eventNumber"], [["1", "1,5"]])
    _, rejects, _ = parse(CUSTOM_EVENT, part)
    assert rejects.get_column("reason").to_list() == ["eventNumber: not a number: 1,5"]


def test_parse_part_hands_rows_to_the_writer_stages_rejects_and_counts(tmp_path: Path) -> None:
    rows = [["1", "a", '{"k":"v"}', "x"], ["zz", "b", None, None], ["3", "c", "{bad}", None]]
    part = write_part(tmp_path / "part-00000.csv.gz", ["sendTime", "visitUserId", "eventVariable", "extra"], rows)
    parsed = parse_to_table(
        CUSTOM_EVENT,
        part,
        source="https://cdn.example/part-00000.csv.gz?Signature=SECRET",
        staging_dir=tmp_path / "stage",
    )

    assert parsed.source == "https://cdn.example/part-00000.csv.gz"
    assert (parsed.rows_read, parsed.rows_rejected, parsed.unparsed_maps) == (3, 1, 1)
    assert parsed.unknown_columns == ("extra",) and "pageTime" in parsed.missing_columns
    assert parsed.size_bytes == part.stat().st_size
    assert parsed.written.num_rows == 2 and parsed.written.column("visit_user_id").to_pylist() == ["a", "c"]
    assert pa.ipc.open_file(str(parsed.rejects_path)).read_all().num_rows == 1

    clean = write_part(tmp_path / "clean.csv.gz", ["sendTime"], [["1"]])
    assert parse_to_table(CUSTOM_EVENT, clean, source="clean", staging_dir=tmp_path / "stage").rejects_path is None


def test_header_only_part_gives_no_rows(tmp_path: Path) -> None:
    parsed = parse_to_table(
        PAGE, write_part(tmp_path / "h.csv.gz", ["sendTime", "title"], []), source="h", staging_dir=tmp_path
    )
    assert parsed.rows_read == 0
    assert parsed.written.num_rows == 0


def test_a_10_mb_field_loads(tmp_path: Path) -> None:
    huge = 'a\\"b,c\n' * (10 * 1024 * 1024 // 7)
    part = write_part(
        tmp_path / "big.csv.gz", ["sendTime", "title", "page"], [["1", huge, "after"], ["2", "small", "p"]]
    )
    with pytest.raises(RowTooLargeError, match="row is over"):
        list(read_frames(PAGE, part, source="big", block_size=1024 * 1024))

    staged = parse_to_table(PAGE, part, source="big", staging_dir=tmp_path / "stage").written
    assert staged.column("title").to_pylist() == [huge, "small"]
    assert staged.column("page").to_pylist() == ["after", "p"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not gzip at all", "not a readable gzip file"),
        (gzip.compress(b"sendTime,title\n1,\xff\xfe broken\n"), "invalid UTF-8"),
        (gzip.compress(b"send\xffTime,title\n1,a\n"), "header is not valid UTF-8"),
        (gzip.compress(b"<!DOCTYPE html><html><body>Access denied</body></html>\n"), "header matches no page column"),
        (gzip.compress(b""), "empty file"),
        (gzip.compress(b"visitUserId,VisitUserId\n1,2\n"), "twice"),
        (gzip.compress(b"sendTime,x,x\n1,2,3\n"), "repeats an unknown column"),
        (gzip.compress(b"sendTime,title\n" + b"1,abc\n" * 50_000)[:-200], "part "),
    ],
    ids=["not-gzip", "bad-utf8", "bad-utf8-header", "html", "empty", "duplicate", "duplicate-unknown", "truncated"],
)
def test_unusable_parts_raise_a_clear_error_naming_the_part(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(content)
    with pytest.raises(ParseError, match=message) as raised:
        parse_to_table(PAGE, path, source="https://cdn.example/bad.csv.gz?token=SECRET", staging_dir=tmp_path / "stage")
    assert "https://cdn.example/bad.csv.gz" in str(raised.value)
    assert "SECRET" not in str(raised.value)


def test_a_part_that_cannot_be_opened_is_a_parse_error_naming_the_part(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="not a readable gzip file") as raised:
        parse_to_table(
            PAGE, tmp_path / "gone.csv.gz", source="https://cdn.example/gone.csv.gz?token=SECRET", staging_dir=tmp_path
        )
    assert "https://cdn.example/gone.csv.gz" in str(raised.value)
    assert "SECRET" not in str(raised.value)


def test_header_names_that_look_internal_or_empty_stay_unknown_columns(tmp_path: Path) -> None:
    header = ["sendTime", "__reason", "_extra_columns", ""]
    part = write_part(tmp_path / "odd.csv.gz", header, [["1", "a", "b", "c"], ["bad", "d", "e", "f"]])
    data, rejects, _ = parse(PAGE, part)
    extras = pl.Series(data.get_column(EXTRA_COLUMNS)).str.json_decode().to_list()
    assert extras == [{"__reason": "a", "_extra_columns": "b", "": "c"}]
    assert rejects.get_column("raw_text").to_list() == ['{"sendTime":"bad","__reason":"d","_extra_columns":"e","":"f"}']


def test_a_byte_order_mark_and_blank_lines_between_rows_are_ignored(tmp_path: Path) -> None:
    part = write_raw_part(tmp_path / "bom.csv.gz", "\ufeffsendTime,title\r\n1,a\r\n\r\n2,b\r\n".encode())
    data, rejects, _ = parse(PAGE, part)
    assert data.get_column("title").to_list() == ["a", "b"] and rejects.height == 0
