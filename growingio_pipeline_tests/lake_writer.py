"""A writer process for the lake concurrency tests: replaces its own partitions of ``growingio.page`` again and again.

``python -m growingio_pipeline_tests.lake_writer LAKE_DIR ROUNDS ROWS PARTITION...`` writes, in each round and
for each partition, ROWS rows whose ``title`` is ``round-<n>`` (one ``replace_partition`` transaction each, then
a ledger row), through the same writer the pipeline uses. A partition read at any moment must therefore hold
exactly ROWS rows of a single round. Exits 0 when every write committed.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline.warehouse import LoadAttempt, ensure_schema, record_attempt, replace_partition
from growingio_pipeline_tests.csv_fixtures import write_part
from growingio_pipeline_tests.parsed_parts import parse_into_partition

PAGE = EVENT_TYPES["page"]
HEADER = ["sendTime", "title", "pageRequestId"]


def write_rounds(lake_dir: Path, rounds: int, rows: int, partitions: list[str]) -> None:
    """Replace each partition ``rounds`` times with ``rows`` rows of that round."""
    with tempfile.TemporaryDirectory() as directory, connect_lake(LakeSettings.in_folder(lake_dir)) as conn:
        ensure_schema(conn)
        for number in range(rounds):
            for partition in partitions:
                started = datetime.now(timezone.utc)
                part = write_part(
                    Path(directory) / f"{partition}-{number}.csv.gz",
                    HEADER,
                    [[str(i), f"round-{number}", f"{partition}-{i}"] for i in range(rows)],
                )
                parsed = parse_into_partition(
                    conn, PAGE, partition, part, source=part.name, staging_dir=Path(directory) / "stage"
                )
                summary = replace_partition(conn, PAGE, partition, [parsed])
                record_attempt(conn, LoadAttempt.loaded(summary, export_type="hour", started_at=started))


if __name__ == "__main__":
    write_rounds(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
