"""replace_partition is idempotent and all-or-nothing: a failure leaves every table exactly as it was."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from growingio_pipeline import warehouse
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import METADATA_DATABASE
from growingio_pipeline.parsing import ParsedPart, ParseError
from growingio_pipeline.warehouse import (
    LEDGER_TABLE,
    REJECTS_TABLE,
    DataFile,
    LoadAttempt,
    record_attempt,
    replace_partition,
)
from growingio_pipeline_tests.csv_fixtures import write_part, write_raw_part
from growingio_pipeline_tests.parsed_parts import parse_into_partition

PAGE = EVENT_TYPES["page"]
HEADER = ["sendTime", "title", "appVariable", "pageRequestId"]
HOUR_3 = "202611290300"
HOUR_4 = "202611290400"


def staged(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path, name: str, rows: list[list[str | None]], partition: str = HOUR_3
) -> ParsedPart[DataFile]:
    """A page part parsed into a new data file of ``partition``, not yet added."""
    part = write_part(tmp_path / name, HEADER, rows)
    source = f"https://cdn.example/{name}"
    return parse_into_partition(conn, PAGE, partition, part, source=source, staging_dir=tmp_path / "stage")


def page_rows(prefix: str, count: int) -> list[list[str | None]]:
    return [
        [str(1_795_892_400_000 + i), f"{prefix} title {i}", '{"k":"v"}' if i % 2 else "{bad", f"{prefix}-{i}"]
        for i in range(count)
    ]


def snapshot(conn: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """Everything a load may touch, loaded_at aside, in a comparable order, and any data file the catalog does not
    list (a failed load must remove those it wrote)."""
    return {
        "page": conn.execute("SELECT * EXCLUDE (_loaded_at) FROM growingio.page ORDER BY page_request_id").fetchall(),
        "rejects": conn.execute(f"SELECT * EXCLUDE (loaded_at) FROM {REJECTS_TABLE} ORDER BY ALL").fetchall(),
        "unlisted_files": unlisted_data_files(conn),
    }


def unlisted_data_files(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Parquet files under the lake's data path that no catalog row lists."""
    [(data_path,)] = conn.execute(
        f"SELECT value FROM {METADATA_DATABASE}.ducklake_metadata WHERE key = 'data_path'"
    ).fetchall()
    listed = {
        Path(path).name
        for (path,) in conn.execute(f"SELECT path FROM {METADATA_DATABASE}.ducklake_data_file").fetchall()
    }
    return sorted(str(path) for path in Path(data_path).rglob("*.parquet") if path.name not in listed)


@pytest.fixture
def loaded(conn, tmp_path: Path) -> dict[str, list[tuple]]:
    """Two partitions loaded (hour 3 with a reject), and their snapshot."""
    replace_partition(conn, PAGE, HOUR_3, [staged(conn, tmp_path, "h3.csv.gz", hour_3_rows())])
    replace_partition(conn, PAGE, HOUR_4, [staged(conn, tmp_path, "h4.csv.gz", page_rows("h4", 3), HOUR_4)])
    before = snapshot(conn)
    assert len(before["page"]) == 8 and len(before["rejects"]) == 1
    return before


def hour_3_rows() -> list[list[str | None]]:
    return [*page_rows("h3", 5), ["oops", "x", None, "bad"]]


def test_replacing_a_partition_twice_gives_identical_rows(conn, tmp_path: Path, loaded) -> None:
    first = replace_partition(conn, PAGE, HOUR_3, [staged(conn, tmp_path, "h3.csv.gz", hour_3_rows())])
    second = replace_partition(conn, PAGE, HOUR_3, [staged(conn, tmp_path, "h3.csv.gz", hour_3_rows())])
    assert snapshot(conn) == loaded
    assert (first.rows_loaded, second.rows_loaded, second.rows_rejected) == (5, 5, 1)


def test_several_parts_load_together_with_their_source(conn, tmp_path: Path, loaded) -> None:
    parts = [
        staged(conn, tmp_path, "a.csv.gz", page_rows("a", 4)),
        staged(conn, tmp_path, "b.csv.gz", page_rows("b", 2)),
    ]
    summary = replace_partition(conn, PAGE, HOUR_3, parts)
    assert (summary.parts, summary.rows_loaded, summary.unparsed_maps) == (2, 6, 3)
    by_source = conn.execute(
        "SELECT _source_part, count(*) FROM growingio.page WHERE _partition_key = ? GROUP BY ALL ORDER BY 1", [HOUR_3]
    ).fetchall()
    assert by_source == [("https://cdn.example/a.csv.gz", 4), ("https://cdn.example/b.csv.gz", 2)]
    assert conn.execute(f"SELECT count(*) FROM {REJECTS_TABLE} WHERE partition_key = ?", [HOUR_3]).fetchone() == (0,)
    assert snapshot(conn)["page"][-3:] == loaded["page"][-3:]  # hour 4 untouched


def test_the_ledger_row_commits_with_the_rows_and_counts_them(conn, tmp_path: Path, loaded) -> None:
    hour_4_window = (datetime(2026, 11, 28, 20, tzinfo=timezone.utc), datetime(2026, 11, 28, 21, tzinfo=timezone.utc))
    parts = [staged(conn, tmp_path, "h4.csv.gz", page_rows("h4", 3), HOUR_4)]  # times of hour 3's window
    started = datetime.now(timezone.utc)
    summary = replace_partition(
        conn,
        PAGE,
        HOUR_4,
        parts,
        window=hour_4_window,
        ledger=lambda s: LoadAttempt.loaded(s, export_type="hour", started_at=started),
    )
    assert (summary.rows_in_table, summary.rows_outside_window) == (3, 3)
    assert conn.execute(f"SELECT partition_key, status, rows_loaded FROM {LEDGER_TABLE}").fetchall() == [
        (HOUR_4, "LOADED", 3)
    ]


def test_a_failing_ledger_row_rolls_the_rows_back(conn, tmp_path: Path, loaded) -> None:
    def refuse(summary: warehouse.LoadSummary) -> LoadAttempt:
        raise RuntimeError(f"injected after {summary.rows_in_table} rows were added")

    with pytest.raises(RuntimeError, match="injected after 2 rows"):
        replace_partition(conn, PAGE, HOUR_3, [staged(conn, tmp_path, "x.csv.gz", page_rows("x", 2))], ledger=refuse)
    assert snapshot(conn) == loaded
    assert conn.execute(f"SELECT count(*) FROM {LEDGER_TABLE}").fetchone() == (0,)


def test_a_corrupt_second_data_file_leaves_everything_as_it_was(conn, tmp_path: Path, loaded) -> None:
    good = staged(conn, tmp_path, "good.csv.gz", page_rows("new", 7))
    corrupt = staged(conn, tmp_path, "corrupt.csv.gz", page_rows("bad", 7))
    corrupt_file = Path(corrupt.written.path)
    corrupt_file.write_bytes(corrupt_file.read_bytes()[:200])

    with pytest.raises(duckdb.Error):
        replace_partition(conn, PAGE, HOUR_3, [good, corrupt])

    assert snapshot(conn) == loaded
    assert conn.execute("SELECT 1").fetchone() == (1,)  # no transaction left open


def test_a_data_file_gone_before_the_commit_leaves_everything_as_it_was(conn, tmp_path: Path, loaded) -> None:
    gone = staged(conn, tmp_path, "gone.csv.gz", page_rows("gone", 2))
    Path(gone.written.path).unlink()
    with pytest.raises(duckdb.Error):
        replace_partition(conn, PAGE, HOUR_3, [gone])
    assert snapshot(conn) == loaded


def test_a_part_failing_while_its_data_file_is_written_leaves_no_file(conn, tmp_path: Path, loaded) -> None:
    truncated = write_raw_part(tmp_path / "cut.csv.gz", ("sendTime,title\n" + "1,abc\n" * 50_000).encode())
    truncated.write_bytes(truncated.read_bytes()[:-200])
    with pytest.raises(ParseError, match=r"part cut\.csv\.gz"):  # the parser's own error, not the writer's
        parse_into_partition(conn, PAGE, HOUR_3, truncated, source="cut.csv.gz", staging_dir=tmp_path / "stage")
    assert snapshot(conn) == loaded


def test_an_error_between_delete_and_insert_rolls_back(conn, tmp_path: Path, loaded, monkeypatch) -> None:
    def fail_after_delete(*args, **kwargs):
        deleted = conn.execute("SELECT count(*) FROM growingio.page WHERE _partition_key = ?", [HOUR_3]).fetchone()
        assert deleted == (0,)  # the delete already ran in this transaction
        raise RuntimeError("injected between delete and insert")

    monkeypatch.setattr(warehouse, "_add_data_file", fail_after_delete)
    with pytest.raises(RuntimeError, match="injected"):
        replace_partition(conn, PAGE, HOUR_3, [staged(conn, tmp_path, "x.csv.gz", page_rows("x", 2))])
    assert snapshot(conn) == loaded


def test_a_failed_load_still_records_its_attempt(conn, tmp_path: Path, loaded) -> None:
    broken = staged(conn, tmp_path, "broken.csv.gz", page_rows("b", 2))
    Path(broken.written.path).write_bytes(b"not parquet")
    started = datetime.now(timezone.utc)
    with pytest.raises(Exception) as raised:
        replace_partition(conn, PAGE, HOUR_3, [broken])
    record_attempt(
        conn,
        LoadAttempt.unloaded(
            event_type="page",
            partition_key=HOUR_3,
            export_type="hour",
            status="FAILED",
            error_msg=str(raised.value),
            started_at=started,
        ),
    )
    assert conn.execute(f"SELECT status, error_msg <> '' FROM {LEDGER_TABLE}").fetchall() == [("FAILED", True)]
    assert snapshot(conn) == loaded


def test_zero_parts_empties_only_that_partition(conn, loaded) -> None:
    summary = replace_partition(conn, PAGE, HOUR_3, [])
    assert (summary.parts, summary.rows_loaded) == (0, 0)
    assert snapshot(conn)["page"] == [
        row for row in loaded["page"] if row[-2] == HOUR_4
    ]  # (..., _partition_key, _source_part)
    assert snapshot(conn)["rejects"] == []


def test_parts_of_another_event_type_are_refused_before_any_change(conn, tmp_path: Path, loaded) -> None:
    part = write_part(tmp_path / "vstr.csv.gz", ["sendTime"], [["1"]])
    other = parse_into_partition(conn, EVENT_TYPES["vstr"], HOUR_3, part, source="vstr", staging_dir=tmp_path)
    with pytest.raises(ValueError, match="'vstr' rows, not 'page'"):
        replace_partition(conn, PAGE, HOUR_3, [other])
    assert snapshot(conn) == loaded
