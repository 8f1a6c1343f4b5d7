"""The warehouse as a DuckLake: Parquet data files plus a catalog database, opened from DuckDB.

The catalog is a SQLite file by default (nothing to start) or a PostgreSQL database (many machines); the data
files live in a local folder or under an ``s3://`` prefix. Every connection is an in-memory DuckDB with the lake
attached as database ``lake`` and ``USE lake`` done, so ``growingio.<type>`` resolves as before. DuckLake gives
each transaction a snapshot: readers never block writers, and concurrent writers either commit or get a
conflict, which ``retry_conflicts`` retries (bounded, jittered).

Secrets (catalog password, S3 secret key) go into DuckDB temporary secrets, never into a connection string,
and any error raised while attaching is redacted with the project's one redaction helper.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import duckdb

from growingio_pipeline.duckdb_extensions import connection_config
from growingio_pipeline.redaction import redact_text

logger = logging.getLogger(__name__)

LAKE_DATABASE = "lake"
METADATA_DATABASE = f"__ducklake_metadata_{LAKE_DATABASE}"
"""The lake's catalog tables, as DuckLake attaches them beside the lake (file paths, sizes, partition values)."""
DEFAULT_CATALOG = "data/lake/catalog.sqlite"
DEFAULT_DATA_PATH = "data/lake/files/"
POSTGRES_PREFIX = "postgres:"
MIGRATION_COMMAND = "growingio-migrate-duckdb"
LEGACY_PATH_VARIABLE = "GROWINGIO_DUCKDB_PATH"
LAKE_SECRET_VARIABLES = {
    "catalog_password": "GROWINGIO_LAKE_CATALOG_PASSWORD",
    "s3_secret_access_key": "GROWINGIO_S3_SECRET_ACCESS_KEY",
}
"""The secret lake settings and the variables they are read from."""

CONFLICT_RETRIES = 8
"""Attempts at one transaction that keeps meeting commit conflicts, before the error is raised."""
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 3.0
_CONFLICT_MARKERS = ("conflict", "database is locked", "could not serialize", "deadlock detected")

T = TypeVar("T")


@dataclass(frozen=True)
class LakeSettings:
    """Where the lake's catalog and data files are, and the credentials to reach them."""

    catalog: str = DEFAULT_CATALOG
    """a SQLite file path, or ``postgres:`` and a libpq connection string without the password"""
    data_path: str = DEFAULT_DATA_PATH
    """a folder, or ``s3://bucket/prefix/``"""
    catalog_password: str | None = field(default=None, repr=False)
    s3_endpoint: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_region: str = "us-east-1"
    s3_use_ssl: bool = True
    s3_url_style: str = "path"

    def __post_init__(self) -> None:
        if not self.catalog:
            raise ValueError("GROWINGIO_LAKE_CATALOG is empty: give a SQLite file path or postgres:<libpq string>")
        if not self.data_path:
            raise ValueError("GROWINGIO_LAKE_DATA_PATH is empty: give a folder or s3://bucket/prefix/")
        if self.is_postgres and "password" in self.catalog.lower():
            raise ValueError(
                "GROWINGIO_LAKE_CATALOG must not hold the password: set GROWINGIO_LAKE_CATALOG_PASSWORD instead"
            )
        if self.s3_url_style not in ("path", "vhost"):
            raise ValueError(f"GROWINGIO_S3_URL_STYLE must be path or vhost, got {self.s3_url_style!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LakeSettings:
        """Settings from the ``GROWINGIO_LAKE_*`` and ``GROWINGIO_S3_*`` variables (see README)."""
        env = os.environ if environ is None else environ
        use_ssl = env.get("GROWINGIO_S3_USE_SSL", "true").strip().lower()
        if use_ssl not in ("true", "false", "1", "0"):
            raise ValueError(f"GROWINGIO_S3_USE_SSL must be true or false, got {use_ssl!r}")
        return cls(
            catalog=env.get("GROWINGIO_LAKE_CATALOG") or DEFAULT_CATALOG,
            data_path=env.get("GROWINGIO_LAKE_DATA_PATH") or DEFAULT_DATA_PATH,
            catalog_password=env.get(LAKE_SECRET_VARIABLES["catalog_password"]) or None,
            s3_endpoint=env.get("GROWINGIO_S3_ENDPOINT") or None,
            s3_access_key_id=env.get("GROWINGIO_S3_ACCESS_KEY_ID") or None,
            s3_secret_access_key=env.get(LAKE_SECRET_VARIABLES["s3_secret_access_key"]) or None,
            s3_region=env.get("GROWINGIO_S3_REGION") or "us-east-1",
            s3_use_ssl=use_ssl in ("true", "1"),
            s3_url_style=env.get("GROWINGIO_S3_URL_STYLE") or "path",
        )

    def environment(self) -> dict[str, str]:
        """These settings as the variables ``from_env`` reads, local paths made absolute, for a child process
        that runs in another folder (dbt runs in its project folder). It holds the secrets: give it to a child's
        environment, never to a log."""
        return {
            "GROWINGIO_LAKE_CATALOG": self.catalog if self.is_postgres else str(Path(self.catalog).absolute()),
            "GROWINGIO_LAKE_DATA_PATH": self.data_path if self.is_s3 else f"{Path(self.data_path).absolute()}/",
            LAKE_SECRET_VARIABLES["catalog_password"]: self.catalog_password or "",
            "GROWINGIO_S3_ENDPOINT": self.s3_endpoint or "",
            "GROWINGIO_S3_ACCESS_KEY_ID": self.s3_access_key_id or "",
            LAKE_SECRET_VARIABLES["s3_secret_access_key"]: self.s3_secret_access_key or "",
            "GROWINGIO_S3_REGION": self.s3_region,
            "GROWINGIO_S3_USE_SSL": "true" if self.s3_use_ssl else "false",
            "GROWINGIO_S3_URL_STYLE": self.s3_url_style,
        }

    @classmethod
    def in_folder(cls, folder: Path, **overrides: object) -> LakeSettings:
        """A SQLite-catalog lake entirely inside ``folder`` (``catalog.sqlite`` and ``files/``)."""
        return cls(catalog=str(folder / "catalog.sqlite"), data_path=f"{folder / 'files'}/", **overrides)  # type: ignore[arg-type]

    @property
    def is_postgres(self) -> bool:
        """Whether the catalog is a PostgreSQL database."""
        return self.catalog.startswith(POSTGRES_PREFIX)

    @property
    def is_s3(self) -> bool:
        """Whether the data files are in an S3-compatible object store."""
        return self.data_path.startswith("s3://")

    @property
    def local_root(self) -> Path:
        """A local folder for this host's working files: beside the SQLite catalog, else ``data/lake``."""
        return Path(DEFAULT_CATALOG).parent if self.is_postgres else Path(self.catalog).parent

    def secrets(self) -> tuple[str, ...]:
        """The values that must never be shown."""
        return tuple(value for value in (self.catalog_password, self.s3_secret_access_key) if value)

    def describe(self) -> str:
        """Where the lake is, safe to show (the connection string holds no password)."""
        return f"catalog {self.catalog}, data {self.data_path}"


def sql_literal(value: str) -> str:
    """``value`` as a SQL string literal, for the statements that take no parameters (ATTACH, SECRET, COPY)."""
    return "'" + value.replace("'", "''") + "'"


def _data_path(settings: LakeSettings, *, create: bool) -> str:
    if settings.is_s3:
        return settings.data_path.rstrip("/") + "/"
    folder = Path(settings.data_path).absolute()
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return f"{folder}/"


def _metadata_uri(settings: LakeSettings, *, create: bool) -> str:
    if settings.is_postgres:
        return f"ducklake:{settings.catalog}"
    catalog = Path(settings.catalog).absolute()
    if create:
        catalog.parent.mkdir(parents=True, exist_ok=True)
    elif not catalog.exists():
        raise FileNotFoundError(
            f"no lake at {catalog} yet: load a partition first (or set GROWINGIO_LAKE_CATALOG to the lake's catalog)"
        )
    return f"ducklake:sqlite:{catalog}"


def _create_secrets(conn: duckdb.DuckDBPyConnection, settings: LakeSettings) -> None:
    """Temporary DuckDB secrets for the catalog password and S3; they live only in this connection's memory."""
    if settings.is_postgres and settings.catalog_password:
        # The unnamed postgres secret: the PostgreSQL extension merges it with the catalog's connection string.
        conn.execute(
            f"CREATE OR REPLACE TEMPORARY SECRET (TYPE postgres, PASSWORD {sql_literal(settings.catalog_password)})"
        )
    if settings.is_s3:
        options = {
            "KEY_ID": settings.s3_access_key_id,
            "SECRET": settings.s3_secret_access_key,
            "ENDPOINT": settings.s3_endpoint,
            "REGION": settings.s3_region,
            "URL_STYLE": settings.s3_url_style,
        }
        listed = "".join(f", {name} {sql_literal(value)}" for name, value in options.items() if value)
        use_ssl = "true" if settings.s3_use_ssl else "false"
        scope = sql_literal(_data_path(settings, create=False))
        conn.execute(
            f"CREATE OR REPLACE TEMPORARY SECRET growingio_s3 (TYPE s3{listed}, USE_SSL {use_ssl}, SCOPE {scope})"
        )


def attach_lake(conn: duckdb.DuckDBPyConnection, settings: LakeSettings, *, read_only: bool = False) -> None:
    """Attach the lake to ``conn`` as database ``lake`` and make it the default (``USE lake``).

    Created on first use (not read-only). Errors name the lake but never a password or key.
    """
    try:
        # No progress bar on standard output: it would fill run logs and break `growingio-sql --format csv`.
        conn.execute("SET enable_progress_bar = false")
        _create_secrets(conn, settings)
        options = [f"DATA_PATH {sql_literal(_data_path(settings, create=not read_only))}"]
        if read_only:
            options.append("READ_ONLY")
        else:
            # Rows go to Parquet files, never inlined in the catalog: inlined rows with maps DuckDB refuses
            # failed at commit, and a load of an hour is never a handful of rows worth inlining.
            options.append("DATA_INLINING_ROW_LIMIT 0")
        uri = _metadata_uri(settings, create=not read_only)
        attach = f"ATTACH {sql_literal(uri)} AS {LAKE_DATABASE} ({', '.join(options)})"
        with _creation_lock(settings, read_only=read_only):
            retry_conflicts(lambda: conn.execute(attach))
        conn.execute(f"USE {LAKE_DATABASE}")
        if settings.is_postgres and not read_only:
            ensure_catalog_indexes(conn)
    except duckdb.Error as error:
        message = redact_text(str(error), settings.secrets())
        raise LakeUnavailable(f"could not open the lake ({settings.describe()}): {message}") from None


FILE_STATISTICS_INDEX = "growingio_file_column_stats_table_column"
"""The index on a PostgreSQL catalog's ``ducklake_file_column_stats (table_id, column_id)``."""


def ensure_catalog_indexes(conn: duckdb.DuckDBPyConnection) -> None:
    """Create ``FILE_STATISTICS_INDEX`` in the attached PostgreSQL catalog unless it is there.

    Before a filtered scan DuckLake reads the scanned table's file statistics. Given this index, it asks
    PostgreSQL for those rows alone; without it, it copies the statistics of every file of the lake, so every
    query slows as the lake grows (measured by ``benchmarks/catalog_benchmark.py``). A writer creates it once;
    afterwards the check is one small catalog query.
    """
    catalog = sql_literal(METADATA_DATABASE)
    exists = sql_literal(f"SELECT 1 FROM pg_indexes WHERE indexname = {sql_literal(FILE_STATISTICS_INDEX)}")

    def index_exists() -> bool:
        return conn.execute(f"SELECT count(*) FROM postgres_query({catalog}, {exists})").fetchone() == (1,)

    if index_exists():
        return
    create = f"CREATE INDEX IF NOT EXISTS {FILE_STATISTICS_INDEX} ON ducklake_file_column_stats (table_id, column_id)"
    try:
        conn.execute(f"CALL postgres_execute({catalog}, {sql_literal(create)})")
    except duckdb.Error as error:
        # Another host's writer may have created it at the same moment. Without it the lake works, only slower,
        # so a role that may not create indexes (not the tables' owner) still loads.
        if not index_exists():
            logger.warning(
                "could not create index %s in the lake's PostgreSQL catalog (filtered reads stay slower as the lake "
                "grows; the tables' owner can create it): %s",
                FILE_STATISTICS_INDEX,
                error,
            )


@contextlib.contextmanager
def _creation_lock(settings: LakeSettings, *, read_only: bool) -> Iterator[None]:
    """Serialise the first ATTACH of a new SQLite catalog, which creates it in WAL mode.

    Two processes creating the catalog at once would both create DuckLake's metadata tables. WAL (kept in the
    file) lets readers read the catalog while a writer commits: in SQLite's default mode a reader's query fails
    with "database is locked" during every commit. Once the catalog exists, no lock is taken.
    """
    catalog = Path(settings.catalog)
    if read_only or settings.is_postgres or catalog.exists():
        yield
        return
    with _file_lock(catalog.with_name(catalog.name + ".create-lock")):
        if not catalog.exists():
            with contextlib.closing(sqlite3.connect(catalog)) as database:
                database.execute("PRAGMA journal_mode=WAL")
        yield


class LakeUnavailable(RuntimeError):
    """The lake could not be attached: a wrong path, an unreachable catalog or object store, bad credentials."""


def connect_lake(
    settings: LakeSettings, *, read_only: bool = False, config: Mapping[str, str] | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake attached as ``lake`` and in use; the caller closes it.

    ``config`` adds DuckDB settings (e.g. ``memory_limit``) to those that load the extensions offline.
    """
    conn = duckdb.connect(":memory:", config={**connection_config(), **(config or {})})
    try:
        attach_lake(conn, settings, read_only=read_only)
    except BaseException:
        conn.close()
        raise
    return conn


def is_commit_conflict(error: BaseException) -> bool:
    """Whether ``error`` is a concurrent writer's conflict, which the same transaction may retry."""
    if not isinstance(error, duckdb.Error):
        return False
    text = str(error).lower()
    return any(marker in text for marker in _CONFLICT_MARKERS)


def retry_conflicts(operation: Callable[[], T], *, attempts: int = CONFLICT_RETRIES) -> T:
    """Run ``operation`` (one whole transaction), again after a jittered pause when it meets a commit conflict.

    Bounded: the last conflict is raised after ``attempts`` tries. Any other error is raised at once.
    """
    pause = _RETRY_FIRST_S
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except duckdb.Error as error:
            if attempt == attempts or not is_commit_conflict(error):
                raise
        # Full jitter: writers that collided once do not collide again in lockstep.
        time.sleep(random.uniform(0, pause))
        pause = min(pause * 2, _RETRY_MAX_S)
    raise AssertionError("unreachable")


def write_transaction(conn: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """``work(conn)`` in one transaction, committed or rolled back; run again on a commit conflict.

    On a SQLite catalog the writers of this host take turns, with a file lock held for the transaction only:
    SQLite admits one writer at a time, and DuckLake's commit then fails at once ("database is locked") rather
    than waiting, so three writers kept failing each other's commits. Readers never take the lock. A SQLite
    catalog lives on one host, so a host-local lock covers every writer; a PostgreSQL catalog needs none.
    """
    lock_path = _sqlite_write_lock_path(conn)

    def attempt() -> T:
        with _file_lock(lock_path):
            conn.begin()
            try:
                result = work(conn)
                conn.commit()
            except BaseException:
                rollback_quietly(conn)
                raise
        return result

    return retry_conflicts(attempt)


def _sqlite_write_lock_path(conn: duckdb.DuckDBPyConnection) -> Path | None:
    rows = conn.execute("SELECT path FROM duckdb_databases() WHERE database_name = ?", [LAKE_DATABASE]).fetchall()
    if not rows or not str(rows[0][0]).startswith("sqlite:"):
        return None
    return _write_lock_path(Path(str(rows[0][0]).removeprefix("sqlite:")))


def _write_lock_path(catalog: Path) -> Path:
    return catalog.with_name(catalog.name + ".write-lock")


class HostWriteTurn:
    """This host's write turn (see ``write_transaction``) for a writer in another process, such as dbt, which
    takes it before each of its transactions and gives it back after the commit.

    A SQLite catalog needs it (a SQLite writer whose transaction spans another's commit fails at its own commit:
    "database is locked"); a PostgreSQL catalog, whose writers never wait, takes none. Taking a turn already
    held does nothing, and a turn never given back ends with the process.
    """

    def __init__(self, settings: LakeSettings) -> None:
        self._path = None if settings.is_postgres else _write_lock_path(Path(settings.catalog).absolute())
        self._held: IO[str] | None = None

    def take(self) -> None:
        """Wait for the turn, then hold it."""
        if self._path is None or self._held is not None:
            return
        held = open(self._path, "a")  # noqa: SIM115 (held open across calls until ``give``)
        fcntl.flock(held, fcntl.LOCK_EX)
        self._held = held

    def give(self) -> None:
        """Give the turn back to this host's other writers."""
        if self._held is not None:
            fcntl.flock(self._held, fcntl.LOCK_UN)
            self._held.close()
            self._held = None


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (none when ``path`` is None)."""
    if path is None:
        yield
        return
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def rollback_quietly(conn: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, if any: a failed COMMIT has already ended it."""
    with contextlib.suppress(duckdb.TransactionException):
        conn.rollback()


def legacy_path_warning(environ: Mapping[str, str] | None = None) -> str | None:
    """The warning to log when ``GROWINGIO_DUCKDB_PATH`` is still set; None when it is not."""
    env = os.environ if environ is None else environ
    path = env.get(LEGACY_PATH_VARIABLE)
    if not path:
        return None
    return (
        f"{LEGACY_PATH_VARIABLE}={path} is no longer used: the warehouse is now a DuckLake, configured with "
        "GROWINGIO_LAKE_CATALOG and GROWINGIO_LAKE_DATA_PATH (defaults data/lake/catalog.sqlite and "
        f"data/lake/files/). Copy the old file's tables into the lake with `{MIGRATION_COMMAND} {path}`, "
        f"then unset {LEGACY_PATH_VARIABLE}."
    )
