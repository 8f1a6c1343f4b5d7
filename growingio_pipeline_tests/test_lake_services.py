"""DuckDB 1.5.5 and DuckLake on a real PostgreSQL catalog and real S3 files, offline, across processes."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from growingio_pipeline.duckdb_extensions import extension_directory
from growingio_pipeline.lake import FILE_STATISTICS_INDEX, connect_lake
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


def test_a_writer_indexes_a_postgres_catalogs_file_statistics_and_filtered_reads_use_the_index(
    postgres_server, tmp_path
):
    database = postgres_server.create_database("probe_lake_statistics_index")
    settings = postgres_server.lake_settings(database, f"{tmp_path}/")
    with connect_lake(settings) as conn:
        conn.execute("CREATE TABLE numbers AS SELECT range AS id FROM range(1000)")
    with connect_lake(settings):
        pass  # a second writer finds the index and leaves it as it is

    def index_scans() -> int:
        with postgres_server.connect(database) as catalog, catalog.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_force_next_flush(); "
                "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE indexrelname = %s",
                (FILE_STATISTICS_INDEX,),
            )
            return int(cursor.fetchone()[0])

    with postgres_server.connect(database) as catalog, catalog.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'ducklake_file_column_stats'")
        definitions = [definition for (definition,) in cursor.fetchall()]
    assert definitions == [
        f"CREATE INDEX {FILE_STATISTICS_INDEX} ON public.ducklake_file_column_stats USING btree (table_id, column_id)"
    ]
    before = index_scans()
    with connect_lake(settings, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM numbers WHERE id >= 500").fetchone() == (500,)
    assert index_scans() > before  # DuckLake read the table's file statistics through the index


def test_a_writer_that_may_not_create_the_index_still_loads_and_says_why(postgres_server, tmp_path, caplog):
    database = postgres_server.create_database("probe_lake_not_owner")
    owner = postgres_server.lake_settings(database, f"{tmp_path}/")
    with connect_lake(owner) as conn:
        conn.execute("CREATE TABLE numbers (id INTEGER)")
    with postgres_server.connect(database) as catalog, catalog.cursor() as cursor:
        cursor.execute(f"DROP INDEX {FILE_STATISTICS_INDEX}")
    postgres_server.create_role("lake_writer", "writer-password-8c1d", database)
    writer = dataclasses.replace(
        owner,
        catalog=owner.catalog.replace(f"user={postgres_server.user}", "user=lake_writer"),
        catalog_password="writer-password-8c1d",
    )

    with caplog.at_level(logging.WARNING, logger="growingio_pipeline.lake"), connect_lake(writer) as conn:
        conn.execute("INSERT INTO numbers SELECT range FROM range(10)")

    with connect_lake(owner, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM numbers").fetchone() == (10,)
    assert f"could not create index {FILE_STATISTICS_INDEX}" in caplog.text
    assert "must be owner" in caplog.text
    assert "writer-password-8c1d" not in caplog.text
