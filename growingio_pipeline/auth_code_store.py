"""Where every run of one key pair finds the GrowingIO auth code they share.

GrowingIO invalidates a key pair's previous code whenever it issues a new one, so runs (threads,
processes, machines) must share one code and replace it under a lock that spans them all. The
default store is a table of the lake's SQLite catalog file, the one file every run already reaches;
the code never goes in the warehouse's ``growingio.*`` tables.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

DEFAULT_CATALOG = "data/lake/catalog.sqlite"
"""``GROWINGIO_LAKE_CATALOG``'s default: the code lives in the lake's catalog file."""
POSTGRES_PREFIX = "postgres:"
TABLE = "growingio_auth_code"
LOCK_TIMEOUT_S = 300.0
"""How long a run waits for another run that is fetching a code (one throttled, retried POST)."""
_CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (scope TEXT PRIMARY KEY, code TEXT NOT NULL, issued_at REAL NOT NULL)"
)
_UPSERT = (
    f"INSERT INTO {TABLE} (scope, code, issued_at) VALUES (?, ?, ?) "
    "ON CONFLICT (scope) DO UPDATE SET code = excluded.code, issued_at = excluded.issued_at"
)


@dataclass(frozen=True)
class StoredCode:
    """The shared code and when it was issued (epoch seconds)."""

    code: str = field(repr=False)
    issued_at: float


class AuthCodeStore(Protocol):
    """The shared code of each key pair (``scope``), replaced under a lock every user of the store honours."""

    def load(self, scope: str) -> StoredCode | None:
        """The stored code, without locking; None if there is none."""

    def exchange(self, scope: str, keep: Callable[[StoredCode], bool], fetch: Callable[[], str]) -> StoredCode:
        """Under the lock: the stored code if there is one ``keep`` accepts, else ``fetch()``'s, stored and returned."""


class AuthCodeStoreError(Exception):
    """The store could not be read or locked; the message names the file, never the code."""


class SqliteAuthCodeStore:
    """An :class:`AuthCodeStore` in a table of a SQLite file; ``BEGIN IMMEDIATE`` is the cross-process lock.

    The lock is held while the new code is fetched: the few other runs that need a code meanwhile wait,
    then find the new one instead of fetching their own (which would invalidate it). SQLite releases the
    lock of a process that dies, so a crashed run never leaves the others waiting.
    """

    def __init__(self, path: str | Path, lock_timeout_s: float = LOCK_TIMEOUT_S):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s

    def load(self, scope: str) -> StoredCode | None:
        """The stored code, without locking; None if there is none."""
        if not self.path.exists():
            return None
        with self._connection() as conn:
            try:
                return _select(conn, scope)
            except sqlite3.Error as error:
                if "no such table" in str(error):
                    return None
                raise AuthCodeStoreError(f"could not read the auth code in {self.path}: {error}") from None

    def exchange(self, scope: str, keep: Callable[[StoredCode], bool], fetch: Callable[[], str]) -> StoredCode:
        """Under the lock: the stored code if there is one ``keep`` accepts, else ``fetch()``'s, stored and returned."""
        with self._connection() as conn:
            self._execute(conn, "BEGIN IMMEDIATE")
            try:
                self._execute(conn, _CREATE_TABLE)
                stored = _select(conn, scope)
                if stored is None or not keep(stored):
                    stored = StoredCode(fetch(), time.time())
                    self._execute(conn, _UPSERT, [scope, stored.code, stored.issued_at])
                self._execute(conn, "COMMIT")
            except BaseException:
                conn.rollback()
                raise
        return stored

    def _execute(self, conn: sqlite3.Connection, sql: str, parameters: Sequence[object] = ()) -> None:
        try:
            conn.execute(sql, parameters)
        except sqlite3.Error as error:
            # "database is locked" after lock_timeout_s, a full disk, a file that is not SQLite.
            raise AuthCodeStoreError(f"could not update the auth code in {self.path}: {error}") from None

    def _connection(self) -> closing[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: transactions are begun explicitly, so BEGIN IMMEDIATE takes the write lock.
            return closing(sqlite3.connect(self.path, timeout=self.lock_timeout_s, isolation_level=None))
        except sqlite3.Error as error:
            raise AuthCodeStoreError(f"could not open {self.path}: {error}") from None


def _select(conn: sqlite3.Connection, scope: str) -> StoredCode | None:
    row = conn.execute(f"SELECT code, issued_at FROM {TABLE} WHERE scope = ?", [scope]).fetchone()
    return StoredCode(row[0], row[1]) if row else None


def open_auth_code_store(catalog: str) -> AuthCodeStore:
    """The store in the lake catalog ``catalog`` (``GROWINGIO_LAKE_CATALOG``): a SQLite file path.

    A PostgreSQL catalog (``postgres:...``) needs a PostgreSQL store (the same table, locked with
    ``SELECT ... FOR UPDATE``), which is not built yet: refused with a clear message.
    """
    if catalog.startswith(POSTGRES_PREFIX):
        raise ValueError(
            "key-pair authentication keeps its shared code in a SQLite lake catalog; a PostgreSQL catalog "
            "(GROWINGIO_LAKE_CATALOG=postgres:...) is not supported for it yet: use an API token "
            "(GROWINGIO_TOKEN) or a SQLite catalog"
        )
    if not catalog.strip():
        raise ValueError("the lake catalog (GROWINGIO_LAKE_CATALOG) must be a SQLite file path")
    return SqliteAuthCodeStore(catalog)
