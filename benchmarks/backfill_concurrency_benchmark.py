"""Backfill concurrency: one run per partition in its own process, 1, 2 or 3 runs at a time, one DuckDB file.

Usage (from the repository root, with the project's venv)::

    python benchmarks/backfill_concurrency_benchmark.py                   # 24 partitions; 1, 2 and 3 at a time
    python benchmarks/backfill_concurrency_benchmark.py --partitions 6 --rows-per-hour 2000 --concurrency 1 2

This measures the instance setting the README gives (``run_queue.max_concurrent_runs``). Like the
daemon's run launcher, each run is a fresh Python process running the ten-asset multi-asset for
one partition (``dagster.materialize``, in-process executor); the local export server serves the
prepared day from this process. For each concurrency the script reports the backfill's wall time,
the median run, and the time runs spent waiting for another run's DuckDB write lock (time inside
``WarehouseResource`` opening a connection, summed over runs), and checks that every table holds
exactly the generator's rows for every partition (no loss, no duplicate).

One run at a time is also what a concurrency pool of one on the loading step gives: the step
downloads, parses and writes, so the pool would serialise all of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import duckdb
from backfill_benchmark import QUIET_RUN_CONFIG, SERVER_NOW, event_assets_and_resources, partition_keys
from results import add_json_option, write_json

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.local_server import FrozenClock, LocalExportServer
from growingio_pipeline.local_server.generator import row_count
from growingio_pipeline.resources import WarehouseResource


def run_one_partition(base_url: str, token: str, project_id: str, database: str, key: str) -> dict[str, float]:
    """In a child process: materialize one partition; its run time and the time spent waiting for the lock."""
    connect_seconds: list[float] = []
    connect = WarehouseResource._connect_when_unlocked

    def timed_connect(self: WarehouseResource) -> duckdb.DuckDBPyConnection:
        started = time.perf_counter()
        try:
            return connect(self)
        finally:
            connect_seconds.append(time.perf_counter() - started)

    WarehouseResource._connect_when_unlocked = timed_connect
    assets, resources = event_assets_and_resources(base_url, token, project_id, database)
    started = time.perf_counter()
    result = dg.materialize([assets], partition_key=key, resources=resources, run_config=QUIET_RUN_CONFIG)
    return {
        "run_s": time.perf_counter() - started,
        "lock_wait_s": sum(connect_seconds),
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


def expected_rows(keys: list[str], rows_per_hour: int) -> dict[tuple[str, str], int]:
    """The generator's rows per (table, partition), leaving out empty ones."""
    counts = {(name, key): row_count(name, key[:10], rows_per_hour) for name in EVENT_TYPES for key in keys}
    return {pair: rows for pair, rows in counts.items() if rows}


def loaded_rows(database: Path) -> dict[tuple[str, str], int]:
    """Rows per (table, partition) in the DuckDB file."""
    with duckdb.connect(str(database), read_only=True) as conn:
        return {
            (name, key): rows
            for name in EVENT_TYPES
            for key, rows in conn.execute(
                f"SELECT _partition_key, count(*) FROM growingio.{name} GROUP BY ALL"
            ).fetchall()
        }


def backfill(server: LocalExportServer, keys: list[str], concurrency: int, workdir: Path) -> dict[str, object]:
    """All partitions, ``concurrency`` runs at a time, into a fresh DuckDB file."""
    database = workdir / f"concurrency-{concurrency}.duckdb"
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        runs = list(pool.map(lambda key: launch(server, database, key), keys))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "runs": runs, "counts": loaded_rows(database)}


def main() -> int:
    """Prepare the day, run the backfill at each concurrency, print the comparison."""
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(run_one_partition(*sys.argv[2:7])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=24, help="hourly partitions, from 2026-11-28 00:00 Beijing")
    parser.add_argument("--rows-per-hour", type=int, default=20_000, help="page rows per hour (other types scale)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 3], help="runs at a time, each tried")
    add_json_option(parser)
    args = parser.parse_args()
    keys = partition_keys(args.partitions)
    expected = expected_rows(keys, args.rows_per_hour)
    server = LocalExportServer(rows_per_hour=args.rows_per_hour, clock=FrozenClock(SERVER_NOW), cache_bytes=8 * 1024**3)
    results = {}
    with server, tempfile.TemporaryDirectory(prefix="growingio-concurrency-") as workdir:
        server.prepare(key[:10] for key in keys)
        for concurrency in args.concurrency:
            result = backfill(server, keys, concurrency, Path(workdir))
            results[concurrency] = result
            runs = result["runs"]
            lock_waits = [r["lock_wait_s"] for r in runs]
            print(
                f"{concurrency} at a time: {len(keys)} partitions in {result['wall_s']:.1f} s; median run "
                f"{statistics.median(r['run_s'] for r in runs):.2f} s "
                f"(process {statistics.median(r['process_s'] for r in runs):.2f} s); "
                f"lock waits {sum(lock_waits):.2f} s in all, longest {max(lock_waits):.2f} s; "
                f"rows as generated: {result['counts'] == expected}",
                flush=True,
            )
    slowest = min(results)
    for concurrency, result in results.items():
        if concurrency != slowest:
            speedup = results[slowest]["wall_s"] / result["wall_s"]
            print(f"speed-up of {concurrency} at a time over {slowest}: {speedup:.2f}x")
    mismatched = [c for c, r in results.items() if r["counts"] != expected]
    write_json(
        args.json,
        {
            "expected_rows": sum(expected.values()),
            "rows_as_generated": {str(c): r["counts"] == expected for c, r in results.items()},
            "partitions_run": {str(c): len(r["runs"]) for c, r in results.items()},
        },
    )
    if mismatched:
        print(f"rows differ from the generator's at concurrency {mismatched}", file=sys.stderr)
        return 1
    print(f"every table holds exactly the generator's rows at every concurrency ({sum(expected.values()):,} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
