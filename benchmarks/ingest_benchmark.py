"""Ingest throughput and memory: the project's path against DuckDB's and pandas' CSV readers, same files.

Usage (from the repository root, with the project's venv)::

    python benchmarks/ingest_benchmark.py                     # 1,000,000 page rows, 3 repetitions
    python benchmarks/ingest_benchmark.py --rows 200000 --reps 1 --memory-parts 2
    python benchmarks/ingest_benchmark.py --profile           # cProfile of the project's path, then exit

The data is the local server's generator (``generate_export``) written by its CSV writer as one
gzip part (level 6, like the vendor's), cached in ``--workdir``. Each engine loads the part into a
fresh lake (SQLite catalog, local Parquet files: the project's warehouse), in a subprocess of its own so
that its peak RSS is its own; engines alternate across repetitions. Timed, in each child, from the gzip file
on disk to committed rows (imports and the empty database excluded):

- ``project``: ``parse_part`` writing the part's data file as it parses, then ``replace_partition`` (what
  ``ingest`` runs per part, from the download stream, whose gzip check costs apart: printed);
- ``duckdb``: ``read_csv(..., escape='\\\\')`` in SQL, typed with the same casts, inserted;
- ``pandas``: ``pandas.read_csv(escapechar='\\\\')`` as text, then the same typed insert.

All three land in the project's table (``growingio.page``) through connections opened with
``warehouse.WRITE_CONNECTION_CONFIG``, so storage work and DuckDB settings are the same. The
script prints median rows/s, the ratios, peak RSS, and checks that the loaded tables hold the same
rows (``EXCEPT ALL`` both ways over every registry column; pandas cannot tell a quoted empty field
from an unquoted one, so its comparison treats ``''`` as NULL and says so). With
``--memory-parts N`` it also loads the part once and N times into one partition, to show that
peak memory does not grow with the number of parts. Peak RSS is each child's VmHWM.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results import add_json_option, write_json

ENGINES = ("project", "duckdb", "pandas")
EVENT_TYPE = "page"
EXPORT_DATE = "2026112810"
PARTITION_KEY = "202611281000"
COMPRESSLEVEL = 6


# --- data ------------------------------------------------------------------------------------------


def prepare_part(workdir: Path, rows: int) -> Path:
    """The benchmark's gzip part of ``rows`` page rows, generated once and cached."""
    from growingio_pipeline.local_server.csv_writer import write_csv_parts
    from growingio_pipeline.local_server.generator import generate_export

    path = workdir / f"page-{rows}-level{COMPRESSLEVEL}.csv.gz"
    if path.exists():
        return path
    frame = generate_export(
        EVENT_TYPE, EXPORT_DATE, project_id="9b0d1f56d5baff1a", seed=1, rows_per_hour=rows, enum_columns=True
    )
    # One part whatever its size: the part size bound is set above the data's size.
    (part,) = write_csv_parts(frame, part_size_bytes=1 << 40, compresslevel=COMPRESSLEVEL)
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_bytes(part)
    return path


# --- the engines (run in a child process) ---------------------------------------------------------


def typed_select(relation: str, partition_key: str = PARTITION_KEY) -> str:
    """SELECT over a relation of the vendor's text page columns giving the table's typed registry columns."""
    from growingio_pipeline.event_types import ColumnKind, get_event_type

    casts = {
        ColumnKind.STRING: "{}",
        ColumnKind.BIGINT: "CAST({} AS BIGINT)",
        ColumnKind.DOUBLE: "CAST({} AS DOUBLE)",
        ColumnKind.TIME: "CAST(epoch_ms(CAST({} AS BIGINT)) AS TIMESTAMPTZ)",
        ColumnKind.MAP: "TRY_CAST(TRY_CAST({} AS JSON) AS MAP(VARCHAR, VARCHAR))",
    }
    items = [
        casts[column.kind].format(f'"{column.vendor_name}"') + f' AS "{column.name}"'
        for column in get_event_type(EVENT_TYPE).columns
    ]
    return f"SELECT {', '.join(items)}, '{partition_key}' AS _partition_key FROM {relation}"


def _load_project(conn, part_paths: list[Path], staging_dir: Path) -> tuple[int, dict[str, float]]:
    from functools import partial

    from growingio_pipeline.event_types import get_event_type
    from growingio_pipeline.parsing import parse_part
    from growingio_pipeline.warehouse import replace_partition, write_data_file

    event_type = get_event_type(EVENT_TYPE)
    started = time.perf_counter()
    write = partial(write_data_file, conn, event_type, PARTITION_KEY)
    parts = [
        parse_part(event_type, path, source=f"bench/{path.name}", staging_dir=staging_dir, write=write)
        for path in part_paths
    ]
    parsed = time.perf_counter()
    summary = replace_partition(conn, event_type, PARTITION_KEY, parts)
    return summary.rows_loaded, {"parse_write_s": parsed - started, "commit_s": time.perf_counter() - parsed}


def _load_duckdb(conn, part_paths: list[Path]) -> tuple[int, dict[str, float]]:
    files = ", ".join(f"'{path}'" for path in part_paths)
    source = f"read_csv([{files}], escape='\\', quote='\"', header=true, all_varchar=true, allow_quoted_nulls=false)"
    conn.begin()
    [(rows,)] = conn.execute(f"INSERT INTO growingio.{EVENT_TYPE} BY NAME {typed_select(source)}").fetchall()
    conn.commit()
    return rows, {}


def _load_pandas(conn, part_paths: list[Path]) -> tuple[int, dict[str, float]]:
    import pandas as pd

    rows = 0
    for path in part_paths:
        started = time.perf_counter()
        frame = pd.read_csv(path, escapechar="\\", doublequote=False, dtype=str, keep_default_na=False, na_values=[""])
        parsed = time.perf_counter()
        conn.register("pandas_frame", frame)
        conn.begin()
        [(inserted,)] = conn.execute(
            f"INSERT INTO growingio.{EVENT_TYPE} BY NAME {typed_select('pandas_frame')}"
        ).fetchall()
        conn.commit()
        conn.unregister("pandas_frame")
        rows += inserted
        del frame
    return rows, {"read_csv_s": parsed - started, "insert_s": time.perf_counter() - parsed}


def open_fresh_lake(lake_dir: Path, config: dict[str, str] | None = None):
    """A connection to a new, empty lake in ``lake_dir`` (what was there is removed), with the project's schema."""
    from growingio_pipeline.lake import LakeSettings, connect_lake
    from growingio_pipeline.warehouse import ensure_schema

    shutil.rmtree(lake_dir, ignore_errors=True)
    conn = connect_lake(LakeSettings.in_folder(lake_dir), config=config)
    ensure_schema(conn)
    return conn


def run_engine(engine: str, part_paths: list[Path], db_path: Path) -> dict[str, object]:
    """Load the parts with ``engine`` into a fresh lake; rows, seconds, CPU, peak RSS (this process)."""
    from growingio_pipeline.warehouse import WRITE_CONNECTION_CONFIG

    conn = open_fresh_lake(db_path, WRITE_CONNECTION_CONFIG)  # every engine: the same DuckDB settings
    conn.execute("SET TimeZone = 'UTC'")
    if engine == "pandas":
        import pandas  # noqa: F401  (imported before the timer, like the other engines' modules)
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if engine == "project":
        rows, stages = _load_project(conn, part_paths, db_path.parent / f"{db_path.stem}-staging")
    elif engine == "duckdb":
        rows, stages = _load_duckdb(conn, part_paths)
    else:
        rows, stages = _load_pandas(conn, part_paths)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.close()
    cpu = usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime
    return {"engine": engine, "rows": rows, "seconds": seconds, "cpu_s": cpu, "peak_rss": _peak_rss(), **stages}


def _peak_rss() -> int:
    """This process's peak RSS in bytes (VmHWM).

    Not ``ru_maxrss``: Linux carries the parent's RSS at fork over into the child's ``ru_maxrss``
    across exec, so a large parent would inflate every child's figure.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(engine: str, part_paths: list[Path], db_path: Path) -> dict[str, object]:
    """``run_engine`` in a subprocess of its own; its JSON result."""
    command = [sys.executable, __file__, "--child", engine, "--db", str(db_path), *map(str, part_paths)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --- checks, figures -------------------------------------------------------------------------------


def differing_rows(reference_db: Path, other_db: Path, *, empty_is_null: bool) -> tuple[int, int]:
    """Rows of the reference's table missing from the other, and the reverse (``EXCEPT ALL``, every registry column)."""
    from growingio_pipeline.event_types import ColumnKind, get_event_type
    from growingio_pipeline.lake import LakeSettings, connect_lake

    columns = get_event_type(EVENT_TYPE).columns
    items = ", ".join(
        f"NULLIF(\"{c.name}\", '')" if empty_is_null and c.kind is ColumnKind.STRING else f'"{c.name}"' for c in columns
    )
    conn = connect_lake(LakeSettings.in_folder(reference_db), read_only=True)  # attached as `lake`
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute(f"ATTACH 'ducklake:sqlite:{LakeSettings.in_folder(other_db).catalog}' AS other (READ_ONLY)")
    table = f"growingio.{EVENT_TYPE}"

    def missing(left: str, right: str) -> int:
        query = (
            f"SELECT count(*) FROM (SELECT {items} FROM {left}.{table} EXCEPT ALL SELECT {items} FROM {right}.{table})"
        )
        return conn.execute(query).fetchall()[0][0]

    return missing("lake", "other"), missing("other", "lake")


def gzip_check_seconds(part_path: Path) -> float:
    """CPU seconds of the download's streaming gzip check over the part (runs in the download threads)."""
    from growingio_pipeline.export_api import _GzipCheck

    check = _GzipCheck()
    started = time.process_time()
    with part_path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            check.feed(chunk)
    check.finish()
    return time.process_time() - started


def _mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def benchmark(part_path: Path, workdir: Path, reps: int) -> dict[str, list[dict[str, object]]]:
    """Every engine ``reps`` times, the order rotated each repetition; results by engine."""
    results: dict[str, list[dict[str, object]]] = {engine: [] for engine in ENGINES}
    for rep in range(reps):
        order = ENGINES[rep % len(ENGINES) :] + ENGINES[: rep % len(ENGINES)]
        for engine in order:
            result = measure(engine, [part_path], workdir / engine)
            results[engine].append(result)
            rate = result["rows"] / result["seconds"]
            print(
                f"  rep {rep + 1} {engine:8s} {result['seconds']:6.2f} s  {rate:>9,.0f} rows/s"
                f"  cpu {result['cpu_s']:5.1f} s  peak {_mib(result['peak_rss'])}"
                + "".join(
                    f"  {key} {value:.2f}" for key, value in result.items() if key.endswith("_s") and key != "cpu_s"
                ),
                flush=True,
            )
    return results


def report(results: dict[str, list[dict[str, object]]], workdir: Path) -> dict[str, object]:
    """Print medians, ratios and the equality checks; the rows loaded and the differences, by engine."""
    medians = {
        engine: statistics.median(run["rows"] / run["seconds"] for run in runs) for engine, runs in results.items()
    }
    print("\nengine    median rows/s   median s   max peak RSS")
    for engine, runs in results.items():
        seconds = statistics.median(run["seconds"] for run in runs)
        print(f"{engine:8s} {medians[engine]:>14,.0f} {seconds:10.2f}   {_mib(max(run['peak_rss'] for run in runs))}")
    print(f"project / duckdb read_csv : {medians['project'] / medians['duckdb']:.2f}x")
    print(f"project / pandas read_csv : {medians['project'] / medians['pandas']:.2f}x")
    rows = {engine: {run["rows"] for run in runs} for engine, runs in results.items()}
    print(f"rows loaded: {rows}")
    differences = {}
    for engine, empty_is_null in (("duckdb", False), ("pandas", True)):
        missing, extra = differing_rows(workdir / "project", workdir / engine, empty_is_null=empty_is_null)
        note = " ('' read as NULL: pandas cannot tell quoted from unquoted empty fields)" if empty_is_null else ""
        print(
            f"tables equal, project vs {engine}: {missing == extra == 0} "
            f"({missing} rows only in project, {extra} only in {engine}){note}"
        )
        differences[engine] = {"only_in_project": missing, "only_in_other": extra}
    return {"rows_loaded": {engine: sorted(counts) for engine, counts in rows.items()}, "differences": differences}


def tables_equal(figures: dict[str, object]) -> bool:
    """Every engine loaded the same number of rows, and no row differs."""
    counts = {count for engine_counts in figures["rows_loaded"].values() for count in engine_counts}
    return len(counts) == 1 and all(sum(diff.values()) == 0 for diff in figures["differences"].values())


def memory_growth(part_path: Path, workdir: Path, parts: int) -> list[dict[str, object]]:
    """Peak RSS of the project's path for the part once and ``parts`` times in one partition; each run's figures."""
    copies = []
    for index in range(parts):
        copy = workdir / f"copy-{index}-{part_path.name}"
        if not copy.exists():
            copy.symlink_to(part_path)
        copies.append(copy)
    runs = []
    for count in (1, parts):
        result = measure("project", copies[:count], workdir / "memory")
        print(
            f"project, {count} part(s) of {_mib(part_path.stat().st_size)} gzip: {result['rows']:,} rows, "
            f"{result['seconds']:.2f} s, peak RSS {_mib(result['peak_rss'])}"
        )
        runs.append({"parts": count, **result})
    return runs


def profile(part_path: Path, workdir: Path) -> None:
    """cProfile of the project's path in this process: the top functions by own time."""
    conn = open_fresh_lake(workdir / "profile")
    profiler = cProfile.Profile()
    profiler.enable()
    rows, stages = _load_project(conn, [part_path], workdir / "profile-staging")
    profiler.disable()
    print(f"project path: {rows:,} rows, " + ", ".join(f"{key} {value:.2f}" for key, value in stages.items()))
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one engine); exit status 1 if the tables differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="page rows in the part")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each engine (0: memory run only)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/growingio-ingest-benchmark"))
    parser.add_argument(
        "--memory-parts", type=int, default=0, help="also load the part this many times in one partition"
    )
    parser.add_argument("--profile", action="store_true", help="profile the project's path and exit")
    add_json_option(parser)
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("parts", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_engine(args.child, args.parts, args.db)))
        return 0
    part_path = prepare_part(args.workdir, args.rows)
    print(f"part: {part_path} ({_mib(part_path.stat().st_size)} gzip, {args.rows:,} rows)")
    if args.profile:
        profile(part_path, args.workdir)
        return 0
    print(f"download-side gzip check (overlaps network I/O): {gzip_check_seconds(part_path):.2f} s CPU for this part")
    figures: dict[str, object] = {}
    if args.reps:
        figures.update(report(benchmark(part_path, args.workdir, args.reps), args.workdir))
    if args.memory_parts:
        figures["memory"] = memory_growth(part_path, args.workdir, args.memory_parts)
    write_json(args.json, figures)
    return 0 if not args.reps or tables_equal(figures) else 1


if __name__ == "__main__":
    sys.exit(main())
