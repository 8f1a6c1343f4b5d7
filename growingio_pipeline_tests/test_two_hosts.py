"""Two hosts load different hours at the same time into one lake, sharing nothing but PostgreSQL and S3.

Each host is its own working folder and DAGSTER_HOME (the production ``dagster.yaml``, so both keep runs
in one PostgreSQL database), running ``dagster asset materialize`` processes; the lake's catalog is another
PostgreSQL database and its files are in a SeaweedFS bucket. A third process reads all the while. Where this
process may make network namespaces (root, as in CI), each host and the reader is one, reaching only the
PostgreSQL, S3 and export API ports (``netns.isolated_host``); elsewhere they are plain processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.lake import LakeSettings, connect_lake
from growingio_pipeline_tests.conftest import PROJECT_ROOT
from growingio_pipeline_tests.dagster_processes import (
    dagster_home_on_postgres,
    environment_without_settings,
    materialize_command,
)
from growingio_pipeline_tests.netns import isolated_host, namespaces_available
from growingio_pipeline_tests.pipeline_harness import expected_rows, export_environment, partition_rows
from growingio_pipeline_tests.services import lake_environment

FIRST = "202611290000"
"""Loaded by host A alone first, so the lake's tables exist before the reader starts."""
HOURS = {"host-a": ["202611290100", "202611290200"], "host-b": ["202611290300", "202611290400"]}
RUN_TIMEOUT_S = 300


def _run_all(
    partitions: list[str], prefix: list[str], folder: Path, env: dict[str, str]
) -> list[subprocess.CompletedProcess[str]]:
    """One host: its partitions one after another, each a ``dagster asset materialize`` process."""
    folder.mkdir(exist_ok=True)
    options = {"cwd": folder, "env": env, "capture_output": True, "text": True, "timeout": RUN_TIMEOUT_S}
    return [subprocess.run([*prefix, *materialize_command(key)], check=False, **options) for key in partitions]


def _reaches(prefix: list[str], port: int) -> bool:
    """Whether a process started with ``prefix`` can open a TCP connection to 127.0.0.1:``port``."""
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5).close()"
    return subprocess.run([*prefix, sys.executable, "-c", probe], check=False, capture_output=True).returncode == 0


@pytest.mark.slow
def test_two_hosts_load_different_hours_at_once_while_a_third_reads(
    postgres_server, seaweed_s3, make_local_server, tmp_path, monkeypatch
):
    server = make_local_server()
    bucket = seaweed_s3.create_bucket("two-hosts")
    lake_database = postgres_server.create_database("two_hosts_lake")
    lake_env = lake_environment(postgres_server, lake_database, seaweed_s3, f"s3://{bucket}/lake/")
    dagster_database = postgres_server.create_database("two_hosts_dagster")
    all_keys = [FIRST, *HOURS["host-a"], *HOURS["host-b"]]
    expected_path, stop_path = tmp_path / "expected.json", tmp_path / "stop"
    expected_path.write_text(json.dumps({key: len(server.ground_truth("page", key[:10])) for key in all_keys}))
    shared_ports = [postgres_server.port, seaweed_s3.s3_port, server.port]

    isolate = namespaces_available()
    with ExitStack() as hosts_running:
        prefixes = {
            name: hosts_running.enter_context(isolated_host(name, shared_ports)) if isolate else []
            for name in [*HOURS, "reader"]
        }
        hosts = {
            name: (
                prefixes[name],
                tmp_path / name,
                environment_without_settings()
                | export_environment(server)
                | lake_env
                | dagster_home_on_postgres(tmp_path / name / "dagster_home", postgres_server, dagster_database),
            )
            for name in HOURS
        }
        if isolate:  # isolated: the hosts reach the shared ports and nothing else of this machine
            assert _reaches(prefixes["host-a"], postgres_server.port)
            assert not _reaches(prefixes["host-a"], urlsplit(seaweed_s3.filer_url).port)

        results = _run_all([FIRST], *hosts["host-a"])
        reader_command = [
            sys.executable,
            "-m",
            "growingio_pipeline_tests.lake_reader",
            str(expected_path),
            str(stop_path),
        ]
        with subprocess.Popen(
            [*prefixes["reader"], *reader_command],
            # The test modules are not installed: the reader finds them through PYTHONPATH, from its own folder.
            env=environment_without_settings() | lake_env | {"PYTHONPATH": str(PROJECT_ROOT)},
            cwd=tmp_path, stdout=subprocess.PIPE, text=True,
        ) as reader:  # fmt: skip
            try:
                with ThreadPoolExecutor(len(hosts)) as pool:
                    for host_results in pool.map(lambda name: _run_all(HOURS[name], *hosts[name]), hosts):
                        results += host_results
            finally:
                stop_path.touch()
            read = json.loads(reader.communicate(timeout=120)[0])

    for result in results:
        assert result.returncode == 0, result.args[-1] + "\n" + result.stdout + result.stderr
        for secret in (postgres_server.password, seaweed_s3.secret_access_key):
            assert secret not in result.stdout + result.stderr
    assert read["queries"] > 0 and read["failures"] == [] and read["partial"] == [], read
    for name, value in lake_env.items():
        monkeypatch.setenv(name, value)
    with connect_lake(LakeSettings.from_env(), read_only=True) as conn:
        for key in all_keys:
            for event_type in EVENT_TYPES.values():
                loaded = partition_rows(conn, event_type, key)
                assert loaded == expected_rows(server, event_type, key), (event_type.name, key)
    with postgres_server.connect(dagster_database) as storage, storage.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM runs GROUP BY status")
        assert cursor.fetchall() == [("SUCCESS", len(all_keys))]
    stored = seaweed_s3.stored_files(bucket, "lake/")
    assert stored and all(name.endswith(".parquet") for name in stored), stored
    assert not [path for path in tmp_path.rglob("*") if path.suffix in (".parquet", ".duckdb", ".sqlite")]
