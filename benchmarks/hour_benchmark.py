"""One hour from the API's answer to committed rows, against DuckDB reading the same gzip CSV parts.

Usage (from the repository root, with the project's venv)::

    python benchmarks/hour_benchmark.py                        # 400,000 page rows in 3 parts, both shapes, 3 reps
    python benchmarks/hour_benchmark.py --rows 30000 --reps 1 --shapes usual
    python benchmarks/hour_benchmark.py --profile              # the project's path once per shape, profiled
    python benchmarks/hour_benchmark.py --dagster              # also the page asset through dagster.materialize
    python benchmarks/hour_benchmark.py --link-mbit 200        # parts sent over a 200 Mbit/s link, not loopback

The goal: the project loads an hour at least as fast as DuckDB reads the same parts from local files (1.0x),
and 1.5x as fast as a hand-written download-then-``read_csv``. Two shapes of one page hour, cached in
``--workdir``, each cut into ``--parts`` parts written by the local server's CSV writer (gzip level 6):

- ``usual``: the local server's generator (``generate_export``), with its awkward strings;
- ``hard``: as hard to compress as the vendor's worst: the same generator's rows with every pool-drawn text
  column (titles, pages, referrers, query strings, attributes) replaced by per-row random values (seeded, so
  the same each time): long URLs with percent-escaped Chinese query strings, Chinese text, quotes,
  backslashes, commas and line breaks. Nulls and empty strings stay where they were. It compresses about 2x,
  where ``usual`` compresses 4.5x.

The parts are served by the project's ``LocalExportServer`` (clock frozen after the hour is FINISHED) in a
child process that stays up for the whole benchmark; with ``--link-mbit`` it sends them no faster than a link
of that speed (all downloads together), as a user's network would, where loopback makes downloads almost free.
Each path runs in a child process of its own, so its peak RSS (VmHWM) is its own, and the paths alternate
across repetitions. Timed, in each child:

- ``project``: ``ingest.load_partition`` for the page type, over loopback: the API call, the download, the
  parse and the lake transaction, into a fresh lake (SQLite catalog, local Parquet; the empty lake is made
  before the timer). Its result is checked: no failure, every generated row loaded. Its stages are printed:
  ``api`` (the export call), ``download_parse`` (``stage_event_type``: download, gzip check, parse, and each
  part's Parquet data file written as it is parsed), ``write`` (``write_staged``: the lake transaction, its
  verification, the ledger row) and ``other`` (the
  client, the staging folder, and the wait for the lake connection, which opens while the parts download).
- ``duckdb_local``: DuckDB's ``read_csv(..., escape='\\\\')`` of the parts already on disk, cast to the
  project's column types (the SQL is built from the project's registry), into a table of a fresh DuckDB
  database file, until the file is closed.
- ``download_then_read_csv``: a plain httpx GET of the one-type export API with the token, the parts
  downloaded to disk by 4 threads (the project's default), then the same ``read_csv`` into a table.

The two references run on DuckDB ``--reference-duckdb`` (default 2.0.1, the fastest DuckDB; the project pins
1.5.5) in a virtual environment of their own, made once in the work folder. The script prints, per shape and
path, the median seconds (min-max), rows/s, MB/s of gzip and peak RSS; the project's speed against each
reference with its goal; and checks that every table holds the generated rows (exit status 1 if not).

``--profile`` runs the project's path once per shape under py-spy instead (installed into the running venv if
absent; attached once the child has imported everything, so it sees the timed load only, in all threads),
printing the share of samples by thread and by function, and the stages; where py-spy cannot attach, cProfile
(main thread only) does instead. ``--dagster`` also materializes the page asset of
the hour with ``dagster.materialize``, and reports Dagster's run overhead (run minus step) and the step's
overhead (step minus the data path) as ``backfill_benchmark.py`` measures them.

This file also runs as the references' child under their venv's Python, which has neither the project nor
its dependencies: those are imported only inside the functions that use them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest_benchmark import typed_select
from results import add_json_option, write_json

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

PATHS = ("project", "duckdb_local", "download_then_read_csv")
GOALS = {"duckdb_local": 1.0, "download_then_read_csv": 1.5}
"""The project's speed over each reference's that the issue asks for."""
SHAPES = ("usual", "hard")
EVENT_TYPE = "page"
EXPORT_DATES = {"usual": "2026112810", "hard": "2026112811"}
"""One Beijing hour per shape, so one server serves both and each shape's event times fall in its hour."""
PROJECT_ID = "9b0d1f56d5baff1a"
SERVER_NOW = datetime(2026, 11, 29, 4, tzinfo=timezone.utc)
"""Both hours FINISHED, well within retention."""
OTHER_TYPES_ROWS = 1000
"""Rows an hour of the nine other types: the all-types answer lists their links, nobody downloads them."""
COMPRESSLEVEL = 6
DATA_VERSION = 1
"""Part of the cache folder's name: bump it when the data's recipe changes."""
READ_CSV_OPTIONS = "escape='\\', quote='\"', header=true, all_varchar=true, allow_quoted_nulls=false"
MB = 1e6


# --- the data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One shape's cached parts of its hour."""

    name: str
    rows: int
    paths: tuple[Path, ...]
    gzip_bytes: int
    raw_bytes: int

    @property
    def export_date(self) -> str:
        return EXPORT_DATES[self.name]

    @property
    def partition_key(self) -> str:
        return self.export_date + "00"


def prepare_shape(workdir: Path, name: str, rows: int, parts: int) -> Shape:
    """The shape's ``parts`` gzip parts of ``rows`` page rows, written once and cached in ``workdir``."""
    folder = workdir / "parts" / f"{name}-{rows}rows-{parts}parts-level{COMPRESSLEVEL}-v{DATA_VERSION}"
    if not folder.exists():
        from growingio_pipeline.local_server.csv_writer import write_csv_parts
        from growingio_pipeline.local_server.generator import generate_export

        frame = generate_export(
            EVENT_TYPE, EXPORT_DATES[name], project_id=PROJECT_ID, seed=1, rows_per_hour=rows, enum_columns=True
        )
        if name == "hard":
            frame = hard_frame(frame, seed=1)
        building = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        # Like the vendor's Spark tasks, each part holds a slice of the rows: --parts decides how many there are,
        # whatever their size (the server's 64 MiB bound would make fewer of the usual data).
        step = -(-frame.height // parts)
        for index, start in enumerate(range(0, max(frame.height, 1), step)):
            (part,) = write_csv_parts(frame.slice(start, step), part_size_bytes=1 << 40, compresslevel=COMPRESSLEVEL)
            (building / f"part-{index:05d}.csv.gz").write_bytes(part)
        building.rename(folder)
    paths = tuple(sorted(folder.glob("part-*.csv.gz")))
    gzip_bytes = sum(path.stat().st_size for path in paths)
    return Shape(name, rows, paths, gzip_bytes, sum(_gzip_raw_size(path) for path in paths))


def _gzip_raw_size(path: Path) -> int:
    """Uncompressed size of a gzip file from its trailer (exact below 4 GiB, which one part is)."""
    with path.open("rb") as stream:
        stream.seek(-4, os.SEEK_END)
        (size,) = struct.unpack("<I", stream.read(4))
    return int(size)


_KEPT_POOLS = frozenset({"platform", "domain", "deviceOrientation"})
"""Pool-drawn columns the vendor fills from a fixed vocabulary: the hard shape keeps them."""
_URL_COLUMNS = frozenset({"page", "referrer", "referrerPage"})
_QUERY_COLUMNS = frozenset({"queryParameters"})
_HOSTS = ("www.example-shop.cn", "m.example-shop.cn", "www.baidu.com", "servicewechat.com", "h5.example.com.cn")
_AWKWARD_ASCII = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 " + b'"\\,\n' * 3
_ALNUM = b"abcdefghijklmnopqrstuvwxyz0123456789"


def hard_frame(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """``frame`` with every pool-drawn text column (a ``pl.Enum``) but the fixed vocabularies made random per row.

    Nulls and empty strings are kept where they were, so the NULL versus ``""`` cases stay the same.
    """
    import numpy as np
    import polars as pl

    columns = []
    for index, name in enumerate(frame.columns):
        values = frame.get_column(name)
        if not isinstance(values.dtype, pl.Enum) or name in _KEPT_POOLS:
            columns.append(values)
            continue
        rng = np.random.default_rng([seed, index])
        kind = "url" if name in _URL_COLUMNS else "query" if name in _QUERY_COLUMNS else "text"
        text = values.cast(pl.String)
        replaced = pl.select(
            pl.when(pl.lit(text).is_null())
            .then(None)
            .when(pl.lit(text) == "")
            .then(pl.lit(""))
            .otherwise(_random_values(rng, frame.height, kind))
        ).to_series()
        columns.append(replaced.alias(name))
    return pl.DataFrame(columns)


def _random_values(rng: np.random.Generator, n: int, kind: str) -> pl.Expr:
    """``n`` random values of one kind: ``url``, ``query`` (a URL's query string) or ``text``."""
    import polars as pl

    if kind == "text":
        return pl.concat_str(
            _sliced(_cjk(rng, n, 10), rng.integers(1, 11, n)),
            _sliced(_ascii(rng, n, 16, _AWKWARD_ASCII), rng.integers(0, 17, n)),
            _sliced(_cjk(rng, n, 3), rng.integers(0, 4, n)),
        )
    query = [
        pl.lit("kw="),
        # Whole percent-escaped characters: 9 ASCII bytes per Chinese character.
        _sliced(_percent_escaped(_cjk_utf8(rng, n, 16)), 9 * rng.integers(1, 17, n)),
        pl.lit("&sid="),
        _sliced(_ascii(rng, n, 12, _ALNUM), rng.integers(6, 13, n)),
        pl.lit("&from=a%2Cb"),
    ]
    if kind == "query":
        return pl.concat_str(query)
    hosts = pl.Series(_HOSTS)[rng.integers(0, len(_HOSTS), n)]
    path = _sliced(_ascii(rng, n, 24, _ALNUM), rng.integers(4, 25, n))
    return pl.concat_str(pl.lit("https://"), pl.lit(hosts), pl.lit("/"), path, pl.lit("?"), *query)


def _sliced(values: pl.Series, lengths: np.ndarray) -> pl.Expr:
    """Each value's first ``lengths[i]`` characters."""
    import polars as pl

    return pl.lit(values).str.slice(0, pl.lit(pl.Series(lengths)))


def _text_rows(matrix: np.ndarray) -> pl.Series:
    """Each row of a uint8 matrix (UTF-8 bytes, no NUL) as one string."""
    import numpy as np
    import polars as pl

    contiguous = np.ascontiguousarray(matrix)
    return pl.Series(contiguous.view(f"S{contiguous.shape[1]}").ravel()).cast(pl.String)


def _cjk_utf8(rng: np.random.Generator, n: int, characters: int) -> np.ndarray:
    """UTF-8 bytes of ``characters`` random CJK ideographs per row, an (n, 3 * characters) uint8 matrix."""
    import numpy as np

    code_points = rng.integers(0x4E00, 0x9FA6, size=(n, characters), dtype=np.uint32)
    utf8 = np.empty((n, characters, 3), dtype=np.uint8)
    utf8[..., 0] = 0xE0 | (code_points >> 12)
    utf8[..., 1] = 0x80 | ((code_points >> 6) & 0x3F)
    utf8[..., 2] = 0x80 | (code_points & 0x3F)
    return utf8.reshape(n, -1)


def _cjk(rng: np.random.Generator, n: int, characters: int) -> pl.Series:
    return _text_rows(_cjk_utf8(rng, n, characters))


def _percent_escaped(utf8: np.ndarray) -> pl.Series:
    """Each row's bytes written ``%XX``, as in a URL."""
    import numpy as np

    digits = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
    escaped = np.empty((*utf8.shape, 3), dtype=np.uint8)
    escaped[..., 0] = ord("%")
    escaped[..., 1] = digits[utf8 >> 4]
    escaped[..., 2] = digits[utf8 & 0x0F]
    return _text_rows(escaped.reshape(utf8.shape[0], -1))


def _ascii(rng: np.random.Generator, n: int, width: int, alphabet: bytes) -> pl.Series:
    import numpy as np

    table = np.frombuffer(alphabet, dtype=np.uint8)
    return _text_rows(table[rng.integers(0, len(table), size=(n, width))])


# --- the references' venv and SQL ------------------------------------------------------------------


def reference_python(venv: Path, duckdb_version: str) -> Path:
    """The Python of a venv with ``duckdb_version`` and the project's httpx, made (once) at ``venv``."""
    from importlib.metadata import version

    wanted = f"{duckdb_version} {version('httpx')}"
    python = venv / "bin" / "python"
    probe = "import duckdb, httpx; print(duckdb.__version__, httpx.__version__)"
    if python.exists():
        found = subprocess.run([python, "-c", probe], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip() == wanted:
            return python
    print(f"making the references' venv at {venv} (duckdb {duckdb_version}, httpx {version('httpx')})", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for command in (
        [sys.executable, "-m", "venv", venv],
        [*pip, f"duckdb=={duckdb_version}", f"httpx=={version('httpx')}"],
    ):
        made = subprocess.run(command, capture_output=True, text=True)
        if made.returncode != 0:
            raise RuntimeError(f"could not make the references' venv: {made.stdout[-2000:]}{made.stderr[-2000:]}")
    return python


# --- children: the server, the project, the references, Dagster -------------------------------------


def peak_rss() -> int:
    """This process's peak RSS in bytes (VmHWM; ``ru_maxrss`` would carry the parent's RSS over the fork)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(manifest: dict[str, list[str]], link_mbit: float | None) -> None:
    """Serve each export date's page parts until standard input closes (at most ``link_mbit`` megabits a second
    when given); first print where, as JSON."""
    from growingio_pipeline.local_server import FrozenClock, LocalExportServer, link_bytes_per_second

    # The client under test keeps the vendor's 2 calls/s itself; the server must never answer 429 to the
    # references' calls made right after it.
    server = LocalExportServer(
        project_id=PROJECT_ID,
        rows_per_hour=OTHER_TYPES_ROWS,
        clock=FrozenClock(SERVER_NOW),
        calls_per_second=100,
        download_bytes_per_second=link_bytes_per_second(link_mbit),
    )
    for export_date, paths in manifest.items():
        server.override_parts(EVENT_TYPE, export_date, [Path(path).read_bytes() for path in paths])
    server.prepare(manifest)  # the other types' parts, which the all-types answer links to, made now
    with server:
        print(json.dumps({"base_url": server.base_url, "token": server.token, "project_id": server.project_id}))
        sys.stdout.flush()
        sys.stdin.read()


def _timed_calls(owner: object, name: str, stage: str, totals: dict[str, float]) -> None:
    """Add the seconds spent in ``owner.name`` to ``totals[stage]`` (nothing if it has no such attribute)."""
    function = getattr(owner, name, None)
    if function is None:
        return

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[stage] = totals.get(stage, 0.0) + time.perf_counter() - started

    setattr(owner, name, wrapper)


def run_project(spec: dict[str, Any]) -> dict[str, Any]:
    """``load_partition`` of the page type into a fresh lake; its seconds, rows and stages, checked."""
    from contextlib import closing

    import duckdb

    from growingio_pipeline import ingest
    from growingio_pipeline.event_types import BEIJING, get_event_type
    from growingio_pipeline.export_api import ClientSettings, ExportClient
    from growingio_pipeline.lake import LakeSettings, connect_lake
    from growingio_pipeline.warehouse import WRITE_CONNECTION_CONFIG, ensure_schema

    lake_dir = Path(spec["lake"])
    shutil.rmtree(lake_dir, ignore_errors=True)
    settings = LakeSettings.in_folder(lake_dir)
    with closing(connect_lake(settings, config=WRITE_CONNECTION_CONFIG)) as conn:
        ensure_schema(conn)

    @contextmanager
    def connect() -> Iterator[duckdb.DuckDBPyConnection]:
        # The settings of the asset's connections (WarehouseResource): the load's memory limit, offline extensions.
        with closing(connect_lake(settings, config=WRITE_CONNECTION_CONFIG)) as conn:
            yield conn

    # The stages load_partition runs one after the other (those backfill_benchmark times too): the API call;
    # download, gzip check, parse and staging; the lake transaction, its verification and ledger row.
    stages: dict[str, float] = {}
    _timed_calls(ExportClient, "wait_for_export", "api", stages)
    _timed_calls(ingest, "stage_event_type", "download_parse", stages)
    _timed_calls(ingest, "write_staged", "write", stages)
    server = spec["server"]
    start = datetime.strptime(spec["partition_key"], "%Y%m%d%H%M").replace(tzinfo=BEIJING).astimezone(timezone.utc)
    arguments = (
        connect,
        lake_dir / "staging",
        ingest.PartitionAttempt("hour", spec["partition_key"]),
        [get_event_type(EVENT_TYPE)],
        (start, start + timedelta(hours=1)),
    )
    if spec.get("hold"):
        # Everything imported and the empty lake made: a profiler attached now sees only the timed load.
        print(json.dumps({"ready": os.getpid()}), flush=True)
        sys.stdin.readline()
    profiler = None
    if spec.get("cprofile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu_before, started = cpu_seconds(), time.perf_counter()
    with ExportClient(
        ClientSettings(token=server["token"], project_id=server["project_id"], base_url=server["base_url"])
    ) as client:
        load = ingest.load_partition(client, *arguments)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    stages["other"] = seconds - sum(stages.values())  # the client, the staging folder, the lake connection's wait
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["cprofile"])
    if load.failure is not None:
        raise RuntimeError(f"the load failed: {load.failure!r}") from load.failure
    if load.unloaded_status is not None or len(load.loads) != 1:
        raise RuntimeError(f"nothing loaded: status {load.unloaded_status}, {len(load.loads)} type(s) written")
    (type_load,) = load.loads
    verification = type_load.verification
    if not verification.rows_in_table == type_load.summary.rows_loaded == verification.rows_read:
        raise RuntimeError(f"rows read, loaded and in the table differ: {verification}")
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "rows": verification.rows_in_table,
        "rows_rejected": verification.rows_rejected,
        "rows_outside_window": verification.rows_outside_window,
        "peak_rss": peak_rss(),
        "stages": stages,
    }


def _duckdb_table(db_path: Path, files: list[str], select: str) -> int:
    """``read_csv`` of ``files``, typed by ``select``, into a table of a new database file; its rows."""
    import duckdb

    db_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (db_path, db_path.with_name(db_path.name + ".wal")):
        stale.unlink(missing_ok=True)
    conn = duckdb.connect(str(db_path))
    try:
        conn.execute("SET TimeZone = 'UTC'")  # epoch milliseconds are UTC, as in the project's table
        conn.execute(f"CREATE TEMP VIEW export AS SELECT * FROM read_csv({files!r}, {READ_CSV_OPTIONS})")
        conn.execute(f"CREATE TABLE {EVENT_TYPE} AS {select}")
        row = conn.execute(f"SELECT count(*) FROM {EVENT_TYPE}").fetchone()
    finally:
        conn.close()  # the rows are in the file once it is closed
    return int(row[0]) if row else 0


def run_duckdb_local(spec: dict[str, Any]) -> dict[str, Any]:
    """The reference on local files: the parts already on disk, read into a table."""
    import duckdb  # noqa: F401  (imported before the timer, as the project's path imports its modules)

    cpu_before, started = cpu_seconds(), time.perf_counter()
    rows = _duckdb_table(Path(spec["db"]), spec["files"], spec["select"])
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_s": cpu_seconds() - cpu_before, "rows": rows, "peak_rss": peak_rss()}


def run_download_then_read_csv(spec: dict[str, Any]) -> dict[str, Any]:
    """The hand-written reference: the API call, the parts downloaded in threads, then ``read_csv``."""
    from concurrent.futures import ThreadPoolExecutor

    import duckdb  # noqa: F401  (imported before the timer, as the project's path imports its modules)
    import httpx

    server, folder = spec["server"], Path(spec["download_dir"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    url = f"{server['base_url']}/v2/insights/hour/{EVENT_TYPE}/{server['project_id']}/{spec['partition_key']}.json"
    cpu_before, started = cpu_seconds(), time.perf_counter()
    with httpx.Client(timeout=120) as client:
        answer = client.get(url, params={"expire": 60}, headers={"Authorization": server["token"]})
        answer.raise_for_status()
        body = answer.json()
        if body["status"] != "FINISHED":
            raise RuntimeError(f"the export is {body['status']}")
        answered = time.perf_counter()

        def download(index: int, link: str) -> str:
            path = folder / f"part-{index:05d}.csv.gz"
            with client.stream("GET", link) as response, path.open("wb") as out:
                response.raise_for_status()
                for chunk in response.iter_raw(1 << 20):
                    out.write(chunk)
            if path.stat().st_size != int(response.headers["Content-Length"]):
                raise RuntimeError(f"part {index}: {path.stat().st_size} bytes, not its Content-Length")
            return str(path)

        links = body["downloadLinks"]
        with ThreadPoolExecutor(max_workers=spec["threads"]) as pool:
            files = list(pool.map(download, range(len(links)), links))
    downloaded = time.perf_counter()
    rows = _duckdb_table(Path(spec["db"]), files, spec["select"])
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_s": cpu_seconds() - cpu_before,
        "rows": rows,
        "peak_rss": peak_rss(),
        "stages": {
            "api": answered - started,
            "download": downloaded - answered,
            "read_csv": seconds + started - downloaded,
        },
    }


def run_dagster(spec: dict[str, Any]) -> list[dict[str, float]]:
    """``spec['runs']`` Dagster runs of the page asset for the hour, each into a fresh lake; their timings."""
    import dagster as dg
    from backfill_benchmark import QUIET_RUN_CONFIG, _event_times, event_assets_and_resources, install_timer

    from growingio_pipeline.checks import asset_key
    from growingio_pipeline.event_types import get_event_type

    server = spec["server"]
    timer = install_timer()
    figures = []
    with dg.DagsterInstance.ephemeral() as instance:
        for run in range(spec["runs"]):
            lake_dir = Path(spec["lake"]) / f"run-{run}"
            shutil.rmtree(lake_dir, ignore_errors=True)
            assets, resources = event_assets_and_resources(
                server["base_url"], server["token"], server["project_id"], str(lake_dir)
            )
            timer.reset()
            started = time.perf_counter()
            result = dg.materialize(
                [assets],
                selection=[asset_key(get_event_type(EVENT_TYPE))],
                partition_key=spec["partition_key"],
                resources=resources,
                instance=instance,
                run_config=QUIET_RUN_CONFIG,
            )
            wall = time.perf_counter() - started
            if not result.success:
                raise RuntimeError(f"the Dagster run of {spec['partition_key']} failed")
            events = _event_times(instance, result.run_id)
            figures.append(
                {
                    "wall": wall,
                    "run": events["PIPELINE_SUCCESS"] - events["PIPELINE_START"],
                    "step": events["STEP_SUCCESS"] - events["STEP_START"],
                    "data_path": timer.seconds,
                    "rows": timer.rows,
                }
            )
    return figures


CHILDREN: dict[str, Callable[[dict[str, Any]], object]] = {
    "project": run_project,
    "duckdb_local": run_duckdb_local,
    "download_then_read_csv": run_download_then_read_csv,
    "dagster": run_dagster,
}


# --- the parent: starting children, figures ---------------------------------------------------------


def child_result(command: list[str | Path], what: str) -> Any:
    """Run a child; the JSON of the last line it printed that is one."""
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")
    lines = [line for line in completed.stdout.splitlines() if line.startswith(("{", "["))]
    if not lines:
        raise RuntimeError(f"{what} printed no result:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    return json.loads(lines[-1])


def child_command(python: str | Path, child: str, spec: dict[str, Any]) -> list[str | Path]:
    return [python, __file__, "--child", child, json.dumps(spec)]


@contextmanager
def export_server(shapes: list[Shape], link_mbit: float | None) -> Iterator[dict[str, str]]:
    """The local export server in a child process serving the shapes' parts: its base URL, token and project."""
    manifest = {shape.export_date: [str(path) for path in shape.paths] for shape in shapes}
    spec = {"manifest": manifest, "link_mbit": link_mbit}
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", "server", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the export server did not start (exit status {process.wait()})")
        yield json.loads(line)
    finally:
        process.stdin.close()  # the server stops when its standard input closes
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Setting:
    """What every measurement of a run shares."""

    workdir: Path
    reference_python: Path
    server: dict[str, str]
    download_threads: int


def path_spec(path: str, shape: Shape, setting: Setting) -> dict[str, Any]:
    """The child's instructions for one path and shape."""
    scratch = setting.workdir / "runs" / f"{shape.name}-{path}"
    spec: dict[str, Any] = {"partition_key": shape.partition_key, "server": setting.server}
    if path == "project":
        return {**spec, "lake": str(scratch / "lake")}
    spec.update(db=str(scratch.with_suffix(".duckdb")), select=typed_select("export", shape.partition_key))
    if path == "duckdb_local":
        return {**spec, "files": [str(part) for part in shape.paths]}
    return {**spec, "download_dir": str(scratch / "download"), "threads": setting.download_threads}


def measure(path: str, shape: Shape, setting: Setting) -> dict[str, Any]:
    """One path on one shape, in a child process of its own."""
    python = sys.executable if path == "project" else setting.reference_python
    result: dict[str, Any] = child_result(child_command(python, path, path_spec(path, shape, setting)), path)
    return result


def _mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _stages(result: dict[str, Any]) -> str:
    return "".join(f"  {name} {seconds:.2f}" for name, seconds in result.get("stages", {}).items())


def benchmark_shape(shape: Shape, setting: Setting, reps: int) -> dict[str, list[dict[str, Any]]]:
    """Every path ``reps`` times on the shape, the order rotated each repetition; results by path."""
    results: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
    for rep in range(reps):
        for path in PATHS[rep % len(PATHS) :] + PATHS[: rep % len(PATHS)]:
            result = measure(path, shape, setting)
            results[path].append(result)
            print(
                f"  rep {rep + 1} {path:23s} {result['seconds']:6.2f} s  {shape.rows / result['seconds']:>9,.0f} rows/s"
                f"  {shape.gzip_bytes / MB / result['seconds']:6.1f} MB/s gzip  cpu {result['cpu_s']:5.1f} s"
                f"  peak {_mib(result['peak_rss'])}{_stages(result)}",
                flush=True,
            )
    return results


def report_shape(shape: Shape, results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Print the shape's medians, the ratios against the goals and the row check; the figures."""
    medians = {path: statistics.median(run["seconds"] for run in runs) for path, runs in results.items()}
    print(f"\n{shape.name}: path                  median s (min-max)      rows/s   MB/s gzip   max peak RSS")
    for path, runs in results.items():
        seconds = [run["seconds"] for run in runs]
        print(
            f"  {path:27s} {medians[path]:7.2f} ({min(seconds):.2f}-{max(seconds):.2f})"
            f" {shape.rows / medians[path]:>12,.0f} {shape.gzip_bytes / MB / medians[path]:10.1f}"
            f"   {_mib(max(run['peak_rss'] for run in runs))}"
        )
    speedups = {reference: medians[reference] / medians["project"] for reference in GOALS}
    for reference, goal in GOALS.items():
        met = "met" if speedups[reference] >= goal else "not met"
        print(f"  project vs {reference}: {speedups[reference]:.2f}x (goal >= {goal:.1f}x): {met}")
    rows = {path: sorted({run["rows"] for run in runs}) for path, runs in results.items()}
    rows_equal = all(counts == [shape.rows] for counts in rows.values())
    print(f"  every table holds the {shape.rows:,} generated rows: {rows_equal} ({rows})")
    project_runs = results["project"]
    rejected = max(run["rows_rejected"] for run in project_runs)
    outside = max(run["rows_outside_window"] for run in project_runs)
    print(f"  project: {rejected:,} rows rejected, {outside:,} outside the hour")
    return {
        "paths": {
            path: {
                "median_s": medians[path],
                "seconds": [run["seconds"] for run in runs],
                "peak_rss": [run["peak_rss"] for run in runs],
                "rows": rows[path],
            }
            for path, runs in results.items()
        },
        "speedup": speedups,
        "goals_met": {reference: speedups[reference] >= goal for reference, goal in GOALS.items()},
        "rows_equal": rows_equal,
    }


# --- profiling ---------------------------------------------------------------------------------------


def py_spy() -> Path | None:
    """py-spy beside this venv's Python, installed there if absent (a tool of this run, not a dependency)."""
    tool = Path(sys.executable).parent / "py-spy"
    if not tool.exists():
        print("installing py-spy into this venv", flush=True)
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "py-spy"],
            capture_output=True,
            text=True,
        )
        if installed.returncode != 0:
            print(f"py-spy could not be installed: {installed.stderr.strip()[-500:]}")
            return None
    return tool


def _function(frame: str) -> str:
    """``name (file.py:12)`` -> ``name (file.py)``: a function, whatever line was running."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].removesuffix(')')})" if where else name


def print_samples(raw: Path, top: int = 15) -> None:
    """Where py-spy's samples (``--format raw``, with ``--threads``) fall: by thread, function and own time."""
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    total = sum(count for _, count in stacks)
    if not total:
        print("  py-spy took no samples")
        return
    threads: Counter[str] = Counter()
    names: dict[str, str] = {}
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        # "thread (123): MainThread", or "thread (123)" when py-spy could not read the name in that sample
        thread = frames[0].partition(":")[0]
        threads[thread] += count
        names[thread] = max(names.get(thread, ""), frames[0], key=len)
        for function in {_function(frame) for frame in frames[1:]}:
            inclusive[function] += count
        leaf = _function(frames[-1]) if len(frames) > 1 else "(no Python frame: a native thread's work, or exit)"
        own[leaf] += count
    print(f"  {total:,} samples of running threads (all threads together); by thread:")
    for thread, count in threads.most_common(8):
        print(f"    {count / total:6.1%}  {names[thread]}")
    print("  project functions, samples in them or what they call:")
    for function, count in [item for item in inclusive.most_common() if "growingio_pipeline" in item[0]][:top]:
        print(f"    {count / total:6.1%}  {function}")
    print("  functions by own samples (a native call counts for the Python line that made it):")
    for function, count in own.most_common(top):
        print(f"    {count / total:6.1%}  {function}")


def _spied_run(tool: Path, raw: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The project's path with py-spy attached once the child is ready to start its timer; None if it cannot."""
    child = subprocess.Popen(
        child_command(sys.executable, "project", {**spec, "hold": True}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    if not child.stdout.readline():
        raise RuntimeError(f"the project's path failed before its timer (exit status {child.wait()})")
    # --threads names each sample's thread; threads waiting (on a socket, a lock) are not sampled.
    record = [tool, "record", "--pid", str(child.pid), "--format", "raw", "--threads", "--rate", "200"]
    spy = subprocess.Popen([*record, "--output", raw], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert spy.stdout is not None
    started = spy.stdout.readline()  # "py-spy> Sampling process ...", or why it could not
    child.stdin.write("go\n")
    child.stdin.flush()
    output = child.stdout.readline()
    spy.send_signal(signal.SIGINT)  # py-spy writes its samples and stops
    spied = spy.wait() == 0 and "Sampling" in started
    child.stdin.close()
    if child.wait() != 0 or not output:
        raise RuntimeError(f"the project's path failed under py-spy (exit status {child.returncode})")
    if not spied:
        print(f"  py-spy could not attach here: {(started + spy.stdout.read()).strip()[-500:]}")
        return None
    result: dict[str, Any] = json.loads(output)
    return result


def profile_project(shape: Shape, setting: Setting) -> dict[str, Any]:
    """The project's path once under py-spy (cProfile if py-spy cannot attach); print where its time goes."""
    import pstats

    spec = path_spec("project", shape, setting)
    tool = py_spy()
    raw = setting.workdir / f"profile-{shape.name}.txt"
    result = _spied_run(tool, raw, spec) if tool is not None else None
    if result is not None:
        print(f"  project path under py-spy: {result['seconds']:.2f} s;{_stages(result)}")
        print_samples(raw)
        return result
    stats_path = setting.workdir / f"profile-{shape.name}.pstats"
    result = child_result(child_command(sys.executable, "project", {**spec, "cprofile": str(stats_path)}), "cProfile")
    print(f"  project path under cProfile (main thread only): {result['seconds']:.2f} s;{_stages(result)}")
    stats = pstats.Stats(str(stats_path))
    stats.sort_stats("cumulative").print_stats(15)
    stats.sort_stats("tottime").print_stats(15)
    return result


def dagster_overhead(shape: Shape, setting: Setting, runs: int, project_median: float) -> dict[str, Any]:
    """Dagster runs of the page asset for the shape's hour: run and step overheads, printed; the figures."""
    spec = {"server": setting.server, "partition_key": shape.partition_key, "runs": runs}
    spec["lake"] = str(setting.workdir / "runs" / f"{shape.name}-dagster")
    figures: list[dict[str, float]] = child_result(child_command(sys.executable, "dagster", spec), "dagster")
    for figure in figures:
        if figure["rows"] != shape.rows:
            raise RuntimeError(f"the Dagster run loaded {figure['rows']:,} rows, not {shape.rows:,}")

    def median(name: str) -> float:
        return statistics.median(figure[name] for figure in figures)

    run_overhead = statistics.median(figure["run"] - figure["step"] for figure in figures)
    step_overhead = statistics.median(figure["step"] - figure["data_path"] for figure in figures)
    print(
        f"\n{shape.name}: Dagster, {len(figures)} run(s) of the page asset, medians: "
        f"materialize() {median('wall'):.2f} s, run {median('run'):.2f} s, step {median('step'):.2f} s, "
        f"data path {median('data_path'):.2f} s"
    )
    print(f"  run overhead (run - step): {run_overhead:.2f} s; step overhead (step - data path): {step_overhead:.2f} s")
    extra = median("run") - project_median
    print(f"  the run against the project's path alone (median {project_median:.2f} s): {extra:+.2f} s")
    return {"runs": figures, "run_overhead_s": run_overhead, "step_overhead_s": step_overhead}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--child``, one child's part); exit status 1 if a table misses rows."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000, help="page rows in the hour")
    parser.add_argument("--parts", type=int, default=3, help="gzip parts the hour is cut into")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each path")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES), help="data shapes to run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/growingio-hour-benchmark"))
    parser.add_argument("--reference-duckdb", default="2.0.1", help="DuckDB version of the references")
    parser.add_argument("--reference-venv", type=Path, help="the references' venv (default: WORKDIR/reference-venv)")
    parser.add_argument("--profile", action="store_true", help="profile the project's path once per shape, then exit")
    parser.add_argument("--dagster", action="store_true", help="also time the page asset through dagster.materialize")
    parser.add_argument(
        "--link-mbit", type=float, help="the server sends parts at most this fast (megabits/s, all downloads together)"
    )
    add_json_option(parser)
    parser.add_argument("--child", choices=[*CHILDREN, "server"], help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "server":
        serve(**json.loads(args.spec))
        return 0
    if args.child:
        spec = json.loads(args.spec)
        print(json.dumps(CHILDREN[args.child](spec)), flush=True)
        if spec.get("hold"):
            sys.stdin.read()  # until the profiler has stopped: the interpreter's exit is no part of the load
        return 0
    if args.rows < 1 or args.parts < 1 or args.reps < 1:
        parser.error("--rows, --parts and --reps must be at least 1")

    from growingio_pipeline.export_api import ClientSettings

    args.workdir.mkdir(parents=True, exist_ok=True)
    python = reference_python(args.reference_venv or args.workdir / "reference-venv", args.reference_duckdb)
    shapes = []
    for name in args.shapes:
        started = time.perf_counter()
        shape = prepare_shape(args.workdir, name, args.rows, args.parts)
        shapes.append(shape)
        print(
            f"{name}: {shape.rows:,} rows, {len(shape.paths)} parts, {shape.gzip_bytes / MB:,.1f} MB gzip, "
            f"{shape.raw_bytes / MB:,.1f} MB uncompressed ({shape.raw_bytes / shape.gzip_bytes:.1f}x), "
            f"ready in {time.perf_counter() - started:.1f} s (not timed below)",
            flush=True,
        )
    threads = ClientSettings.__dataclass_fields__["download_concurrency"].default
    figures: dict[str, Any] = {
        "rows": args.rows,
        "reference_duckdb": args.reference_duckdb,
        "link_mbit": args.link_mbit,
        "shapes": {},
    }
    with export_server(shapes, args.link_mbit) as server:
        setting = Setting(args.workdir, python, server, threads)
        link = "loopback" if args.link_mbit is None else f"a {args.link_mbit:g} Mbit/s link"
        print(f"local export server at {server['base_url']} over {link}; references on DuckDB {args.reference_duckdb}")
        for shape in shapes:
            print(f"\n{shape.name}:")
            shape_figures: dict[str, Any] = {
                "parts": len(shape.paths),
                "gzip_bytes": shape.gzip_bytes,
                "raw_bytes": shape.raw_bytes,
            }
            figures["shapes"][shape.name] = shape_figures
            if args.profile:
                shape_figures["profile"] = profile_project(shape, setting)
                continue
            shape_figures.update(report_shape(shape, benchmark_shape(shape, setting, args.reps)))
            if args.dagster:
                project_median = shape_figures["paths"]["project"]["median_s"]
                shape_figures["dagster"] = dagster_overhead(shape, setting, args.reps, project_median)
    write_json(args.json, figures)
    return 0 if all(shape.get("rows_equal", True) for shape in figures["shapes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
