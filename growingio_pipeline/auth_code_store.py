"""Where every run of one key pair finds the GrowingIO auth code they share.

GrowingIO invalidates a key pair's previous code whenever it issues a new one, so runs (threads,
processes, machines) must share one code and replace it under a lock that spans them all. The store
is a table of the lake's catalog, the one database every run already reaches: of its SQLite file by
default, of its PostgreSQL database when runs are spread over machines. The code never goes in the
warehouse's ``growingio.*`` tables.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from growingio_pipeline.lake import LAKE_SECRET_VARIABLES, POSTGRES_PREFIX, LakeSettings
from growingio_pipeline.redaction import redact_text

TABLE = "growingio_auth_code"
LOCK_TIMEOUT_S = 300.0
"""How long a run waits for another run that is fetching a code (one throttled, retried POST)."""
T = TypeVar("T")
# One text per statement for both stores, with SQLite's ``?`` marks; PostgreSQL's driver wants ``%s`` (_pg).
# DOUBLE PRECISION: REAL would be 4 bytes in PostgreSQL, too coarse for epoch seconds (SQLite reads it as REAL).
_CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(scope TEXT PRIMARY KEY, code TEXT NOT NULL, issued_at DOUBLE PRECISION NOT NULL)"
)
_SELECT = f"SELECT code, issued_at FROM {TABLE} WHERE scope = ?"
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
    """The store could not be read or locked; the message names the file or database, never a code or password."""


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
            # WAL, as the lake creates its catalog: when this store creates the file first, lake readers must
            # still read while a writer commits. Kept in the file; set outside the transaction.
            self._execute(conn, "PRAGMA journal_mode=WAL")
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
    row = conn.execute(_SELECT, [scope]).fetchone()
    return StoredCode(row[0], row[1]) if row else None


class PostgresAuthCodeStore:
    """An :class:`AuthCodeStore` in a table of the lake's PostgreSQL catalog database, shared by every machine.

    ``exchange`` runs in one transaction that first takes a transaction-level advisory lock on the scope
    (``pg_advisory_xact_lock``), then re-reads, fetches only if ``keep`` rejects, upserts and commits. An
    advisory lock rather than ``SELECT ... FOR UPDATE``: it needs no row to exist, so the first runs, on an empty
    table, wait for each other too (a row lock would need a placeholder row, which ``load`` would then have to
    skip); it never blocks ``load``; and it ends with the transaction, or with the session of a run that dies.
    The wait is bounded by ``lock_timeout``. The password is passed to the driver on its own, never in a string.
    """

    def __init__(self, dsn: str, password: str | None = None, lock_timeout_s: float = LOCK_TIMEOUT_S):
        try:
            parts = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.Error as error:
            raise ValueError(
                f"the lake catalog (GROWINGIO_LAKE_CATALOG) is not a libpq connection string after "
                f"{POSTGRES_PREFIX!r}: {_redacted(error, password)}"
            ) from None
        self.dsn = dsn
        self._password = password
        self.lock_timeout_s = lock_timeout_s
        port = f":{parts['port']}" if "port" in parts else ""
        self.where = f"PostgreSQL database {parts.get('dbname', '(default)')} on {parts.get('host', 'localhost')}{port}"
        """The database, safe to show: no password, no options."""

    def load(self, scope: str) -> StoredCode | None:
        """The stored code, without locking; None if there is none."""
        with self._connection() as conn:
            try:
                with conn.cursor() as cursor:
                    cursor.execute(_pg(_SELECT), [scope])
                    row = cursor.fetchone()
            except psycopg2.errors.UndefinedTable:
                return None
            except psycopg2.Error as error:
                raise self._error("could not read the auth code", error) from None
        return StoredCode(row[0], row[1]) if row else None

    def exchange(self, scope: str, keep: Callable[[StoredCode], bool], fetch: Callable[[], str]) -> StoredCode:
        """Under the lock: the stored code if there is one ``keep`` accepts, else ``fetch()``'s, stored and returned."""
        with self._connection() as conn:
            # Its own transaction, under a lock of its own: two first runs creating the table at once would
            # otherwise collide in PostgreSQL's catalog (a unique violation), and the scope's lock cannot cover
            # it, since another scope may be creating the table too.
            self._locked(conn, _advisory_key(TABLE), lambda cursor: cursor.execute(_CREATE_TABLE))
            return self._locked(conn, _advisory_key(TABLE, scope), lambda cursor: _replace(cursor, scope, keep, fetch))

    def _locked(
        self,
        conn: psycopg2.extensions.connection,
        key: int,
        work: Callable[[psycopg2.extensions.cursor], T],
    ) -> T:
        """``work`` in one transaction that holds advisory lock ``key`` until it commits or rolls back."""
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, true)", [f"{round(self.lock_timeout_s * 1000)}ms"]
                )
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
                result = work(cursor)
            conn.commit()
        except psycopg2.errors.LockNotAvailable:
            _rollback_quietly(conn)
            raise AuthCodeStoreError(
                f"could not update the auth code in {self.where}: another run held its lock for more than "
                f"{self.lock_timeout_s:g} s"
            ) from None
        except psycopg2.Error as error:
            _rollback_quietly(conn)
            raise self._error("could not update the auth code", error) from None
        except BaseException:
            _rollback_quietly(conn)
            raise
        return result

    def _connection(self) -> closing[psycopg2.extensions.connection]:
        try:
            conn = psycopg2.connect(self.dsn, password=self._password)  # None: libpq's own (PGPASSWORD, .pgpass)
        except psycopg2.Error as error:
            raise AuthCodeStoreError(
                f"could not connect to {self.where}, which holds the shared auth code: check GROWINGIO_LAKE_CATALOG "
                f"and {LAKE_SECRET_VARIABLES['catalog_password']} ({_redacted(error, self._password)})"
            ) from None
        # Read committed (PostgreSQL's default, made explicit): each statement sees what other runs committed
        # before it, so the re-read after the lock sees the code a run committed while this one waited.
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_READ_COMMITTED)
        return closing(conn)

    def _error(self, what: str, error: psycopg2.Error) -> AuthCodeStoreError:
        return AuthCodeStoreError(f"{what} in {self.where}: {_redacted(error, self._password)}")


def _replace(
    cursor: psycopg2.extensions.cursor, scope: str, keep: Callable[[StoredCode], bool], fetch: Callable[[], str]
) -> StoredCode:
    """Inside the scope's lock: the stored code if ``keep`` accepts it, else a new one, upserted."""
    cursor.execute(_pg(_SELECT), [scope])
    row = cursor.fetchone()
    stored = StoredCode(row[0], row[1]) if row else None
    if stored is None or not keep(stored):
        stored = StoredCode(fetch(), time.time())
        cursor.execute(_pg(_UPSERT), [scope, stored.code, stored.issued_at])
    return stored


def _pg(statement: str) -> str:
    """``statement`` with psycopg2's ``%s`` marks instead of SQLite's ``?`` (the statements hold no other ``?``)."""
    return statement.replace("?", "%s")


def _advisory_key(*names: str) -> int:
    """A signed 64-bit advisory lock key for ``names``, the same on every machine (unlike Python's ``hash``).

    Computed here rather than with ``hashtext``, an undocumented PostgreSQL function; a collision with another
    key only makes two lockers wait for each other.
    """
    digest = hashlib.sha256("\n".join(names).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _redacted(error: psycopg2.Error, password: str | None) -> str:
    """The driver's message without the password (libpq messages may echo the connection string)."""
    return redact_text(str(error).strip(), (password,) if password else ())


def _rollback_quietly(conn: psycopg2.extensions.connection) -> None:
    """Roll back, ignoring a connection that is already gone (closing it ends the transaction anyway)."""
    with suppress(psycopg2.Error):
        conn.rollback()


def open_auth_code_store(catalog: str, password: str | None = None) -> AuthCodeStore:
    """The store in the lake catalog ``catalog`` (``GROWINGIO_LAKE_CATALOG``), without connecting yet.

    A SQLite file path gives a :class:`SqliteAuthCodeStore`; ``postgres:`` and a libpq connection string (without
    the password, which is ``password``: ``GROWINGIO_LAKE_CATALOG_PASSWORD``) a :class:`PostgresAuthCodeStore`.
    """
    if not catalog.strip():
        raise ValueError(
            "the lake catalog (GROWINGIO_LAKE_CATALOG) must be a SQLite file path or postgres:<libpq string>"
        )
    if LakeSettings(catalog=catalog).is_postgres:  # the lake's own checks first: no password in the string
        return PostgresAuthCodeStore(catalog.removeprefix(POSTGRES_PREFIX), password)
    return SqliteAuthCodeStore(catalog)
