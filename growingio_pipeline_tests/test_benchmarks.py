"""The benchmark scripts run end to end at a tiny scale, and their equality checks hold.

Only their correctness is asserted here, from the figures each writes with ``--json``: timings are reported
by the scripts, never asserted.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.local_server.generator import row_count
from growingio_pipeline_tests.conftest import PROJECT_ROOT


def run_benchmark(script: str, tmp_path: Path, *arguments: str) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` with this interpreter; the figures it wrote, after asserting it succeeded."""
    figures = tmp_path / "figures.json"
    completed = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / script), *arguments, "--json", str(figures)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(figures.read_text(encoding="utf-8"))
    return result


def test_ingest_benchmark_loads_equal_tables_with_all_three_engines(tmp_path: Path) -> None:
    figures = run_benchmark(
        "ingest_benchmark.py",
        tmp_path,
        "--rows",
        "3000",
        "--reps",
        "1",
        "--memory-parts",
        "2",
        "--workdir",
        str(tmp_path),
    )

    assert figures["rows_loaded"] == {"project": [3000], "duckdb": [3000], "pandas": [3000]}
    assert figures["differences"] == {
        "duckdb": {"only_in_project": 0, "only_in_other": 0},
        "pandas": {"only_in_project": 0, "only_in_other": 0},
    }
    assert [(run["parts"], run["rows"]) for run in figures["memory"]] == [(1, 3000), (2, 6000)]


@pytest.mark.slow
def test_backfill_benchmark_loads_every_partition_and_reports_the_overhead(tmp_path: Path) -> None:
    figures = run_benchmark("backfill_benchmark.py", tmp_path, "--partitions", "2", "--rows-per-hour", "300")

    expected = {name: sum(row_count(name, f"20261128{hour:02d}", 300) for hour in range(2)) for name in EVENT_TYPES}
    assert (figures["partitions"], figures["event_types"]) == (2, len(EVENT_TYPES))
    assert figures["rows_per_table"] == expected
    assert expected["page"] == 600
    assert figures["rows_written"] == sum(expected.values())
    assert isinstance(figures["median_overhead_s"], float)


def test_local_server_benchmark_serves_every_part_with_its_content_length(tmp_path: Path) -> None:
    figures = run_benchmark("local_server_benchmark.py", tmp_path, "--rows", "3000", "--reps", "1")

    assert figures["rows"] == 3000
    assert figures["parts"] == [1], "3,000 rows fit one part"
    assert figures["bytes_served"][0] > 0
    assert isinstance(figures["writer_speedup"], float) and math.isfinite(figures["writer_speedup"])


@pytest.mark.slow
def test_backfill_concurrency_benchmark_loads_exactly_the_generated_rows_at_each_concurrency(tmp_path: Path) -> None:
    figures = run_benchmark(
        "backfill_concurrency_benchmark.py",
        tmp_path,
        "--partitions",
        "2",
        "--rows-per-hour",
        "300",
        "--concurrency",
        "1",
        "2",
        "--analyst",
    )

    assert figures["rows_as_generated"] == {"1": True, "2": True}
    assert figures["partitions_run"] == {"1": 2, "2": 2}
    assert figures["failed_queries"] == {"1": 0, "2": 0}
    assert min(figures["queries"].values()) > 0
    hours = [f"20261128{hour:02d}" for hour in range(2)]
    assert figures["expected_rows"] == sum(row_count(name, hour, 300) for name in EVENT_TYPES for hour in hours)


def test_catalog_benchmark_times_every_catalog_with_the_index_only_where_it_belongs(tmp_path: Path) -> None:
    figures = run_benchmark("catalog_benchmark.py", tmp_path, "--files", "5", "12", "--reps", "1")

    catalogs = {"postgres_indexed", "postgres_unindexed", "sqlite"}
    assert {files: set(medians) for files, medians in figures["median_ms"].items()} == {"5": catalogs, "12": catalogs}
    assert all(ms > 0 for medians in figures["median_ms"].values() for ms in medians.values())
    assert figures["history_files"] == dict.fromkeys(catalogs, 12)
    assert figures["indexed"] == {"indexed": True, "unindexed": False}


def test_lake_backfill_benchmark_loads_every_hour_and_maintenance_leaves_fewer_files(tmp_path: Path) -> None:
    figures = run_benchmark("lake_backfill_benchmark.py", tmp_path, "--hours", "2", "--rows-per-hour", "300")

    assert figures["rows_as_generated"] is True
    assert figures["hours"] == 2
    assert figures["rows"] == sum(
        row_count(name, f"20261128{hour:02d}", 300) for name in EVENT_TYPES for hour in (0, 1)
    )
    # Each hour of each type was written in its own file; merging adjacent files leaves fewer, and deletes none
    # that the current snapshot reads.
    assert figures["files_after"]["live_files"] < figures["files_before"]["live_files"]
    assert figures["files_after"]["awaiting_deletion"] == 0
    assert figures["day_query_s"] > 0


@pytest.mark.slow
def test_hour_benchmark_loads_every_row_on_each_path_and_gives_both_ratios(tmp_path: Path) -> None:
    # The references' venv (DuckDB 2.0.1 from PyPI) is made once, beside the test folders of this run.
    reference_venv = tmp_path.parent / "hour-benchmark-reference-venv"
    figures = run_benchmark(
        "hour_benchmark.py",
        tmp_path,
        "--rows",
        "3000",
        "--parts",
        "2",
        "--reps",
        "1",
        "--workdir",
        str(tmp_path),
        "--reference-venv",
        str(reference_venv),
        "--dagster",
        "--link-mbit",
        "400",
    )

    assert (figures["reference_duckdb"], figures["link_mbit"]) == ("2.0.1", 400)
    for shape in ("usual", "hard"):
        measured = figures["shapes"][shape]
        assert measured["parts"] == 2 and measured["rows_equal"] is True
        assert {path: result["rows"] for path, result in measured["paths"].items()} == {
            "project": [3000],
            "duckdb_local": [3000],
            "download_then_read_csv": [3000],
        }
        assert set(measured["speedup"]) == {"duckdb_local", "download_then_read_csv"}
        assert all(math.isfinite(ratio) and ratio > 0 for ratio in measured["speedup"].values())
        assert [run["rows"] for run in measured["dagster"]["runs"]] == [3000]
