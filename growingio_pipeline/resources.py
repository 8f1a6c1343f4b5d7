"""Dagster resources: the GrowingIO export client and the DuckDB file, configured from the environment."""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from growingio_pipeline.auth_code_store import DEFAULT_CATALOG
from growingio_pipeline.export_api import KEY_PAIR_FIELDS, ClientSettings, ExportClient
from growingio_pipeline.warehouse import SCHEMA, WRITE_CONNECTION_CONFIG

DEFAULT_BASE_URL = "https://www.growingio.com"
DEFAULT_DUCKDB_PATH = "data/growingio_events.duckdb"
STAGING_FOLDER = ".growingio-staging"
_LOCK_RETRY_FIRST_S = 0.05
_LOCK_RETRY_MAX_S = 1.0
_ENV_VARS = {
    "token": "GROWINGIO_TOKEN",
    "project_id": "GROWINGIO_PROJECT_ID",
    "client_id": "GROWINGIO_CLIENT_ID",
    "private_key": "GROWINGIO_PRIVATE_KEY",
    "project_uid": "GROWINGIO_PROJECT_UID",
}


class GrowingIOExportResource(dg.ConfigurableResource):
    """Connection settings for GrowingIO's raw data export API (v2)."""

    base_url: str = Field(default=DEFAULT_BASE_URL, description="API base URL (on-premise hosts differ).")
    token: str | None = Field(default=None, description="API token, sent as the Authorization header.")
    project_id: str | None = Field(default=None, description="Project ID (`ai`), a hex string.")
    client_id: str | None = Field(
        default=None, description="The project's public key, sent as X-Client-Id (key-pair mode, or if needed)."
    )
    private_key: str | None = Field(
        default=None, description="Key-pair mode (no token): the project's private key, signs the code request."
    )
    project_uid: str | None = Field(default=None, description="Key-pair mode: the project UID.")
    auth_code_catalog: str = Field(
        default=DEFAULT_CATALOG,
        description="Key-pair mode: the lake catalog (SQLite file) where every run shares one auth code.",
    )
    calls_per_second: float = Field(default=2.0, description="Vendor limit: 2 API calls per second.")
    running_deadline_s: float = Field(
        default=300.0, description="How long a run polls a RUNNING export before asking Dagster to retry later."
    )
    running_poll_interval_s: float = Field(default=30.0, description="Pause between polls of a RUNNING export.")
    running_retry_after_s: int = Field(
        default=600, description="When Dagster retries a step whose export was still RUNNING."
    )
    running_max_retries: int = Field(default=6, description="How many times a RUNNING export is retried.")
    max_retries: int = Field(default=5, description="Retries of one API call or download on 429, 5xx, timeouts.")
    backoff_base_s: float = Field(default=0.5, description="First retry delay; doubles each retry, with jitter.")

    def client_settings(self) -> ClientSettings:
        """Settings for ``ExportClient``; a clear error naming what is missing, before any request.

        Key-pair mode is used when there is no token and any of its settings is given.
        """
        key_pair = not self.token and any(getattr(self, name) for name in KEY_PAIR_FIELDS)
        needed = ("project_id", *KEY_PAIR_FIELDS) if key_pair else ("token", "project_id")
        missing = [_ENV_VARS[name] for name in needed if not getattr(self, name)]
        if missing:
            what = "key-pair credentials incomplete (no GROWINGIO_TOKEN)" if key_pair else "credentials missing"
            raise dg.Failure(
                description=(
                    f"GrowingIO {what}: set {' and '.join(missing)} in the environment of the "
                    "Dagster code location (see README, 'Connecting to GrowingIO')."
                ),
                allow_retries=False,
            )
        return ClientSettings(
            base_url=self.base_url,
            token=self.token or None,
            project_id=self.project_id,
            client_id=self.client_id,
            private_key=None if self.token else self.private_key,
            project_uid=self.project_uid,
            auth_code_catalog=self.auth_code_catalog,
            calls_per_second=self.calls_per_second,
            running_deadline_s=self.running_deadline_s,
            running_poll_interval_s=self.running_poll_interval_s,
            max_retries=self.max_retries,
            backoff_base_s=self.backoff_base_s,
        )

    @contextmanager
    def open_client(self) -> Iterator[ExportClient]:
        """An export client for one run, closed afterwards."""
        with ExportClient(self.client_settings()) as client:
            yield client


class WarehouseResource(DuckDBResource):
    """The DuckDB file; a connection is always closed, so a failed write never holds the file lock."""

    connection_config: dict[str, Any] = Field(
        default_factory=lambda: dict(WRITE_CONNECTION_CONFIG),
        description="DuckDB settings for the loading connection; the memory limit keeps a load's peak bounded.",
    )
    lock_timeout_s: float = Field(
        default=300.0, description="How long to wait while another process holds the DuckDB file's write lock."
    )

    @property
    def staging_root(self) -> Path:
        """Where runs stage downloaded and parsed parts: beside the DuckDB file, not in a /tmp that may be RAM."""
        if self.database == ":memory:":
            return Path(tempfile.gettempdir()) / STAGING_FOLDER
        return Path(self.database).parent / STAGING_FOLDER

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection, opened as soon as no other process holds the file lock."""
        if self.database != ":memory:":
            if Path(self.database).stem == SCHEMA:
                # DuckDB names the catalog after the file, so `growingio.page` would be ambiguous.
                raise dg.Failure(
                    description=f"GROWINGIO_DUCKDB_PATH must not be named {SCHEMA}.duckdb: DuckDB would name the "
                    f"database '{SCHEMA}' like the schema of the tables; choose another name, e.g. "
                    f"{DEFAULT_DUCKDB_PATH}",
                    allow_retries=False,
                )
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect_when_unlocked()
        try:
            yield conn
        finally:
            conn.close()

    def _connect_when_unlocked(self) -> duckdb.DuckDBPyConnection:
        # DuckDBResource's own retry doubles a fixed pause up to 51 s: runs that collide once keep colliding
        # and wait far longer than the second or two a write holds the lock. Short, jittered, capped pauses.
        deadline = time.monotonic() + self.lock_timeout_s
        pause = _LOCK_RETRY_FIRST_S
        while True:
            try:
                return duckdb.connect(self.database, read_only=False, config=dict(self.connection_config))
            except duckdb.IOException as error:
                if "Could not set lock" not in str(error):
                    raise
                if time.monotonic() + pause > deadline:
                    raise dg.Failure(
                        description=f"the DuckDB file {self.database} stayed locked by another process for "
                        f"{self.lock_timeout_s:g} s: {error}",
                    ) from error
            time.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, _LOCK_RETRY_MAX_S)


def _optional_env(name: str) -> dg.EnvVar | None:
    """``EnvVar`` when the variable is set, so its value never shows in the UI; None otherwise."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The resources, configured from ``GROWINGIO_*`` variables; they load even when none is set."""
    return {
        "growingio": GrowingIOExportResource(
            base_url=os.environ.get("GROWINGIO_BASE_URL", DEFAULT_BASE_URL),
            token=_optional_env("GROWINGIO_TOKEN"),
            project_id=os.environ.get("GROWINGIO_PROJECT_ID"),
            client_id=os.environ.get("GROWINGIO_CLIENT_ID"),
            private_key=_optional_env("GROWINGIO_PRIVATE_KEY"),
            project_uid=os.environ.get("GROWINGIO_PROJECT_UID"),
            auth_code_catalog=os.environ.get("GROWINGIO_LAKE_CATALOG") or DEFAULT_CATALOG,
        ),
        "warehouse": WarehouseResource(database=os.environ.get("GROWINGIO_DUCKDB_PATH", DEFAULT_DUCKDB_PATH)),
    }
