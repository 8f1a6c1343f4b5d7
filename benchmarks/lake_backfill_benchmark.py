"""A 15-day backfill into the lake: 360 hourly partitions, two runs at a time, then maintenance and a query.

Usage (from the repository root, with the project's venv)::

    python benchmarks/lake_backfill_benchmark.py                      # 360 hours, 100,000 page rows an hour
    python benchmarks/lake_backfill_benchmark.py --hours 4 --rows-per-hour 1000

The 360 hours end at 2026-12-01 00:00 Beijing (a partition in the future does not exist yet). Each partition
is a real Dagster run (``dagster.materialize`` of the ten-asset multi-asset), ``--concurrency`` at a time
as the daemon's run queue runs a backfill, in that many long-lived worker processes (the daemon would start a
process per run: about 1.5 s more each, measured by ``backfill_concurrency_benchmark.py``). The other event
types have rows in proportion to page's (``generator.ROWS_PER_PAGE``). The local export server generates
each hour when it is first asked, in this process, so its work shares the machine with the runs. Its
retention is 16 days here so that one frozen clock, two hours after the last hour, still serves the first.

Reported: the backfill's wall time, the largest peak RSS of a run and of this process (the server), the
lake's files and bytes before and after one maintenance pass (``maintenance.maintain`` with a snapshot age
of 0, so every file a replaced or merged partition left is deleted), and the median of three runs of one
day's sessions-per-platform query through ``query.connect()``. Every table is checked against the
generator's row counts.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import dagster as dg
from backfill_benchmark import QUIET_RUN_CONFIG, event_assets_and_resources, lake_settings, partition_keys
from backfill_concurrency_benchmark import expected_rows, loaded_rows
from results import add_json_option, write_json

from growingio_pipeline.event_types import RETENTION_DAYS
from growingio_pipeline.lake import connect_lake
from growingio_pipeline.local_server import BEIJING, FrozenClock, LocalExportServer
from growingio_pipeline.maintenance import maintain
from growingio_pipeline.query import connect

SESSIONS_PER_PLATFORM = """
SELECT platform, count(DISTINCT (visit_user_id, session_id)) AS sessions, count(*) AS page_views
FROM growingio.page WHERE _partition_key BETWEEN ? AND ? GROUP BY platform ORDER BY sessions DESC"""
"""One Beijing day's sessions and page views per platform (the day's 24 partition keys)."""
LAST_HOUR_END = datetime(2026, 12, 1, tzinfo=BEIJING)

_assets_and_resources = cache(event_assets_and_resources)
"""One worker's assets and resources, built once for all the runs it makes."""


def run_partition(base_url: str, token: str, project_id: str, lake_dir: str, key: str) -> bool:
    """In a worker process: materialize one partition; whether the run succeeded."""
    assets, resources = _assets_and_resources(base_url, token, project_id, lake_dir)
    return dg.materialize([assets], partition_key=key, resources=resources, run_config=QUIET_RUN_CONFIG).success


def _peak_rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def query_seconds(lake_dir: Path, first_key: str, last_key: str) -> tuple[float, list[tuple[object, ...]]]:
    """The median time of three runs of the sessions-per-platform query for one day, and its result."""
    times = []
    with connect(lake_settings(lake_dir)) as conn:
        for _ in range(3):
            started = time.perf_counter()
            rows = conn.execute(SESSIONS_PER_PLATFORM, [first_key, last_key]).fetchall()
            times.append(time.perf_counter() - started)
    return statistics.median(times), rows


def main() -> int:
    """Run the backfill, maintenance and the query; print and check the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=15 * 24, help="hourly partitions ending 2026-12-01 00:00 Beijing")
    parser.add_argument("--rows-per-hour", type=int, default=100_000, help="page rows per hour (other types scale)")
    parser.add_argument("--concurrency", type=int, default=2, help="runs at a time (the instance's run queue)")
    parser.add_argument("--workdir", type=Path, help="keep the lake here (default: a temporary folder)")
    add_json_option(parser)
    args = parser.parse_args()
    keys = partition_keys(args.hours, LAST_HOUR_END - timedelta(hours=args.hours))
    clock = FrozenClock(LAST_HOUR_END + timedelta(hours=2))
    server = LocalExportServer(
        rows_per_hour=args.rows_per_hour, clock=clock, retention_days=RETENTION_DAYS + 1, cache_bytes=2 * 1024**3
    )
    with server, tempfile.TemporaryDirectory(prefix="growingio-lake-backfill-") as temporary:
        lake_dir = args.workdir or Path(temporary)
        lake_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        target = (server.base_url, server.token, server.project_id, str(lake_dir))
        with ProcessPoolExecutor(max_workers=args.concurrency) as pool:
            runs = [pool.submit(run_partition, *target, key) for key in keys]
            for done, run in enumerate(runs, start=1):
                if not run.result():
                    raise RuntimeError(f"the run of {keys[done - 1]} did not succeed")
                if done % 24 == 0:
                    print(f"  {done} hours in {time.perf_counter() - started:.0f} s", flush=True)
        wall = time.perf_counter() - started
        expected = expected_rows(keys, args.rows_per_hour)
        rows_match = loaded_rows(lake_dir) == expected
        with connect_lake(lake_settings(lake_dir)) as conn:
            started = time.perf_counter()
            maintenance = maintain(conn, snapshot_age=timedelta(0))
            maintenance_s = time.perf_counter() - started
        day = keys[:24]
        query_s, sessions = query_seconds(lake_dir, day[0], day[-1])
    rows = sum(expected.values())
    figures = {
        "hours": len(keys),
        "rows": rows,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "peak_run_rss_mib": _peak_rss_mib(resource.RUSAGE_CHILDREN),
        "peak_server_rss_mib": _peak_rss_mib(resource.RUSAGE_SELF),
        "files_before": asdict(maintenance.before),
        "files_after": asdict(maintenance.after),
        "maintenance_s": maintenance_s,
        "day_query_s": query_s,
        "rows_as_generated": rows_match,
    }
    print(
        f"{len(keys)} hours, {rows:,} rows, {args.concurrency} runs at a time: {wall:.0f} s ({rows / wall:,.0f} rows/s)"
    )
    print(
        f"peak RSS: largest run {figures['peak_run_rss_mib']:,.0f} MiB, "
        f"this process (the export server) {figures['peak_server_rss_mib']:,.0f} MiB"
    )
    for moment, files in (("before", maintenance.before), ("after", maintenance.after)):
        print(
            f"lake files {moment} maintenance: {files.stored_files:,} stored "
            f"({files.stored_bytes / 1024**2:,.0f} MiB), "
            f"{files.live_files:,} live ({files.live_bytes / 1024**2:,.0f} MiB)"
        )
    print(f"maintenance took {maintenance_s:.1f} s and expired {maintenance.snapshots_expired:,} snapshots")
    print(f"one day's sessions per platform: {query_s * 1000:.0f} ms (median of 3); {sessions}")
    print(f"every table holds exactly the generator's rows: {rows_match}")
    write_json(args.json, figures)
    return 0 if rows_match else 1


if __name__ == "__main__":
    sys.exit(main())
