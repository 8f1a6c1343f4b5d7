"""Backfill concurrency: one run per partition in its own process, 1, 2 or 4 runs at a time, one lake.

Usage (from the repository root, with the project's venv)::

    python benchmarks/backfill_concurrency_benchmark.py                   # 24 partitions; 1, 2 and 4 at a time
    python benchmarks/backfill_concurrency_benchmark.py --partitions 6 --rows-per-hour 2000 --concurrency 1 2
    python benchmarks/backfill_concurrency_benchmark.py --reference-tree ../single-file   # also the old warehouse

This measures the instance setting the README gives (``run_queue.max_concurrent_runs``). Like the
daemon's run launcher, each run is a fresh Python process running the ten-asset multi-asset for
one partition (``dagster.materialize``, in-process executor); the local export server serves the
prepared day from this process. For each concurrency the script reports the backfill's wall time,
the median run, and the time runs spent opening the lake (time inside ``WarehouseResource.connect``
before the connection is handed over, summed over runs), and checks that every table holds
exactly the generator's rows for every partition (no loss, no duplicate).

With ``--analyst``, while each backfill runs, an analyst process opens the lake read-only every 0.25 s, runs
``SELECT count(*) FROM growingio.page`` and disconnects: the script counts the queries that failed (the goal
is none) and their median and slowest time. The analyst takes most of a core (each connection loads the
lake's extensions), so throughput is measured without it and queries with it, in two invocations.

``--reference-tree`` names a checkout of the single-file version (one DuckDB file, before the lake) with its
own ``.venv``: its copy of this script runs right after, on the same partitions and rows, so both warehouses'
wall times are measured in one sitting.

One run at a time is also what a concurrency pool of one on the loading step gives: the step
downloads, parses and writes, so the pool would serialise all of it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from backfill_benchmark import QUIET_RUN_CONFIG, SERVER_NOW, event_assets_and_resources, lake_settings, partition_keys
from results import add_json_option, write_json

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import connect_lake
from growingio_pipeline.local_server import FrozenClock, LocalExportServer
from growingio_pipeline.local_server.generator import row_count
from growingio_pipeline.query import connect
from growingio_pipeline.resources import WarehouseResource
from growingio_pipeline.warehouse import ensure_schema

QUERY_INTERVAL_S = 0.25
ANALYST_QUERY = "SELECT count(*) FROM growingio.page"


def run_one_partition(base_url: str, token: str, project_id: str, database: str, key: str) -> dict[str, float]:
    """In a child process: materialize one partition; its run time and the time spent opening the lake."""
    connect_seconds: list[float] = []
    open_lake = WarehouseResource.connect

    @contextmanager
    def timed_connect(self: WarehouseResource) -> Iterator[duckdb.DuckDBPyConnection]:
        started = time.perf_counter()
        with open_lake(self) as conn:
            connect_seconds.append(time.perf_counter() - started)
            yield conn

    WarehouseResource.connect = timed_connect
    assets, resources = event_assets_and_resources(base_url, token, project_id, database)
    started = time.perf_counter()
    result = dg.materialize([assets], partition_key=key, resources=resources, run_config=QUIET_RUN_CONFIG)
    return {
        "run_s": time.perf_counter() - started,
        "connect_s": sum(connect_seconds),
        "success": result.success,
    }


def launch(server: LocalExportServer, database: Path, key: str) -> dict[str, float]:
    """One partition's run in a fresh process, timed from the process start."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, __file__, "--child", server.base_url, server.token, server.project_id, str(database), key],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the run of {key} failed:\n{completed.stderr[-3000:]}")
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    if not figures["success"]:
        raise RuntimeError(f"the run of {key} did not succeed")
    return {**figures, "process_s": time.perf_counter() - started}


def poll_queries(lake_dir: str, stop_file: str) -> dict[str, object]:
    """In a child process: connect, query and disconnect every 0.25 s until ``stop_file`` exists.

    It also stops when the benchmark that started it is gone (killed, timed out), so it never polls on alone.
    """
    times: list[float] = []
    errors: list[str] = []
    parent = os.getppid()
    while not Path(stop_file).exists() and os.getppid() == parent:
        started = time.perf_counter()
        try:
            with connect(lake_settings(lake_dir)) as conn:
                conn.execute(ANALYST_QUERY).fetchall()
            times.append(time.perf_counter() - started)
        except Exception as error:  # every failure counts, whatever its kind
            errors.append(f"{type(error).__name__}: {error}"[:300])
        time.sleep(max(0.0, QUERY_INTERVAL_S - (time.perf_counter() - started)))
    return {"queries": len(times) + len(errors), "failed": len(errors), "errors": errors[:5], "seconds": times}


@contextmanager
def analyst(lake_dir: Path) -> Iterator[dict[str, object]]:
    """An analyst process querying the lake in ``lake_dir`` for as long as the block runs; its figures after."""
    with connect_lake(lake_settings(lake_dir)) as conn:
        ensure_schema(conn)  # the tables exist before the first query, as in a lake in use
    stop_file = lake_dir / "stop-analyst"
    poller = subprocess.Popen(
        [sys.executable, __file__, "--poller", str(lake_dir), str(stop_file)], stdout=subprocess.PIPE, text=True
    )
    figures: dict[str, object] = {}
    try:
        yield figures
    finally:
        stop_file.touch()
        output, _ = poller.communicate()
        figures.update(json.loads(output.strip().splitlines()[-1]))


def expected_rows(keys: list[str], rows_per_hour: int) -> dict[tuple[str, str], int]:
    """The generator's rows per (table, partition), leaving out empty ones."""
    counts = {(name, key): row_count(name, key[:10], rows_per_hour) for name in EVENT_TYPES for key in keys}
    return {pair: rows for pair, rows in counts.items() if rows}


def loaded_rows(lake_dir: Path) -> dict[tuple[str, str], int]:
    """Rows per (table, partition) in the lake."""
    with connect(lake_settings(lake_dir)) as conn:
        return {
            (name, key): rows
            for name in EVENT_TYPES
            for key, rows in conn.execute(
                f"SELECT _partition_key, count(*) FROM growingio.{name} GROUP BY ALL"
            ).fetchall()
        }


def backfill(
    server: LocalExportServer, keys: list[str], concurrency: int, workdir: Path, *, with_analyst: bool
) -> dict[str, object]:
    """All partitions, ``concurrency`` runs at a time, into a fresh lake."""
    database = workdir / f"concurrency-{concurrency}"
    database.mkdir()
    with analyst(database) if with_analyst else nullcontext({}) as queries:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            runs = list(pool.map(lambda key: launch(server, database, key), keys))
        wall = time.perf_counter() - started
    return {"wall_s": wall, "runs": runs, "counts": loaded_rows(database), "queries": queries}


def print_queries(queries: dict[str, Any]) -> None:
    """The analyst's figures during one backfill."""
    seconds = queries["seconds"] or [0.0]
    print(
        f"  analyst queries: {queries['failed']} of {queries['queries']} failed; "
        f"median {statistics.median(seconds):.2f} s, slowest {max(seconds):.2f} s (connect, query, disconnect)"
    )
    for error in queries["errors"]:
        print(f"  a failed query: {error}")


def reference_walls(tree: Path, args: argparse.Namespace) -> dict[int, float]:
    """Run the single-file version's copy of this script in ``tree``; its wall time at each concurrency."""
    completed = subprocess.run(
        [
            str(tree / ".venv" / "bin" / "python"),
            str(tree / "benchmarks" / "backfill_concurrency_benchmark.py"),
            "--partitions",
            str(args.partitions),
            "--rows-per-hour",
            str(args.rows_per_hour),
            "--concurrency",
            *map(str, args.concurrency),
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    print(completed.stdout, end="")
    return {
        int(c): float(s)
        for c, s in re.findall(r"^(\d+) at a time: \d+ partitions in ([\d.]+) s", completed.stdout, re.M)
    }


def main() -> int:
    """Prepare the day, run the backfill at each concurrency, print the comparison."""
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(run_one_partition(*sys.argv[2:7])))
        return 0
    if sys.argv[1:2] == ["--poller"]:
        print(json.dumps(poll_queries(*sys.argv[2:4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=24, help="hourly partitions, from 2026-11-28 00:00 Beijing")
    parser.add_argument("--rows-per-hour", type=int, default=20_000, help="page rows per hour (other types scale)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4], help="runs at a time, each tried")
    parser.add_argument("--analyst", action="store_true", help="query the lake every 0.25 s during each backfill")
    parser.add_argument("--reference-tree", type=Path, help="a checkout of the single-file version, with .venv")
    add_json_option(parser)
    args = parser.parse_args()
    keys = partition_keys(args.partitions)
    expected = expected_rows(keys, args.rows_per_hour)
    server = LocalExportServer(rows_per_hour=args.rows_per_hour, clock=FrozenClock(SERVER_NOW), cache_bytes=8 * 1024**3)
    results = {}
    with server, tempfile.TemporaryDirectory(prefix="growingio-concurrency-") as workdir:
        server.prepare(key[:10] for key in keys)
        for concurrency in args.concurrency:
            result = backfill(server, keys, concurrency, Path(workdir), with_analyst=args.analyst)
            results[concurrency] = result
            runs = result["runs"]
            print(
                f"{concurrency} at a time: {len(keys)} partitions in {result['wall_s']:.1f} s; median run "
                f"{statistics.median(r['run_s'] for r in runs):.2f} s "
                f"(process {statistics.median(r['process_s'] for r in runs):.2f} s); "
                f"opening the lake {sum(r['connect_s'] for r in runs):.2f} s in all, "
                f"longest {max(r['connect_s'] for r in runs):.2f} s; "
                f"rows as generated: {result['counts'] == expected}",
                flush=True,
            )
            if args.analyst:
                print_queries(result["queries"])
    slowest = min(results)
    for concurrency, result in results.items():
        if concurrency != slowest:
            speedup = results[slowest]["wall_s"] / result["wall_s"]
            print(f"speed-up of {concurrency} at a time over {slowest}: {speedup:.2f}x")
    reference = reference_walls(args.reference_tree, args) if args.reference_tree else {}
    for concurrency, wall in reference.items():
        print(
            f"{concurrency} at a time: lake {results[concurrency]['wall_s']:.1f} s, single file {wall:.1f} s "
            f"(lake / single file {results[concurrency]['wall_s'] / wall:.2f})"
        )
    mismatched = [c for c, r in results.items() if r["counts"] != expected]
    write_json(
        args.json,
        {
            "expected_rows": sum(expected.values()),
            "rows_as_generated": {str(c): r["counts"] == expected for c, r in results.items()},
            "partitions_run": {str(c): len(r["runs"]) for c, r in results.items()},
            "failed_queries": {str(c): r["queries"].get("failed") for c, r in results.items()},
            "queries": {str(c): r["queries"].get("queries") for c, r in results.items()},
            "wall_s": {str(c): r["wall_s"] for c, r in results.items()},
            "single_file_wall_s": {str(c): wall for c, wall in reference.items()},
        },
    )
    if mismatched:
        print(f"rows differ from the generator's at concurrency {mismatched}", file=sys.stderr)
        return 1
    print(f"every table holds exactly the generator's rows at every concurrency ({sum(expected.values()):,} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
