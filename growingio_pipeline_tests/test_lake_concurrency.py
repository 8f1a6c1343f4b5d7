"""Concurrent writers on one lake table, and a reader beside them that only ever sees whole partitions.

Three writer processes (``lake_writer``) replace their own partitions of ``growingio.page`` round after round
through the pipeline's writer; their commits to the shared SQLite catalog conflict and are retried. Meanwhile
this process queries the table in a loop, as an analyst would, until the writers end.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb

from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.warehouse import ensure_schema
from growingio_pipeline_tests.pipeline_harness import read_lake
from growingio_pipeline_tests.reliability_support import PROJECT_ROOT

WRITERS = {"a": ["202611290000", "202611290100"], "b": ["202611290200", "202611290300"], "c": ["202611290400"]}
ROUNDS = 4
ROWS = 3000
WRITER_TIMEOUT_S = 600


def start_writers(lake_dir: Path, log_dir: Path) -> dict[str, subprocess.Popen]:
    """All writer processes, started before any is waited for."""
    writers = {}
    for name, partitions in WRITERS.items():
        with (log_dir / f"writer-{name}.log").open("wb") as log:
            writers[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "growingio_pipeline_tests.lake_writer",
                    str(lake_dir),
                    str(ROUNDS),
                    str(ROWS),
                    *partitions,
                ],
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    return writers


def partition_states(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int]]:
    """(rows, distinct rounds) of each partition of growingio.page, read in one snapshot."""
    rows = conn.execute(
        "SELECT _partition_key, count(*), count(DISTINCT title) FROM growingio.page GROUP BY ALL"
    ).fetchall()
    return {key: (count, rounds) for key, count, rounds in rows}


def test_concurrent_writers_commit_every_round_and_a_reader_sees_only_whole_partitions(tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    with connect_lake(LakeSettings.in_folder(lake_dir)) as conn:
        ensure_schema(conn)
    writers = start_writers(lake_dir, tmp_path)

    observations: list[dict[str, tuple[int, int]]] = []
    failed_queries: list[str] = []
    while any(writer.poll() is None for writer in writers.values()):
        try:
            with read_lake(lake_dir) as conn:  # connect, query, disconnect: as often as the analyst
                observations.append(partition_states(conn))
        except duckdb.Error as error:
            failed_queries.append(str(error))
    for name, writer in writers.items():
        log = (tmp_path / f"writer-{name}.log").read_text()
        assert writer.wait(timeout=WRITER_TIMEOUT_S) == 0, f"writer {name} failed:\n{log[-4000:]}"

    assert failed_queries == [], "a query failed while the writers wrote"
    assert observations, "the reader queried while the writers wrote"
    partial = [state for state in observations if any(value != (ROWS, 1) for value in state.values())]
    assert partial == [], "a partition was seen empty, doubled or mixing two rounds"
    with read_lake(lake_dir) as conn:
        final = conn.execute("SELECT _partition_key, title, count(*) FROM growingio.page GROUP BY ALL").fetchall()
        ledger = conn.execute("SELECT partition_key, status FROM growingio._load_ledger").fetchall()
    every_partition = [key for partitions in WRITERS.values() for key in partitions]
    assert sorted(final) == sorted((key, f"round-{ROUNDS - 1}", ROWS) for key in every_partition)
    assert Counter(ledger) == {(key, "LOADED"): ROUNDS for key in every_partition}
