"""Real processes for end-to-end tests: ``dagster dev`` and the ``growingio-local-server`` command.

Each runs in its own process group (a new session), so stopping it stops every process it started,
also when a test fails half-way.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # services imports this module's process helpers
    from growingio_pipeline_tests.services import PostgresServer

# Not conftest's PROJECT_ROOT: conftest imports services, which imports this module.
PRODUCTION_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "docs" / "production" / "dagster.yaml"
"""The documented instance settings for many machines: PostgreSQL storage, from DAGSTER_PG_* variables."""
DAGSTER_MODULE = "growingio_pipeline.definitions"
STARTUP_TIMEOUT_S = 180.0
SENSORS_OFF = {"GROWINGIO_CATCH_UP": "off", "GROWINGIO_ANALYTICS_AUTOMATION": "off"}
"""Settings that keep the daemon from starting runs of its own, which would add to the runs a test counts."""
BACKFILL_TIMEOUT_S = 2400
STOP_GRACE_S = 60.0
"""``dagster dev`` gives its webserver and daemon up to 60 s each to stop before it kills them."""

LOG_TAIL_CHARS = 4000


@dataclass(frozen=True)
class DagsterDev:
    """A running ``dagster dev``: its webserver URL, the leader process and its combined output."""

    base_url: str
    process: subprocess.Popen
    dagster_home: Path
    log_path: Path

    @property
    def graphql_url(self) -> str:
        """The webserver's GraphQL endpoint."""
        return f"{self.base_url}/graphql"


@dataclass(frozen=True)
class LocalServerProcess:
    """A running ``growingio-local-server`` command."""

    base_url: str
    process: subprocess.Popen


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in the process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        # The command name (field 2) may hold spaces and parentheses; the fields after its last ")" do not.
        state, _ppid, process_group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(process_group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def lingering_group_members(pgid: int, settle_s: float = 20.0) -> list[str]:
    """The command lines of processes still alive in group ``pgid`` after ``settle_s``.

    A child that is already exiting when its leader ends (an interpreter's last clean-up) is not left behind;
    on a loaded machine it can take seconds to go.
    """
    deadline = time.monotonic() + settle_s
    while (members := process_group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [_command_line(pid) for pid in members]


def _command_line(pid: int) -> str:
    try:
        return f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"{pid}: (ended)"


def stop_process_group(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the group's leader, let it stop its children, then SIGKILL whatever is left of the group.

    ``process`` must have been started with ``start_new_session=True`` (its pid is the group id).
    Returns only once no process of the group is alive.
    """
    pgid = process.pid
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    if not _wait_until_group_empty(process, pgid, grace_s):
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if not _wait_until_group_empty(process, pgid, 30.0):
            raise RuntimeError(f"processes {process_group_members(pgid)} of group {pgid} survived SIGKILL")


def _wait_until_group_empty(process: subprocess.Popen, pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        process.poll()  # reaps the leader once it exits
        if process.returncode is not None and not process_group_members(pgid):
            return True
        time.sleep(0.2)
    return False


@contextmanager
def running_dagster_dev(
    dagster_home: Path,
    env: Mapping[str, str],
    *,
    module: str | None = DAGSTER_MODULE,
    cwd: Path | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
) -> Iterator[DagsterDev]:
    """``dagster dev`` (webserver and daemon) for ``module`` on a free loopback port, stopped on exit.

    With ``module=None`` it reads ``workspace.yaml`` in ``cwd``, as a user's plain ``dagster dev`` does.

    ``env`` is added to this process's environment, after ``GROWINGIO_CATCH_UP=off`` and
    ``GROWINGIO_ANALYTICS_AUTOMATION=off`` (their sensors would otherwise start runs of their own; a test that
    wants one sets it on); ``DAGSTER_HOME`` is set to ``dagster_home``
    (created if needed). Output goes to ``dagster_home/dagster-dev.log``. Yields once
    ``/server_info`` answers; a clear error with the log's tail if it does not within the timeout.
    """
    dagster_home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = dagster_home / "dagster-dev.log"
    command = [sys.executable, "-m", "dagster", "dev", "--host", "127.0.0.1", "--port", str(port)]
    if module is not None:
        command += ["-m", module]
    with log_path.open("wb") as log, _sigint_not_ignored_in_children():
        process = subprocess.Popen(
            command,
            env={**os.environ, **SENSORS_OFF, **env, "DAGSTER_HOME": str(dagster_home)},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        dev = DagsterDev(f"http://127.0.0.1:{port}", process, dagster_home, log_path)
        _wait_for_webserver(dev, startup_timeout_s)
        yield dev
    finally:
        stop_process_group(process)


@contextmanager
def _sigint_not_ignored_in_children() -> Iterator[None]:
    """Let children start with SIGINT's default action even if this process ignores SIGINT.

    A shell's background job ignores SIGINT, an ignored signal stays ignored across exec, and
    ``dagster dev`` handles SIGTERM like SIGINT: it would ignore SIGTERM too and only die by SIGKILL,
    without stopping its webserver and daemon in order. A handled signal is reset to default on exec.
    """
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if not ignored or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _wait_for_webserver(dev: DagsterDev, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if dev.process.poll() is not None:
            raise RuntimeError(
                f"dagster dev exited with code {dev.process.returncode} before its webserver answered:\n"
                f"{log_tail(dev.log_path)}"
            )
        try:
            if httpx.get(f"{dev.base_url}/server_info", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(
        f"dagster dev's webserver did not answer {dev.base_url}/server_info within {timeout_s:.0f} s:\n"
        f"{log_tail(dev.log_path)}"
    )


def log_tail(log_path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a process's log, for failure messages."""
    try:
        return log_path.read_text(errors="replace")[-chars:]
    except OSError as error:
        return f"(no log: {error})"


@contextmanager
def running_local_server_command(
    *,
    token: str,
    project_id: str,
    rows_per_hour: int,
    seed: int = 1,
    extra_args: Sequence[str] = (),
    startup_timeout_s: float = 60.0,
) -> Iterator[LocalServerProcess]:
    """The ``growingio-local-server`` command on a free port (``--port 0``), stopped on exit."""
    command = [
        sys.executable, "-m", "growingio_pipeline.local_server", "--port", "0", "--token", token,
        "--project", project_id, "--rows-per-hour", str(rows_per_hour), "--seed", str(seed), *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield LocalServerProcess(_announced_base_url(process, startup_timeout_s), process)
    finally:
        stop_process_group(process, grace_s=30.0)
        process.stdout.close()


def _announced_base_url(process: subprocess.Popen, timeout_s: float) -> str:
    """The base URL from the server's first line, waited for with a deadline so a hung start fails."""
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    first_line = process.stdout.readline() if ready else ""
    found = re.search(r"http://127\.0\.0\.1:\d+", first_line)
    if found:
        return found.group(0)
    if process.poll() is not None:
        output = first_line + process.stdout.read()
        raise RuntimeError(f"growingio-local-server exited with code {process.returncode}:\n{output}")
    raise TimeoutError(f"growingio-local-server printed no base URL within {timeout_s:.0f} s: {first_line!r}")


def environment_without_settings() -> dict[str, str]:
    """This process's environment less every GROWINGIO_* and DAGSTER_* variable: a clean start for a child."""
    return {name: value for name, value in os.environ.items() if not name.startswith(("GROWINGIO_", "DAGSTER_"))}


def dagster_home_on_postgres(home: Path, postgres: PostgresServer, database: str) -> dict[str, str]:
    """Makes ``home`` a DAGSTER_HOME with the production settings; returns the variables they read."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRODUCTION_DAGSTER_YAML, home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_DB": database,
        "DAGSTER_PG_USERNAME": postgres.user,
        "DAGSTER_PG_PASSWORD": postgres.password,
    }


def materialize_command(partition_key: str) -> list[str]:
    """``dagster asset materialize`` of all ten types for one partition, as a user types it."""
    return [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m", DAGSTER_MODULE,
            "--select", "*", "--partition", partition_key]  # fmt: skip


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on Error { message }
  }
}"""


def _graphql(url: str, query: str, variables: dict) -> dict:
    response = httpx.post(url, json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    payload = response.json()
    assert "errors" not in payload, payload
    return payload["data"]


def launch_backfill(dev: DagsterDev, asset_keys: Sequence[Sequence[str]], partition_keys: Sequence[str]) -> str:
    """Launch a backfill of ``asset_keys`` over ``partition_keys`` as the UI does; its id."""
    params = {"partitionNames": list(partition_keys), "assetSelection": [{"path": list(key)} for key in asset_keys]}
    launched = _graphql(dev.graphql_url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def wait_for_backfill(dev: DagsterDev, backfill_id: str, timeout_s: float = BACKFILL_TIMEOUT_S) -> str:
    """The backfill's status once it has ended; :class:`TimeoutError` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        backfill = _graphql(dev.graphql_url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return backfill["status"]
        time.sleep(2)
    raise TimeoutError(f"backfill {backfill_id} did not finish within {timeout_s} s")
