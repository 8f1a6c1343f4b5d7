"""A reader process for the many-machines test: queries the lake every 0.25 s until told to stop.

``python -m growingio_pipeline_tests.lake_reader EXPECTED STOP`` reads the lake's variables from the
environment (``growingio_pipeline.lake``), opens a read-only connection per query, as an analyst's
notebook or the DuckDB CLI would, and counts ``growingio.page`` rows per partition. EXPECTED is a JSON file
``{partition_key: rows}``: a partition seen with another count is a partial one. Stops once the file STOP
exists and prints ``{"queries": n, "failures": [...], "partial": [...]}`` as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from growingio_pipeline.lake import LakeSettings, connect_lake

INTERVAL_S = 0.25


def main(expected_path: Path, stop_path: Path) -> None:
    expected = json.loads(expected_path.read_text())
    settings = LakeSettings.from_env()
    queries, failures, partial = 0, [], []
    while not stop_path.exists():
        queries += 1
        try:
            with connect_lake(settings, read_only=True) as conn:
                counts = conn.execute("SELECT _partition_key, count(*) FROM growingio.page GROUP BY ALL").fetchall()
            partial += [[key, rows] for key, rows in counts if expected.get(key) != rows]
        except Exception as error:
            failures.append(f"{type(error).__name__}: {error}")
        time.sleep(INTERVAL_S)
    print(json.dumps({"queries": queries, "failures": failures, "partial": partial}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
