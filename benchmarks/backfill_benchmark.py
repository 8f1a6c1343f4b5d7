"""End-to-end backfill: 24 hourly partitions x every event type through real Dagster runs and the local server.

Usage (from the repository root, with the project's venv)::

    python benchmarks/backfill_benchmark.py                        # 24 partitions, 20,000 page rows an hour
    python benchmarks/backfill_benchmark.py --partitions 4 --rows-per-hour 2000

The local export server serves one Beijing day (2026-11-28) with a clock frozen after every hour
has FINISHED; ``prepare`` generates and compresses all parts first, so generation is not timed.
Each partition is one real Dagster run (``dagster.materialize``, in-process executor, one
instance for the whole backfill) of the ten-asset multi-asset, writing one lake (SQLite catalog). Per
partition the script reports:

- run: the run's wall time, RUN_START to RUN_SUCCESS in Dagster's event log;
- step: STEP_START to STEP_SUCCESS of the multi-asset's step;
- data path: time spent in ``ingest.stage_event_type`` (download, gzip check, parse, data files) and
  ``ingest.write_staged`` (lake transaction, verification, ledger row), timed around the asset's
  calls from ``ingest.load_partition`` (the ledger's ``duration_s`` cannot be summed: a type's attempt
  starts when it is staged, so the attempts of a run overlap);
- API and metadata: step minus data path (the export request under the 2 calls/s limit, the schema
  check, the materialization metadata and its preview query);
- orchestration overhead: run minus data path, and run minus step (Dagster alone).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from results import add_json_option, write_json

from growingio_pipeline import ingest
from growingio_pipeline.assets import build_event_assets
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import LakeSettings
from growingio_pipeline.local_server import BEIJING, FrozenClock, LocalExportServer
from growingio_pipeline.partitions import KEY_FORMATS, build_partitions_def
from growingio_pipeline.query import connect
from growingio_pipeline.resources import GrowingIOExportResource, WarehouseResource
from growingio_pipeline.warehouse import table_row_counts

DAY = datetime(2026, 11, 28, tzinfo=BEIJING)
SERVER_NOW = DAY + timedelta(days=1, hours=2)
"""Every hour of ``DAY`` is FINISHED by then (the slowest, 23:00, an hour after it ends)."""
FIRST_PARTITION = datetime(2026, 11, 1, tzinfo=BEIJING)
"""The benchmarks' assets know hours from here to now (a partition in the future does not exist yet)."""


def partition_keys(count: int, start: datetime = DAY) -> list[str]:
    """``count`` hourly partition keys from ``start`` (the API's export_date, Beijing time)."""
    return [(start + timedelta(hours=hour)).strftime(KEY_FORMATS["hour"]) for hour in range(count)]


def _event_times(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Timestamp of the first event of each Dagster event type in the run."""
    times: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is not None:
            times.setdefault(entry.dagster_event.event_type_value, entry.timestamp)
    return times


class DataPathTimer:
    """Seconds spent in the ingest functions the asset calls, and the rows they wrote, since ``reset``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.rows = 0

    def reset(self) -> None:
        """Start a new partition's count."""
        self.seconds, self.rows = 0.0, 0

    def timed(self, function: Callable[..., Any], *, counts_rows: bool = False) -> Callable[..., Any]:
        """``function``, adding its duration (and, for writes, the rows loaded) to this timer."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
            if counts_rows:
                self.rows += result.summary.rows_loaded
            return result

        return wrapper


def install_timer() -> DataPathTimer:
    """Time ``load_partition``'s calls to stage and write each type."""
    timer = DataPathTimer()
    ingest.stage_event_type = timer.timed(ingest.stage_event_type)
    ingest.write_staged = timer.timed(ingest.write_staged, counts_rows=True)
    return timer


QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def event_assets_and_resources(
    base_url: str, token: str, project_id: str, lake_dir: str
) -> tuple[dg.AssetsDefinition, dict[str, dg.ConfigurableResource]]:
    """The hourly event assets (from ``FIRST_PARTITION``), and resources for this server and the lake ``lake_dir``."""
    assets = build_event_assets("hour", build_partitions_def("hour", partition_keys(1, FIRST_PARTITION)[0]))
    resources = {
        "growingio": GrowingIOExportResource(base_url=base_url, token=token, project_id=project_id),
        "warehouse": WarehouseResource(
            catalog=lake_settings(lake_dir).catalog, data_path=lake_settings(lake_dir).data_path
        ),
    }
    return assets, resources


def lake_settings(lake_dir: str | Path) -> LakeSettings:
    """A lake with a SQLite catalog and local files, inside ``lake_dir``."""
    return LakeSettings.in_folder(Path(lake_dir))


def run_backfill(server: LocalExportServer, keys: list[str], lake_dir: Path) -> list[dict[str, float]]:
    """One Dagster run per partition; the timings of each."""
    assets, resources = event_assets_and_resources(server.base_url, server.token, server.project_id, str(lake_dir))
    timer = install_timer()
    figures = []
    with dg.DagsterInstance.ephemeral() as instance:
        for key in keys:
            timer.reset()
            started = time.perf_counter()
            result = dg.materialize(
                [assets], partition_key=key, resources=resources, instance=instance, run_config=QUIET_RUN_CONFIG
            )
            wall = time.perf_counter() - started
            events = _event_times(instance, result.run_id)
            run = events["PIPELINE_SUCCESS"] - events["PIPELINE_START"]
            step = events["STEP_SUCCESS"] - events["STEP_START"]
            data_path, rows = timer.seconds, timer.rows
            figures.append({"wall": wall, "run": run, "step": step, "data_path": data_path, "rows": rows})
            print(
                f"  {key}: {rows:>8,} rows  wall {wall:5.2f} s  run {run:5.2f} s  step {step:5.2f} s  "
                f"data path {data_path:5.2f} s  overhead {run - data_path:5.2f} s",
                flush=True,
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    """Prepare the data, run the backfill, print the totals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=24, help="hourly partitions, from 2026-11-28 00:00 Beijing")
    parser.add_argument("--rows-per-hour", type=int, default=20_000, help="page rows per hour (other types scale)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.partitions <= 24:
        parser.error("--partitions must be 1..24 (the hours of one day)")
    keys = partition_keys(args.partitions)
    server = LocalExportServer(rows_per_hour=args.rows_per_hour, clock=FrozenClock(SERVER_NOW), cache_bytes=8 * 1024**3)
    with server, tempfile.TemporaryDirectory(prefix="growingio-backfill-") as workdir:
        started = time.perf_counter()
        server.prepare(key[:10] for key in keys)
        print(
            f"prepared {len(keys)} hours x {len(EVENT_TYPES)} types in {time.perf_counter() - started:.1f} s "
            "(not timed below)"
        )
        lake_dir = Path(workdir) / "lake"
        started = time.perf_counter()
        figures = run_backfill(server, keys, lake_dir)
        total = time.perf_counter() - started
        with connect(lake_settings(lake_dir)) as conn:
            counts = table_row_counts(conn)
    rows = sum(figure["rows"] for figure in figures)

    def median(name: str) -> float:
        return statistics.median(figure[name] for figure in figures)

    def overhead(figure: dict[str, float]) -> float:
        return figure["run"] - figure["data_path"]

    print(
        f"\n{len(keys)} partitions x {len(EVENT_TYPES)} types: {rows:,} rows in {total:.1f} s "
        f"({rows / total:,.0f} rows/s end to end)"
    )
    print(f"rows per table: {counts}")
    print(
        f"per partition, median: run {median('run'):.2f} s, step {median('step'):.2f} s, "
        f"data path {median('data_path'):.2f} s, API and metadata (step - data path) "
        f"{statistics.median(f['step'] - f['data_path'] for f in figures):.2f} s"
    )
    print(
        f"orchestration overhead per partition (run - data path): median "
        f"{statistics.median(map(overhead, figures)):.2f} s, mean {statistics.mean(map(overhead, figures)):.2f} s; "
        f"Dagster alone (run - step): median {statistics.median(f['run'] - f['step'] for f in figures):.2f} s; "
        f"materialize() call outside the run: median {statistics.median(f['wall'] - f['run'] for f in figures):.2f} s"
    )
    write_json(
        args.json,
        {
            "partitions": len(keys),
            "event_types": len(EVENT_TYPES),
            "rows_written": rows,
            "rows_per_table": counts,
            "median_overhead_s": statistics.median(map(overhead, figures)),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
