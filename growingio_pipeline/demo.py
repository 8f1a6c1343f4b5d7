"""The demo: one day of all ten event types from the local export server into the lake under ``data/lake``.

Starts the local GrowingIO export server on a free loopback port, runs the Dagster job for the 24 hourly
partitions of the most recent complete Beijing day, and after each hour lets the analytics models'
automation condition decide what to rebuild, as the daemon would. It then prints rows per table, an
analytic query, and answers read from the models. Running it again gives the same tables: each partition is
replaced, never appended. The runs are recorded in the Dagster instance the README's UI section opens
(``DAGSTER_HOME``, by default ``dagster_home/``), so ``dagster dev`` shows the hours materialized with their checks.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from growingio_pipeline.analytics_assets import ANALYTICS_JOB
from growingio_pipeline.definitions import build_definitions
from growingio_pipeline.event_types import BEIJING
from growingio_pipeline.export_contract import KEY_FORMATS
from growingio_pipeline.lake import DEFAULT_CATALOG, LakeSettings
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.query import connect
from growingio_pipeline.warehouse import table_row_counts

DEMO_TOKEN = "demo-token"
DEMO_PROJECT_ID = "9b0d1f56d5baff1a"
DEFAULT_DAGSTER_HOME = "dagster_home"
"""The project's instance folder, relative to the repository root where scripts/demo.sh runs."""

PAGE_VIEWS_BY_PLATFORM_AND_HOUR = """
SELECT strftime(p.send_time AT TIME ZONE 'Asia/Shanghai', '%Y-%m-%d %H:00') AS beijing_hour,
       p.platform,
       count(DISTINCT p.page_request_id) AS page_views,
       count(DISTINCT (p.visit_user_id, p.session_id)) AS sessions
FROM growingio.page AS p
GROUP BY ALL
ORDER BY beijing_hour, page_views DESC
LIMIT 12
"""

MODEL_ANSWERS = {
    "sessions, visitors and bounce rate per platform per day": """
        SELECT beijing_date, platform, sum(sessions) AS sessions, sum(visitors) AS visitors,
               round(sum(bounce_rate * sessions) / sum(sessions), 3) AS bounce_rate
        FROM analytics.daily_metrics GROUP BY ALL ORDER BY beijing_date, platform""",
    "the top 5 pages by views": """
        SELECT page, count(*) AS page_views, round(avg(time_on_page), 1) AS avg_time_on_page_s
        FROM analytics.page_views GROUP BY page ORDER BY page_views DESC, page LIMIT 5""",
    "clicks and activations per ad link": """
        SELECT link_id, sum(clicks) AS clicks, sum(activations) AS activations,
               sum(matched_activations) AS matched, sum(matched_by_device) AS by_device,
               sum(matched_by_ip_user_agent) AS by_ip_user_agent
        FROM analytics.ads_attribution GROUP BY link_id ORDER BY clicks DESC, link_id""",
}
"""What the demo asks the models at the end."""


def latest_complete_day(now: datetime) -> datetime:
    """The newest Beijing day whose 24 hourly exports are all ready (the last is ready ~01:00 next day)."""
    day = (now.astimezone(BEIJING) - timedelta(hours=2)).date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=BEIJING)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lake-dir",
        type=Path,
        default=Path(DEFAULT_CATALOG).parent,
        help="the lake's folder: catalog.sqlite and files/ (default: data/lake)",
    )
    parser.add_argument("--rows-per-hour", type=int, default=2000, help="page rows per hour")
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument(
        "--dagster-home",
        default=os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME,
        help="the Dagster instance that records the runs (default: $DAGSTER_HOME, else dagster_home/)",
    )
    args = parser.parse_args(argv)

    lake = LakeSettings.in_folder(args.lake_dir)
    day = latest_complete_day(datetime.now(timezone.utc))
    partition_keys = [(day + timedelta(hours=h)).strftime(KEY_FORMATS["hour"]) for h in range(args.hours)]
    with LocalExportServer(token=DEMO_TOKEN, project_id=DEMO_PROJECT_ID, rows_per_hour=args.rows_per_hour) as server:
        print(f"local GrowingIO export server at {server.base_url}", flush=True)
        os.environ.update(
            GROWINGIO_BASE_URL=server.base_url,
            GROWINGIO_TOKEN=DEMO_TOKEN,
            GROWINGIO_PROJECT_ID=DEMO_PROJECT_ID,
            GROWINGIO_LAKE_CATALOG=lake.catalog,
            GROWINGIO_LAKE_DATA_PATH=lake.data_path,
            GROWINGIO_START_DATE=partition_keys[0],
            DAGSTER_HOME=str(Path(args.dagster_home).resolve()),
        )
        os.environ.pop("GROWINGIO_DUCKDB_PATH", None)  # the demo has its own lake: no warning about the old file
        _materialize(partition_keys)
    _report(lake)
    print(
        f"\nthe runs are recorded in the Dagster instance at {os.environ['DAGSTER_HOME']}: to see them, run\n"
        f"  DAGSTER_HOME={os.environ['DAGSTER_HOME']} GROWINGIO_LAKE_CATALOG={lake.catalog} "
        f"GROWINGIO_LAKE_DATA_PATH={lake.data_path} .venv/bin/dagster dev"
    )


def _materialize(partition_keys: list[str]) -> None:
    defs = build_definitions("hour", partition_keys[0])
    job, analytics_job = defs.resolve_job_def("growingio_export_job"), defs.resolve_job_def(ANALYTICS_JOB)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    # The instance `dagster dev` opens from the same DAGSTER_HOME: the UI then shows these runs and hours.
    with dg.DagsterInstance.get() as instance:
        # The daemon's first evaluation only records the starting point; later ones request what changed.
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        for number, partition_key in enumerate(partition_keys, start=1):
            started = time.monotonic()
            result = job.execute_in_process(partition_key=partition_key, instance=instance, run_config=quiet)
            rows = sum(_row_count(event) for event in result.get_asset_materialization_events())
            print(
                f"[{number:2}/{len(partition_keys)}] partition {partition_key}: "
                f"{len(result.get_asset_materialization_events())} tables, {rows:,} rows "
                f"in {time.monotonic() - started:.1f} s",
                flush=True,
            )
            cursor = _run_requested_models(defs, analytics_job, instance, cursor, quiet)


def _run_requested_models(
    defs: dg.Definitions,
    analytics_job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    cursor: Any,
    run_config: dict[str, Any],
) -> Any:
    """One evaluation of the automation conditions (what the daemon's sensor does), then the runs it asks for."""
    started = time.monotonic()
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    requested: dict[str, list[dg.AssetKey]] = {}
    for asset_key in analytics_job.asset_layer.executable_asset_keys:
        for partition_key in evaluation.get_requested_partitions(asset_key):
            if partition_key is None:  # the models are partitioned: every request names an hour
                raise ValueError(f"unpartitioned request for {asset_key.to_user_string()}")
            requested.setdefault(partition_key, []).append(asset_key)
    for partition_key, asset_keys in sorted(requested.items()):
        result = analytics_job.execute_in_process(
            partition_key=partition_key, instance=instance, run_config=run_config, asset_selection=asset_keys
        )
        checks = result.get_asset_check_evaluations()
        print(
            f"        models for {partition_key}: {len(asset_keys)} rebuilt by the automation condition, "
            f"{sum(check.passed for check in checks)}/{len(checks)} checks passed "
            f"in {time.monotonic() - started:.1f} s",
            flush=True,
        )
    return evaluation.cursor


def _row_count(event: dg.DagsterEvent) -> int:
    """The rows this hour loaded (dagster/row_count is the whole table's)."""
    count = event.materialization.metadata["dagster/partition_row_count"].value
    if not isinstance(count, int):
        raise TypeError(f"dagster/partition_row_count should be an integer, got {count!r}")
    return count


def _report(lake: LakeSettings) -> None:
    with connect(lake) as conn:
        print(f"\nrows per table in the lake ({lake.describe()}):")
        for table, rows in table_row_counts(conn).items():
            print(f"  {table:<32} {rows:>10,}")
        print("\npage views and sessions per platform per Beijing hour (first rows):")
        print(conn.sql(PAGE_VIEWS_BY_PLATFORM_AND_HOUR))
        for question, sql in MODEL_ANSWERS.items():
            print(f"\nfrom the analytics models: {question}")
            print(conn.sql(sql))


if __name__ == "__main__":
    main()
