"""The benchmark scripts run end to end at a tiny scale, and their equality checks hold.

Only their correctness is asserted here: timings are reported by the scripts, never asserted.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from growingio_pipeline_tests.conftest import PROJECT_ROOT


def run_benchmark(script: str, *arguments: str) -> str:
    """Run ``benchmarks/<script>`` with this interpreter; its stdout, after asserting it succeeded."""
    completed = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "benchmarks" / script), *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_ingest_benchmark_loads_equal_tables_with_all_three_engines(tmp_path: Path) -> None:
    output = run_benchmark(
        "ingest_benchmark.py", "--rows", "3000", "--reps", "1", "--memory-parts", "2", "--workdir", str(tmp_path)
    )

    assert "rows loaded: {'project': {3000}, 'duckdb': {3000}, 'pandas': {3000}}" in output
    assert re.search(r"^tables equal, project vs duckdb: True \(0 rows only in project", output, re.MULTILINE)
    assert re.search(r"^tables equal, project vs pandas: True \(0 rows only in project", output, re.MULTILINE)
    assert re.search(r"^project, 2 part\(s\) of .*: 6,000 rows", output, re.MULTILINE)


@pytest.mark.slow
def test_backfill_benchmark_loads_every_partition_and_reports_the_overhead() -> None:
    output = run_benchmark("backfill_benchmark.py", "--partitions", "2", "--rows-per-hour", "300")

    assert re.search(r"^2 partitions x 10 types: [\d,]+ rows", output, re.MULTILINE)
    assert "'page': 600" in output
    assert re.search(
        r"^orchestration overhead per partition \(run - data path\): median [\d.]+ s", output, re.MULTILINE
    )


def test_local_server_benchmark_serves_every_part_with_its_content_length() -> None:
    output = run_benchmark("local_server_benchmark.py", "--rows", "3000", "--reps", "1")

    assert "3,000 page rows" in output
    assert re.search(r"^write_csv_parts vs the reference: [\d.]+x faster$", output, re.MULTILINE)


@pytest.mark.slow
def test_backfill_concurrency_benchmark_loads_exactly_the_generated_rows_at_each_concurrency() -> None:
    output = run_benchmark(
        "backfill_concurrency_benchmark.py", "--partitions", "3", "--rows-per-hour", "300", "--concurrency", "1", "2"
    )

    assert re.search(r"^1 at a time: 3 partitions in .*rows as generated: True$", output, re.MULTILINE)
    assert re.search(r"^2 at a time: 3 partitions in .*rows as generated: True$", output, re.MULTILINE)
    assert re.search(r"^speed-up of 2 at a time over 1: [\d.]+x$", output, re.MULTILINE)
    assert "every table holds exactly the generator's rows at every concurrency" in output
