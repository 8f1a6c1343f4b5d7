"""DuckDB 1.5.5 and DuckLake on a real PostgreSQL catalog and real S3 files, offline, across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from growingio_pipeline.duckdb_extensions import extension_directory
from growingio_pipeline_tests.services import lake_environment


def _probe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "growingio_pipeline_tests.ducklake_probe", *args],
        check=False, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_lake_written_by_one_process_is_read_by_another_from_postgres_and_s3(postgres_server, seaweed_s3):
    database = postgres_server.create_database("probe_lake")
    bucket = seaweed_s3.create_bucket("probe-lake")
    env = {**os.environ, **lake_environment(postgres_server, database, seaweed_s3, f"s3://{bucket}/warehouse/")}

    written = _probe(["write", "1000"], env)
    assert written.returncode == 0, written.stderr
    read = _probe(["read"], env)
    assert read.returncode == 0, read.stderr

    result = json.loads(read.stdout)
    assert (result["rows"], result["id_sum"]) == (1000, sum(range(1000)))
    # Loaded from the packaged builds, with signature checks on (the probe's extension repository refuses
    # connections, so a download attempt would have failed the ATTACH).
    for name in ("ducklake", "postgres_scanner", "httpfs"):
        assert Path(result["extensions"][name]).is_relative_to(extension_directory()), result["extensions"]
    assert result["unsigned"] is False
    # The data files are in the bucket, and the catalog in PostgreSQL names exactly those.
    stored = seaweed_s3.stored_files(bucket, "warehouse/")
    assert stored and all(name.endswith(".parquet") and size > 0 for name, size in stored.items()), stored
    with postgres_server.connect(database) as catalog, catalog.cursor() as cursor:
        cursor.execute("SELECT path FROM ducklake_data_file WHERE end_snapshot IS NULL")
        cataloged = {Path(path).name for (path,) in cursor.fetchall()}
    assert cataloged == {Path(name).name for name in stored}


def test_a_wrong_catalog_password_is_refused_without_being_echoed(postgres_server, seaweed_s3):
    database = postgres_server.create_database("probe_lake_refused")
    bucket = seaweed_s3.create_bucket("probe-lake-refused")
    wrong = "not-the-password-4f1c"
    env = {**os.environ, **lake_environment(postgres_server, database, seaweed_s3, f"s3://{bucket}/warehouse/")}

    refused = _probe(["write", "10"], {**env, "GROWINGIO_LAKE_CATALOG_PASSWORD": wrong})

    assert refused.returncode != 0
    assert "password authentication failed" in refused.stderr
    assert wrong not in refused.stdout + refused.stderr
    assert seaweed_s3.stored_files(bucket) == {}
