"""Property: any table of strings, written in the vendor's CSV dialect, reads back identically.

End to end: the export server's own writer (``write_csv_parts``: quotes only where needed, ``\\``
escapes, NULL as an empty unquoted field, rows spread over several gzip parts) serves the table; a real
Dagster run downloads, parses and loads it into DuckDB; the partition holds exactly the table. The
parser and the warehouse each have their own, faster property tests; this one covers the whole path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.local_server.csv_writer import write_csv_parts
from growingio_pipeline_tests.reliability_support import FINISHED_PARTITION, materialize_partition, start_server

PAGE = EVENT_TYPES["page"]
TEXT_COLUMNS = ("title", "page", "referrer", "queryParameters")
"""Documented string columns of page, by vendor name."""
HOUR_START_MS = 1_764_356_400_000
"""2026-11-28 19:00 UTC: 03:00 Beijing, the partition's first millisecond."""

AWKWARD = st.sampled_from(
    [",", '"', "\\", '\\"', "\n", "\r\n", "\r", " ", "中文标题", "🎉", "a", "\t", "'", "NULL", "NA"]
)
VALUES = st.one_of(
    st.none(),
    st.just(""),
    st.lists(AWKWARD, max_size=6).map("".join),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
)
ROWS = st.lists(st.tuples(*(VALUES for _ in TEXT_COLUMNS)), min_size=1, max_size=25)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalExportServer]:
    started = start_server()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def duckdb_path() -> Iterator[Path]:
    """One file for every example: each run replaces the partition, which is part of the property."""
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory) / "events.duckdb"


def served_parts(rows: list[tuple[str | None, ...]], part_size_bytes: int) -> list[bytes]:
    """The rows as the vendor writes them, each with a distinct sendTime to order them by."""
    frame = pl.DataFrame(
        {
            "sendTime": [str(HOUR_START_MS + number) for number in range(len(rows))],
            **{name: [row[position] for row in rows] for position, name in enumerate(TEXT_COLUMNS)},
        },
        schema={"sendTime": pl.Utf8, **{name: pl.Utf8 for name in TEXT_COLUMNS}},
    )
    return write_csv_parts(frame, part_size_bytes)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, part_size_bytes=st.sampled_from([1, 64, 1024 * 1024]))
def test_any_table_of_strings_loads_into_duckdb_exactly(
    server: LocalExportServer, duckdb_path: Path, rows: list[tuple[str | None, ...]], part_size_bytes: int
) -> None:
    parts = served_parts(rows, part_size_bytes)
    server.override_parts("page", FINISHED_PARTITION[:10], parts)

    result = materialize_partition(server, duckdb_path, selection=["page"], raise_on_error=False)

    assert result.success
    columns = ", ".join(PAGE.column_for_header(name).name for name in TEXT_COLUMNS)
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        stored = conn.execute(
            f"SELECT {columns} FROM growingio.page WHERE _partition_key = ? ORDER BY send_time", [FINISHED_PARTITION]
        ).fetchall()
        [(rejected,)] = conn.execute("SELECT count(*) FROM growingio._rejects").fetchall()
    assert stored == rows
    assert rejected == 0
