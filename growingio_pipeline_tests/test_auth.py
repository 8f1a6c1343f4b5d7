"""Key-pair authentication without Dagster: the vendor's signature, and one code shared through the SQLite store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
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
from growingio_pipeline.auth_code_store import TABLE, SqliteAuthCodeStore, open_auth_code_store

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
SHARE_ONE_CODE = """
import sys, time
from pathlib import Path
from growingio_pipeline.auth import SharedAuthCode
from growingio_pipeline.auth_code_store import SqliteAuthCodeStore

catalog, fetch_log, ready, go = sys.argv[1:5]
def fetch():
    with open(fetch_log, "a") as log:
        log.write("fetched\\n")
    time.sleep(0.3)  # a slow exchange: the others must wait for it, not fetch their own
    return f"code-from-{sys.argv[5]}"
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.01)
print(SharedAuthCode(SqliteAuthCodeStore(catalog), "scope-1", fetch).current())
"""


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


def test_a_stored_code_is_used_until_near_expiry(tmp_path: Path) -> None:
    store = SqliteAuthCodeStore(tmp_path / "catalog.sqlite")
    fetch = CountingFetch()
    shared = SharedAuthCode(store, SCOPE, fetch)

    assert [shared.current(), shared.current()] == ["code-1", "code-1"]
    near_expiry = time.time() - (CODE_LIFETIME_S - REFRESH_BEFORE_EXPIRY_S) - 60
    with sqlite3.connect(store.path) as conn:
        conn.execute(f"UPDATE {TABLE} SET issued_at = ?", [near_expiry])
    assert shared.current() == "code-2"
    assert fetch.calls == 2


def test_a_refused_code_is_replaced_once_and_a_replaced_one_is_not_replaced_again(tmp_path: Path) -> None:
    store = SqliteAuthCodeStore(tmp_path / "catalog.sqlite")
    fetch = CountingFetch()
    first_run, second_run = SharedAuthCode(store, SCOPE, fetch), SharedAuthCode(store, SCOPE, fetch)
    used = first_run.current()
    assert second_run.current() == used

    assert first_run.replace(used) == "code-2"
    assert second_run.replace(used) == "code-2", "the other run picks up the replacement instead of fetching"
    assert fetch.calls == 2


def test_a_failed_fetch_stores_nothing(tmp_path: Path) -> None:
    store = SqliteAuthCodeStore(tmp_path / "catalog.sqlite")

    def refuse() -> str:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        SharedAuthCode(store, SCOPE, refuse).current()
    assert store.load(SCOPE) is None
    assert SharedAuthCode(store, SCOPE, CountingFetch()).current() == "code-1"


def test_processes_starting_together_fetch_one_code(tmp_path: Path) -> None:
    catalog, fetch_log, go = tmp_path / "lake" / "catalog.sqlite", tmp_path / "fetches.log", tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SHARE_ONE_CODE, *map(str, (catalog, fetch_log, tmp_path / f"ready-{i}", go, i))],
            stdout=subprocess.PIPE,
            text=True,
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


def test_a_postgres_catalog_is_refused_clearly_until_its_store_exists() -> None:
    with pytest.raises(ValueError, match=r"PostgreSQL catalog .* is not supported for it yet"):
        open_auth_code_store("postgres:host=127.0.0.1 port=5433 dbname=lake user=growingio")


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
