"""Key-pair authentication without Dagster: the vendor's signature, and one code shared through the store.

The store tests run against both stores: a SQLite catalog file, and a real PostgreSQL catalog database (the
session's server from conftest, a new database per test).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from growingio_pipeline.auth import (
    CODE_LIFETIME_S,
    REFRESH_BEFORE_EXPIRY_S,
    SharedAuthCode,
    code_request_body,
    sign,
    signature_message,
)
from growingio_pipeline.auth_code_store import (
    TABLE,
    AuthCodeStore,
    AuthCodeStoreError,
    PostgresAuthCodeStore,
    SqliteAuthCodeStore,
    open_auth_code_store,
)
from growingio_pipeline.lake import LAKE_SECRET_VARIABLES, POSTGRES_PREFIX
from growingio_pipeline_tests.services import PostgresServer

# The example inputs of GrowingIO's docs (growingio-docs-v3, developer-manual/api-reference/authenticate/):
# gettoken.md's raw body "project=123abc&ai=2a1b4018cd954ec2bcc69da5138bdb96&tm=1465020309123&auth=..." and
# getauth.md's private key placeholder. The docs print no signature for them (their "auth=ab3i5d..." is not hex),
# so the expected value was computed independently:
#   printf 'POST\n/auth/token\nproject=123abc&ai=2a1b4018cd954ec2bcc69da5138bdb96&tm=1465020309123' \
#     | openssl dgst -sha256 -hmac '这里是GrowingIO给项目分配的私钥'
DOC_PRIVATE_KEY = "这里是GrowingIO给项目分配的私钥"
DOC_PROJECT_UID = "123abc"
DOC_AI = "2a1b4018cd954ec2bcc69da5138bdb96"
DOC_TM = 1465020309123
DOC_SIGNATURE = "07bd990ebcb04cf454a4f3e10ffedec118f2d802a932fe67358057a255dab66a"
# The same with an ASCII key and pre-init.md's example UID (nxog09md), also from openssl.
ASCII_SIGNATURE = "8b91ffe1690c1899c96a32ee3f8aea1b2144b6469de4d477e670136d56ee7db5"

SCOPE = "scope-1"
RUNS_AT_ONCE = 4
PASSWORD_VARIABLE = LAKE_SECRET_VARIABLES["catalog_password"]
SHARE_ONE_CODE = """
import os, sys, time
from pathlib import Path
from growingio_pipeline.auth import SharedAuthCode
from growingio_pipeline.auth_code_store import open_auth_code_store

catalog, fetch_log, ready, go = sys.argv[1:5]
def fetch():
    with open(fetch_log, "a") as log:
        log.write("fetched\\n")
    time.sleep(0.3)  # a slow exchange: the others must wait for it, not fetch their own
    return f"code-from-{sys.argv[5]}"
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.01)
store = open_auth_code_store(catalog, os.environ.get("GROWINGIO_LAKE_CATALOG_PASSWORD"))
print(SharedAuthCode(store, "scope-1", fetch).current())
"""
HOLD_THE_LOCK = """
import os, sys, time
from pathlib import Path
from growingio_pipeline.auth_code_store import open_auth_code_store

catalog, fetching = sys.argv[1:3]
def fetch():
    Path(fetching).touch()
    time.sleep(600)  # a run stuck (then killed) while it fetches a code, holding the lock
store = open_auth_code_store(catalog, os.environ.get("GROWINGIO_LAKE_CATALOG_PASSWORD"))
store.exchange("scope-1", lambda stored: False, fetch)
"""


class Catalog:
    """A lake catalog for the store tests: a SQLite file path or ``postgres:`` string, and its password."""

    def __init__(self, catalog: str, password: str | None = None, postgres: tuple[PostgresServer, str] | None = None):
        self.catalog, self.password, self.postgres = catalog, password, postgres
        """``postgres``: the server and database of a PostgreSQL catalog"""

    def store(self) -> AuthCodeStore:
        return open_auth_code_store(self.catalog, self.password)

    def environment(self) -> dict[str, str]:
        """The environment of a subprocess using this catalog (the password as the pipeline reads it)."""
        return {**os.environ, **({PASSWORD_VARIABLE: self.password} if self.password else {})}

    def execute(self, sql: str, parameters: list[object]) -> None:
        """``sql`` (with ``?`` marks) run directly on the catalog, as another tool would."""
        if self.postgres is None:
            with sqlite3.connect(self.catalog) as conn:
                conn.execute(sql, parameters)
            return
        server, database = self.postgres
        with server.connect(database) as conn, conn.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), parameters)


def postgres_catalog(postgres: PostgresServer) -> Catalog:
    """A new, empty PostgreSQL database as the lake catalog, reached by password over TCP."""
    database = postgres.create_database(f"auth_{uuid.uuid4().hex[:12]}")
    return Catalog(f"{POSTGRES_PREFIX}{postgres.dsn(database)}", postgres.password, (postgres, database))


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    """Each store test runs on a new SQLite catalog file and on a new PostgreSQL catalog database."""
    if request.param == "sqlite":
        return Catalog(str(tmp_path / "lake" / "catalog.sqlite"))
    return postgres_catalog(request.getfixturevalue("postgres_server"))


@pytest.fixture
def pg_catalog(postgres_server: PostgresServer) -> Catalog:
    return postgres_catalog(postgres_server)


def test_signature_of_the_vendors_documented_example_inputs() -> None:
    assert signature_message(DOC_PROJECT_UID, DOC_AI, DOC_TM) == (
        "POST\n/auth/token\nproject=123abc&ai=2a1b4018cd954ec2bcc69da5138bdb96&tm=1465020309123"
    )
    assert sign(DOC_PRIVATE_KEY, DOC_PROJECT_UID, DOC_AI, DOC_TM) == DOC_SIGNATURE
    assert sign("demo-private-key", "nxog09md", DOC_AI, DOC_TM) == ASCII_SIGNATURE


def test_the_request_body_is_raw_text_in_the_documented_order() -> None:
    body = code_request_body(DOC_PRIVATE_KEY, DOC_PROJECT_UID, DOC_AI, DOC_TM)
    assert body == f"project=123abc&ai={DOC_AI}&tm=1465020309123&auth={DOC_SIGNATURE}"


class CountingFetch:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return f"code-{self.calls}"


def test_a_stored_code_is_used_until_near_expiry(catalog: Catalog) -> None:
    fetch = CountingFetch()
    shared, other_run = SharedAuthCode(catalog.store(), SCOPE, fetch), SharedAuthCode(catalog.store(), SCOPE, fetch)

    assert [shared.current(), shared.current()] == ["code-1", "code-1"]
    near_expiry = time.time() - (CODE_LIFETIME_S - REFRESH_BEFORE_EXPIRY_S) - 60
    catalog.execute(f"UPDATE {TABLE} SET issued_at = ?", [near_expiry])
    assert shared.current() == "code-2", "the stale code is replaced"
    assert other_run.current() == "code-2", "once"
    assert fetch.calls == 2


def test_a_refused_code_is_replaced_once_and_a_replaced_one_is_not_replaced_again(catalog: Catalog) -> None:
    store = catalog.store()
    fetch = CountingFetch()
    first_run, second_run = SharedAuthCode(store, SCOPE, fetch), SharedAuthCode(store, SCOPE, fetch)
    used = first_run.current()
    assert second_run.current() == used

    assert first_run.replace(used) == "code-2"
    assert second_run.replace(used) == "code-2", "the other run picks up the replacement instead of fetching"
    assert fetch.calls == 2


def test_a_failed_fetch_stores_nothing(catalog: Catalog) -> None:
    store = catalog.store()

    def refuse() -> str:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        SharedAuthCode(store, SCOPE, refuse).current()
    assert store.load(SCOPE) is None
    assert SharedAuthCode(store, SCOPE, CountingFetch()).current() == "code-1"


def test_processes_starting_together_fetch_one_code(catalog: Catalog, tmp_path: Path) -> None:
    fetch_log, go = tmp_path / "fetches.log", tmp_path / "go"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SHARE_ONE_CODE,
                *map(str, (catalog.catalog, fetch_log, tmp_path / f"ready-{i}", go, i)),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=catalog.environment(),
        )
        for i in range(RUNS_AT_ONCE)
    ]
    while not all((tmp_path / f"ready-{i}").exists() for i in range(RUNS_AT_ONCE)):
        time.sleep(0.01)
    go.touch()
    codes = [process.communicate(timeout=120)[0].strip() for process in processes]

    assert all(process.returncode == 0 for process in processes)
    assert fetch_log.read_text().count("fetched") == 1
    assert len(set(codes)) == 1 and codes[0].startswith("code-from-")
    assert catalog.store().load(SCOPE).code == codes[0]


def test_a_postgres_catalog_gets_a_store_in_that_database_and_its_errors_name_no_password() -> None:
    # Formerly refused ("not supported yet"): a PostgreSQL catalog now holds the code. Nothing is connected here.
    store = open_auth_code_store("postgres:host=127.0.0.1 port=5433 dbname=lake user=growingio", "pw-0a1b2c")

    assert isinstance(store, PostgresAuthCodeStore)
    assert store.where == "PostgreSQL database lake on 127.0.0.1:5433"
    with pytest.raises(ValueError, match="must not hold the password: set GROWINGIO_LAKE_CATALOG_PASSWORD"):
        open_auth_code_store("postgres:host=127.0.0.1 dbname=lake password=pw-0a1b2c")
    with pytest.raises(ValueError, match="not a libpq connection string after 'postgres:'"):
        open_auth_code_store("postgres:host=127.0.0.1 lake", "pw-0a1b2c")


def test_a_wrong_catalog_password_is_a_clear_error_without_it(pg_catalog: Catalog) -> None:
    wrong = "wrong-password-5f3e1d"
    store = open_auth_code_store(pg_catalog.catalog, wrong)

    for use in (lambda: store.load(SCOPE), lambda: SharedAuthCode(store, SCOPE, CountingFetch()).current()):
        with pytest.raises(AuthCodeStoreError) as refused:
            use()
        message = str(refused.value)
        assert f"could not connect to {store.where}" in message
        assert "password authentication failed" in message
        assert "GROWINGIO_LAKE_CATALOG_PASSWORD" in message
        assert wrong not in message


def test_a_run_waits_for_the_lock_boundedly_and_a_run_that_dies_releases_it(
    pg_catalog: Catalog, tmp_path: Path
) -> None:
    fetching = tmp_path / "fetching"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, pg_catalog.catalog, str(fetching)], env=pg_catalog.environment()
    )
    try:
        while not fetching.exists():
            assert holder.poll() is None, "the lock holder exited early"
            time.sleep(0.01)
        impatient = PostgresAuthCodeStore(pg_catalog.catalog.removeprefix(POSTGRES_PREFIX), pg_catalog.password, 0.5)
        with pytest.raises(AuthCodeStoreError, match=r"another run held its lock for more than 0.5 s") as waited:
            impatient.exchange(SCOPE, lambda stored: True, CountingFetch())
        assert impatient.where in str(waited.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    # PostgreSQL ends the dead run's session, and its lock with it; it had stored nothing.
    assert SharedAuthCode(pg_catalog.store(), SCOPE, CountingFetch()).current() == "code-1"


def test_the_code_table_lives_beside_other_tables_of_the_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE ducklake_metadata (key TEXT, value TEXT)")
        conn.execute("INSERT INTO ducklake_metadata VALUES ('version', '0.3')")
    store = SqliteAuthCodeStore(path)
    assert store.load(SCOPE) is None

    SharedAuthCode(store, SCOPE, CountingFetch()).current()

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM ducklake_metadata").fetchall() == [("version", "0.3")]
    assert store.load(SCOPE).code == "code-1"
