"""What a query pays the lake's catalog as the lake's files grow, on PostgreSQL with and without the statistics
index, and on SQLite.

Usage (from the repository root, with the project's venv; PostgreSQL's server binaries installed, as
``bash scripts/test.sh`` installs them)::

    python benchmarks/catalog_benchmark.py                       # 500, 2000 and 4000 files
    python benchmarks/catalog_benchmark.py --files 100 --reps 3

Before it reads a table with a filter, DuckLake reads that table's file statistics from the catalog. On a
SQLite catalog, and on a PostgreSQL catalog without an index on ``ducklake_file_column_stats (table_id,
column_id)``, it reads the statistics of every file of every table, so each filtered query slows down as the
whole lake grows. The project creates that index in a PostgreSQL catalog (``lake.ensure_catalog_indexes``).

Each catalog holds one history table of 40 columns, written in ``--files`` single-row inserts (a data file and
40 statistics rows each, as an hour of a raw table adds), and one small table of 1,000 rows in one file. Timed:
a filtered count on the small table, ``--reps`` times in each of three fresh connections, alternating the
catalogs; medians. Every count is checked, and ``--json`` adds each catalog's history files and which
PostgreSQL catalog has the index.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from results import add_json_option, write_json

from growingio_pipeline.lake import FILE_STATISTICS_INDEX, LakeSettings, connect_lake

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' PostgreSQL starter, from the checkout
from growingio_pipeline_tests.services import PostgresServer, running_postgres

HISTORY_COLUMNS = 40
FILTERED_COUNT = "SELECT count(*) FROM small WHERE id >= 500"
EXPECTED_COUNT = 500


def add_history_files(conn: duckdb.DuckDBPyConnection, start: int, stop: int) -> None:
    """Files ``start`` to ``stop - 1`` of the history table: one single-row insert (one data file) each."""
    columns = ", ".join(f"c{number} VARCHAR" for number in range(HISTORY_COLUMNS))
    conn.execute(f"CREATE TABLE IF NOT EXISTS history (file INTEGER, {columns})")
    values = ", ".join(f"'{number}'" for number in range(HISTORY_COLUMNS))
    for file in range(start, stop):
        conn.execute(f"INSERT INTO history VALUES ({file}, {values})")


def timed_counts(settings: LakeSettings, reps: int) -> list[float]:
    """``reps`` timings of the filtered count in a fresh read-only connection (after one untimed count)."""
    with connect_lake(settings, read_only=True) as conn:
        assert conn.execute(FILTERED_COUNT).fetchone() == (EXPECTED_COUNT,)
        timings = []
        for _ in range(reps):
            started = time.perf_counter()
            assert conn.execute(FILTERED_COUNT).fetchone() == (EXPECTED_COUNT,)
            timings.append(time.perf_counter() - started)
        return timings


def drop_statistics_index(server: PostgresServer, database: str) -> None:
    with server.connect(database) as catalog, catalog.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {FILE_STATISTICS_INDEX}")


def has_statistics_index(server: PostgresServer, database: str) -> bool:
    with server.connect(database) as catalog, catalog.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", (FILE_STATISTICS_INDEX,))
        return bool(cursor.fetchone()[0])


def history_files(settings: LakeSettings) -> int:
    with connect_lake(settings, read_only=True) as conn:
        return int(conn.execute("SELECT count(*) FROM ducklake_list_files('lake', 'history')").fetchone()[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[500, 2000, 4000], help="history files, ascending")
    parser.add_argument("--reps", type=int, default=10, help="timed counts per connection")
    add_json_option(parser)
    args = parser.parse_args(argv)

    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="catalog-benchmark-") as folder, running_postgres() as server:
        lakes = {
            "postgres_indexed": server.lake_settings(server.create_database("indexed"), f"{folder}/indexed/"),
            "postgres_unindexed": server.lake_settings(server.create_database("unindexed"), f"{folder}/unindexed/"),
            "sqlite": LakeSettings.in_folder(Path(folder) / "sqlite"),
        }
        for settings in lakes.values():
            with connect_lake(settings) as conn:
                conn.execute("CREATE TABLE small AS SELECT range AS id FROM range(1000)")
        written = 0
        for files in args.files:
            for settings in lakes.values():
                with connect_lake(settings) as conn:
                    add_history_files(conn, written, files)
            drop_statistics_index(server, "unindexed")  # each writer's connect_lake made it again
            written = files
            timings: dict[str, list[float]] = {name: [] for name in lakes}
            for _ in range(3):
                for name, settings in lakes.items():
                    timings[name] += timed_counts(settings, args.reps)
            figures[str(files)] = {name: statistics.median(values) * 1000 for name, values in timings.items()}
        checks = {
            "history_files": {name: history_files(settings) for name, settings in lakes.items()},
            "indexed": {name: has_statistics_index(server, name) for name in ("indexed", "unindexed")},
        }

    print(f"\nfiltered count on a 1,000-row table, median ms, by files in the lake ({HISTORY_COLUMNS} columns each):")
    print(f"{'files':>6} {'postgres, indexed':>18} {'postgres, no index':>19} {'sqlite':>8} {'no index / indexed':>19}")
    for files, medians in figures.items():
        ratio = medians["postgres_unindexed"] / medians["postgres_indexed"]
        print(
            f"{files:>6} {medians['postgres_indexed']:>18.1f} {medians['postgres_unindexed']:>19.1f} "
            f"{medians['sqlite']:>8.1f} {ratio:>18.1f}x"
        )
    write_json(args.json, {"median_ms": figures, **checks})


if __name__ == "__main__":
    sys.exit(main())
