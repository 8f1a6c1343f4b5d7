"""Local export server: generating and serving one hour of page rows, against a plain-Python writer.

Usage (from the repository root, with the project's venv)::

    python benchmarks/local_server_benchmark.py                  # 1,000,000 page rows, 3 repetitions
    python benchmarks/local_server_benchmark.py --rows 200000 --reps 1

Each repetition starts a fresh server on loopback and times, over real HTTP with httpx:

- ``cold``: the one-type API call for the hour (which generates and compresses the parts) plus
  streaming every part to /dev/null, checking each body against its Content-Length;
- ``cached``: the same again on the same server (the parts are cached).

Then it times the server's two stages on their own (``generate_export`` and ``write_csv_parts``),
and the reference: the same rows written with Python's ``csv`` module in the vendor's dialect
(``escapechar='\\\\'``, ``doublequote=False``) into a ``gzip.GzipFile`` at the same level. The
ratio ``reference / write_csv_parts`` says how much the server's writer saves. Peak RSS is this
process's high-water mark: once after the first serving (the server's
peak), and at the end (the reference's row tuples dominate it).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import resource
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
import polars as pl
from results import add_json_option, write_json

from growingio_pipeline.local_server import FrozenClock, LocalExportServer
from growingio_pipeline.local_server.csv_writer import DEFAULT_COMPRESSLEVEL, DEFAULT_PART_SIZE_BYTES, write_csv_parts
from growingio_pipeline.local_server.generator import generate_export

EVENT_TYPE = "page"
EXPORT_DATE = "2026112810"
SERVER_NOW = datetime(2026, 11, 29, 4, tzinfo=timezone.utc)
PROJECT_ID = "9b0d1f56d5baff1a"


def timed(action: Callable[[], object]) -> tuple[float, object]:
    """Seconds ``action`` took, and what it returned."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def peak_rss_mib() -> float:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fetch_hour(client: httpx.Client, server: LocalExportServer) -> tuple[float, float, int, int]:
    """API call then every part downloaded: (API seconds, download seconds, parts, bytes)."""
    api_s, response = timed(
        lambda: client.get(
            f"{server.base_url}/v2/insights/hour/{EVENT_TYPE}/{PROJECT_ID}/{EXPORT_DATE}00.json",
            params={"expire": 60},
            headers={"Authorization": server.token},
        )
    )
    response.raise_for_status()
    links = response.json()["downloadLinks"]
    started, total = time.perf_counter(), 0
    for link in links:
        with client.stream("GET", link) as download:
            download.raise_for_status()
            received = sum(len(chunk) for chunk in download.iter_bytes(1 << 20))
        if received != int(download.headers["Content-Length"]):
            raise AssertionError(f"part of {received} bytes, Content-Length {download.headers['Content-Length']}")
        total += received
    return api_s, time.perf_counter() - started, len(links), total


def serve_once(rows: int) -> dict[str, float]:
    """A fresh server: the cold and the cached fetch of the hour."""
    server = LocalExportServer(
        project_id=PROJECT_ID, rows_per_hour=rows, clock=FrozenClock(SERVER_NOW), calls_per_second=100
    )
    with server, httpx.Client(timeout=120) as client:
        cold_api_s, cold_download_s, parts, size = fetch_hour(client, server)
        cached_api_s, cached_download_s, _, _ = fetch_hour(client, server)
    return {
        "cold_s": cold_api_s + cold_download_s,
        "cold_api_s": cold_api_s,
        "cached_s": cached_api_s + cached_download_s,
        "download_s": cached_download_s,
        "parts": parts,
        "bytes": size,
    }


def stdlib_csv_gzip(rows: list[tuple[str | None, ...]], header: list[str]) -> bytes:
    """The reference: Python's csv module in the vendor's dialect, through GzipFile."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=DEFAULT_COMPRESSLEVEL, mtime=0) as compressed:
        text = io.TextIOWrapper(compressed, encoding="utf-8", newline="")
        writer = csv.writer(text, escapechar="\\", doublequote=False, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()
    return buffer.getvalue()


def writer_stages(rows: int) -> dict[str, float]:
    """The server's stages alone, and the plain-Python reference on the same rows."""
    generate_s, frame = timed(
        lambda: generate_export(
            EVENT_TYPE, EXPORT_DATE, project_id=PROJECT_ID, seed=1, rows_per_hour=rows, enum_columns=True
        )
    )
    write_s, _ = timed(lambda: write_csv_parts(frame, DEFAULT_PART_SIZE_BYTES, DEFAULT_COMPRESSLEVEL))
    text_rows = frame.select(pl.all().cast(pl.Utf8)).rows()
    reference_s, reference = timed(lambda: stdlib_csv_gzip(text_rows, frame.columns))
    return {
        "generate_s": generate_s,
        "write_s": write_s,
        "reference_s": reference_s,
        "reference_bytes": len(reference),
        "rows": frame.height,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="page rows in the hour")
    parser.add_argument("--reps", type=int, default=3, help="repetitions")
    add_json_option(parser)
    args = parser.parse_args()

    served, stages = [], []
    for rep in range(1, args.reps + 1):
        served.append(serve_once(args.rows))
        if rep == 1:
            serving_peak_mib = peak_rss_mib()
        stages.append(writer_stages(args.rows))
        s, w = served[-1], stages[-1]
        print(
            f"  rep {rep}: cold {s['cold_s']:.2f} s (API call {s['cold_api_s']:.2f} s), cached {s['cached_s']:.2f} s, "
            f"{s['parts']} part(s), {s['bytes'] / 2**20:.0f} MiB | generate {w['generate_s']:.2f} s, "
            f"write {w['write_s']:.2f} s, csv+gzip reference {w['reference_s']:.2f} s"
        )

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    rows = stages[0]["rows"]
    size_mib = median(served, "bytes") / 2**20
    print(f"\n{rows:,} {EVENT_TYPE} rows, {size_mib:.0f} MiB gzip (level {DEFAULT_COMPRESSLEVEL}), medians:")
    print(
        f"served cold (generate, write, serve over HTTP): {median(served, 'cold_s'):.2f} s "
        f"({rows / median(served, 'cold_s'):,.0f} rows/s)"
    )
    print(f"served cached: {median(served, 'cached_s'):.2f} s; download alone {median(served, 'download_s'):.2f} s")
    print(f"generate_export: {median(stages, 'generate_s'):.2f} s; write_csv_parts: {median(stages, 'write_s'):.2f} s")
    print(
        f"reference, csv module + GzipFile: {median(stages, 'reference_s'):.2f} s "
        f"({median(stages, 'reference_bytes') / 2**20:.0f} MiB)"
    )
    speedup = median(stages, "reference_s") / median(stages, "write_s")
    print(f"write_csv_parts vs the reference: {speedup:.2f}x faster")
    print(f"peak RSS: {serving_peak_mib:,.0f} MiB after the first serving, {peak_rss_mib():,.0f} MiB at the end")
    # Every part served was checked against its Content-Length (fetch_hour), cold and cached.
    write_json(
        args.json,
        {
            "rows": rows,
            "parts": [run["parts"] for run in served],
            "bytes_served": [run["bytes"] for run in served],
            "writer_speedup": speedup,
        },
    )


if __name__ == "__main__":
    main()
