"""The analytics models: a partition run at hours 1, 2 and 48, one hour at a large volume, a full rebuild.

Usage (from the repository root, with the project's venv)::

    python benchmarks/analytics_benchmark.py                                   # 20,000 page rows an hour
    python benchmarks/analytics_benchmark.py --rows-per-hour 2000 --big-rows-per-hour 100000 --rebuild-days 2
    python benchmarks/analytics_benchmark.py --catalog postgres   # the catalog in a PostgreSQL server it starts
    python benchmarks/analytics_benchmark.py --history-hours 48 --history-built-by partition-runs
    python benchmarks/analytics_benchmark.py --history-hours 168 336 --reference /path/to/another/checkout

The raw tables are filled straight from the local server's generator (typed with the registry's casts),
not through the export API and the parser: this measures the models, and the loading path has its own
benchmarks. dbt runs as the Dagster assets run it: ``dbt build`` (models and their tests) in a subprocess
through dagster-dbt's ``DbtCliResource``, with the partition window in the environment. Each figure is
the dbt process's wall time (start-up and parsing included), the models' own time from dbt's
run_results.json, and the longest that a model held this host's write turn (from dbt's log: from the
statement that takes it to the one that gives it back), which is the longest a load on the same host can
have waited for the models.

- hour 1: the partition run of the first hour, on a lake that holds only that hour (models made empty first);
- hour N (``--history-hours``, default 2, 24, 25, 48, 96 and 168): the partition run of the Nth hour, after the hours
  before it were built: by one full rebuild, or with ``--history-built-by partition-runs`` as the pipeline
  builds them (each hour's partition run in turn, the daily lake maintenance after every 24th), which leaves
  the models' files as they are in operation. The session models read only the hours the session index places
  their sessions in; the daily numbers read their whole days, and visitors and users their visitors' whole history.
  Hour 2 is the first with an hour before it, whose sessions go on into it; hours 24 and 48 end a Beijing day
  (hours 1 and 25 begin one), so that hour 48 against hour 24 is the same run with twice the history;
- the partition runs are timed ``--reps`` times each (default 5), alternating between the hours, each on a
  fresh copy of its lake: medians with the range, and each model's median;
- with ``--reference`` (another checkout of this repository, such as the previous version), each partition run
  is also timed with that checkout's models, in turn with this checkout's on the same lakes: both figures and
  their ratio (this checkout's models' time over the reference's);
- big hour: the partition run of one hour at ``--big-rows-per-hour`` page rows (types in proportion);
- full rebuild: ``dbt build --full-refresh`` over ``--rebuild-days`` days.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource

from growingio_pipeline.analytics_assets import dbt_resource, environment_set, window_environment
from growingio_pipeline.analytics_warehouse import DBT_PROJECT_DIR, dbt_environment
from growingio_pipeline.event_types import EVENT_TYPES, ColumnKind
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.local_server import BEIJING
from growingio_pipeline.local_server.generator import generate_hour
from growingio_pipeline.maintenance import maintain
from growingio_pipeline.partitions import KEY_FORMATS
from growingio_pipeline.warehouse import ensure_schema

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' PostgreSQL starter, from the checkout
from growingio_pipeline_tests.services import PostgresServer, running_postgres

FIRST_HOUR = datetime(2026, 11, 14, tzinfo=BEIJING)
PROJECT_ID = "9b0d1f56d5baff1a"


def hour_key(hour: datetime) -> str:
    return hour.strftime(KEY_FORMATS["hour"])


def _typed(name: str, kind: ColumnKind) -> str:
    """SQL that turns the generator's text into the raw table's type, as the parser would."""
    quoted = f'"{name}"'
    if kind is ColumnKind.TIME:
        return f"timezone('UTC', epoch_ms(CAST({quoted} AS BIGINT)))"
    if kind is ColumnKind.MAP:
        return f"CAST(CAST({quoted} AS JSON) AS MAP(VARCHAR, VARCHAR))"
    if kind is ColumnKind.BIGINT:
        return f"CAST({quoted} AS BIGINT)"
    if kind is ColumnKind.DOUBLE:
        return f"CAST({quoted} AS DOUBLE)"
    return quoted


@dataclass(frozen=True)
class BenchmarkLake:
    """A lake of this benchmark: its data files in ``folder``, its catalog a SQLite file there, or with ``postgres``
    a database of that server named after the folder. ``keep`` copies both, ``restore`` puts the copy back."""

    folder: Path
    postgres: PostgresServer | None = None

    @property
    def database(self) -> str:
        return self.folder.name.replace("-", "_")

    @property
    def settings(self) -> LakeSettings:
        if self.postgres is None:
            return LakeSettings.in_folder(self.folder)
        return self.postgres.lake_settings(self.database, f"{self.folder / 'files'}/")

    @property
    def kept_folder(self) -> Path:
        return self.folder.with_name(self.folder.name + ".kept")

    @property
    def kept_database(self) -> str:
        return self.database + "_kept"

    def create(self) -> BenchmarkLake:
        if self.postgres is not None:
            self.postgres.create_database(self.database)
        return self

    def keep(self) -> None:
        shutil.copytree(self.folder, self.kept_folder)
        if self.postgres is not None:
            self.postgres.create_database(self.kept_database, template=self.database)

    def restore(self) -> None:
        """The lake as ``keep`` left it (the catalog names the files' folder, so they go back to the same one)."""
        shutil.rmtree(self.folder)
        shutil.copytree(self.kept_folder, self.folder)
        if self.postgres is not None:
            self.postgres.drop_database(self.database)
            self.postgres.create_database(self.database, template=self.kept_database)

    def discard_kept(self) -> None:
        shutil.rmtree(self.kept_folder)
        if self.postgres is not None:
            self.postgres.drop_database(self.kept_database)


@dataclass(frozen=True)
class Checkout:
    """The checkout whose models a dbt run builds: this one, or another (``--reference``), whose dbt project is run
    with its own package on the Python path, so that dbt's lake plugin is that checkout's too."""

    root: Path | None = None
    """None: this checkout"""

    @property
    def label(self) -> str:
        return "this checkout" if self.root is None else f"reference {self.root}"

    def dbt(self) -> tuple[DbtCliResource, dict[str, str]]:
        """The dbt resource and the environment it runs in (beside the lake's and the window's)."""
        if self.root is None:
            return dbt_resource(), {}
        project_dir = self.root / DBT_PROJECT_DIR.relative_to(DBT_PROJECT_DIR.parents[1])
        return dbt_resource(project_dir), {"PYTHONPATH": str(self.root)}


THIS_CHECKOUT = Checkout()


def fill_hours(lake: BenchmarkLake, hours: list[datetime], rows_per_hour: int) -> None:
    """Write the generator's rows of ``hours`` into the raw tables of ``lake`` (the partitions replaced)."""
    with connect_lake(lake.settings) as conn:
        ensure_schema(conn)
        for hour in hours:
            key = hour_key(hour)
            for event_type in EVENT_TYPES.values():
                frame = generate_hour(
                    event_type.name, key[:10], project_id=PROJECT_ID, seed=1, rows_per_hour=rows_per_hour
                ).rename({column.vendor_name: column.name for column in event_type.columns})
                conn.register("frame", frame)
                selected = ", ".join(_typed(column.name, column.kind) for column in event_type.columns)
                names = ", ".join([*event_type.column_names, "_partition_key", "_source_part", "_loaded_at"])
                conn.execute(f"DELETE FROM {event_type.table_name} WHERE _partition_key = ?", [key])
                conn.execute(
                    f"INSERT INTO {event_type.table_name} ({names}) "
                    f"SELECT {selected}, ?, 'benchmark', now() FROM frame",
                    [key],
                )
                conn.unregister("frame")


def dbt_build(
    lake: BenchmarkLake, window: tuple[str, str] | None, *extra: str, checkout: Checkout = THIS_CHECKOUT
) -> dict[str, Any]:
    """One ``dbt build`` of ``checkout``'s models on ``lake``: its wall time, the models' own time
    (run_results.json), each model's, and the longest write turn a model held."""
    dbt, checkout_environment = checkout.dbt()
    environment = dbt_environment(lake.settings) | (window_environment(*window) if window else {})
    target = Path(tempfile.mkdtemp(prefix="dbt-target-"))
    started = time.perf_counter()
    with environment_set(environment | checkout_environment):
        dbt.cli(["build", *extra], target_path=target).wait()
    wall = time.perf_counter() - started
    results = json.loads((target / "run_results.json").read_text())["results"]
    per_model = {
        result["unique_id"].rsplit(".", 1)[-1]: result["execution_time"]
        for result in results
        if result["unique_id"].startswith("model.")
    }
    tests = sum(result["execution_time"] for result in results if result["unique_id"].startswith("test."))
    turns = write_turns(target / "dbt.log")
    shutil.rmtree(target)
    longest = max(turns, key=turns.__getitem__)
    return {
        "wall_s": wall,
        "models_s": sum(per_model.values()),
        "tests_s": tests,
        "per_model": per_model,
        "turn_s": turns[longest],
        "turn_model": longest,
    }


def write_turns(dbt_log: Path) -> dict[str, float]:
    """Each model's hold of the write turn in a dbt run: from the statement that takes it to the one that gives it."""
    taken: dict[str, datetime] = {}
    held: dict[str, float] = {}
    for line in dbt_log.read_text().splitlines():
        event = json.loads(line)
        message = event["info"]["msg"]
        model = (event.get("data", {}).get("node_info") or {}).get("node_name")
        if model is None or not message.startswith("On model."):
            continue
        moment = datetime.fromisoformat(event["info"]["ts"].replace("Z", "+00:00"))
        if "growingio_write_turn('take')" in message:
            taken[model] = moment
        elif "growingio_write_turn('give')" in message and model in taken:
            held[model] = (moment - taken.pop(model)).total_seconds()
    return held


def partition_run(lake: BenchmarkLake, hour: datetime, checkout: Checkout = THIS_CHECKOUT) -> dict[str, Any]:
    return dbt_build(lake, (hour_key(hour), hour_key(hour + timedelta(hours=1))), checkout=checkout)


def summary_line(label: str, figures: dict[str, Any], raw_rows: int) -> str:
    per_model = ", ".join(f"{model} {seconds:.2f}" for model, seconds in figures["per_model"].items())
    return (
        f"{label:<40} dbt build {figures['wall_s']:7.1f} s   models {figures['models_s']:6.2f} s   "
        f"tests {figures['tests_s']:5.2f} s   raw rows {raw_rows:,}   longest write turn {figures['turn_s']:.2f} s "
        f"({figures['turn_model']})\n{'':<42}{per_model}"
    )


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' median figures, with the range of the models' time and the longest write turn of all."""
    longest = max(runs, key=lambda run: run["turn_s"])
    return {
        **{name: statistics.median(run[name] for run in runs) for name in ("wall_s", "models_s", "tests_s")},
        "per_model": {
            model: statistics.median(run["per_model"][model] for run in runs) for model in runs[0]["per_model"]
        },
        "turn_s": longest["turn_s"],
        "turn_model": longest["turn_model"],
        "models_range": (min(run["models_s"] for run in runs), max(run["models_s"] for run in runs)),
    }


def prepared_lake(
    lake: BenchmarkLake, hours: list[datetime], number: int, rows_per_hour: int, built_by: str
) -> BenchmarkLake:
    """``lake`` with its models built over the ``number - 1`` hours before hour ``number`` (``built_by``: one full
    rebuild, or ``partition-runs`` as the pipeline builds them), then that hour's raw rows added, and kept
    (``BenchmarkLake.keep``) to restore before each run."""
    history = hours[: number - 1]
    fill_hours(lake, history if built_by == "rebuild" else [], rows_per_hour)
    dbt_build(lake, None, "--full-refresh")
    if built_by == "partition-runs":
        operate(lake, history, rows_per_hour)
    fill_hours(lake, hours[number - 1 : number], rows_per_hour)
    lake.keep()
    return lake


def operate(lake: BenchmarkLake, hours: list[datetime], rows_per_hour: int) -> None:
    """Land ``hours`` as the pipeline does: each hour's rows, then its partition run, and the daily lake maintenance
    (default snapshot age) after every 24th hour."""
    for number, hour in enumerate(hours, start=1):
        fill_hours(lake, [hour], rows_per_hour)
        partition_run(lake, hour)
        if number % 24 == 0:
            with connect_lake(lake.settings) as conn:
                maintain(conn)


def alternating_partition_runs(
    lakes: dict[int, BenchmarkLake], hours: list[datetime], reps: int, checkouts: list[Checkout]
) -> dict[tuple[int, Checkout], dict[str, Any]]:
    """Time the partition run of hour N on ``lakes[N]`` (``prepared_lake``) with each checkout's models ``reps``
    times, taking the hours and checkouts in turn (the checkouts' order reversed every other time, so neither is
    always first), each run on the lake restored from its copy; the median figures of each hour and checkout."""
    runs: dict[tuple[int, Checkout], list[dict[str, Any]]] = {(n, c): [] for n in lakes for c in checkouts}
    for rep in range(reps):
        for number, lake in lakes.items():
            for checkout in checkouts if rep % 2 == 0 else checkouts[::-1]:
                lake.restore()
                runs[number, checkout].append(partition_run(lake, hours[number - 1], checkout))
    return {key: median_figures(figures) for key, figures in runs.items()}


def raw_rows(lake: BenchmarkLake) -> int:
    with connect_lake(lake.settings, read_only=True) as conn:
        return sum(conn.execute(f"SELECT count(*) FROM {t.table_name}").fetchone()[0] for t in EVENT_TYPES.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-hour", type=int, default=20_000, help="page rows an hour (types in proportion)")
    parser.add_argument("--history-hours", type=int, nargs="+", default=[2, 24, 25, 48, 96, 168])
    parser.add_argument("--big-rows-per-hour", type=int, default=1_000_000)
    parser.add_argument("--rebuild-days", type=int, default=15)
    parser.add_argument("--reps", type=int, default=5, help="timed partition runs of each hour, alternating")
    parser.add_argument(
        "--history-built-by",
        choices=["rebuild", "partition-runs"],
        default="rebuild",
        help="partition-runs: each hour's partition run in turn, with the daily maintenance (slow: ~7 s an hour)",
    )
    parser.add_argument(
        "--catalog", choices=["sqlite", "postgres"], default="sqlite", help="postgres: a local server this run starts"
    )
    parser.add_argument(
        "--reference", type=Path, help="another checkout of this repository: its models' partition runs, side by side"
    )
    args = parser.parse_args(argv)
    hours = [FIRST_HOUR + timedelta(hours=h) for h in range(max(*args.history_hours, args.rebuild_days * 24))]

    lines = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="analytics-benchmark-")))
        postgres = stack.enter_context(running_postgres()) if args.catalog == "postgres" else None

        def new_lake(name: str) -> BenchmarkLake:
            return BenchmarkLake(folder / name, postgres).create()

        numbers = [1, *sorted(args.history_hours)]
        lakes = {
            number: prepared_lake(new_lake(f"hour-{number}"), hours, number, args.rows_per_hour, args.history_built_by)
            for number in numbers
        }
        checkouts = [THIS_CHECKOUT] + ([Checkout(args.reference.resolve())] if args.reference else [])
        timed = alternating_partition_runs(lakes, hours, args.reps, checkouts)
        for number, lake in lakes.items():
            for checkout in checkouts:
                figures = timed[number, checkout]
                low, high = figures["models_range"]
                label = f"partition run, hour {number} ({args.reps} runs: models {low:.2f}-{high:.2f} s)"
                if args.reference:
                    label += f", {checkout.label}"
                lines.append(summary_line(label, figures, raw_rows(lake)))
            if args.reference:
                ratio = timed[number, THIS_CHECKOUT]["models_s"] / timed[number, checkouts[1]]["models_s"]
                lines.append(f"{'':<42}hour {number}: this checkout's models take {ratio:.2f} times the reference's")
            lake.discard_kept()

        big = new_lake("big")
        fill_hours(big, hours[:2], args.big_rows_per_hour)  # the hour before holds sessions that continue
        dbt_build(big, None)
        lines.append(
            summary_line(
                f"partition run, {args.big_rows_per_hour:,} page rows", partition_run(big, hours[1]), raw_rows(big)
            )
        )

        rebuild = new_lake("rebuild")
        fill_hours(rebuild, hours[: args.rebuild_days * 24], args.rows_per_hour)
        lines.append(
            summary_line(
                f"full rebuild, {args.rebuild_days} days", dbt_build(rebuild, None, "--full-refresh"), raw_rows(rebuild)
            )
        )
    catalog = "a PostgreSQL catalog" if args.catalog == "postgres" else "a SQLite catalog"
    history = "built by partition runs" if args.history_built_by == "partition-runs" else "built by a full rebuild"
    print(
        "\n".join(
            ["", f"analytics models, {args.rows_per_hour:,} page rows an hour, {catalog}, history {history}:", *lines]
        )
    )


if __name__ == "__main__":
    sys.exit(main())
