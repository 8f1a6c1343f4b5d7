"""Dagster resources: the GrowingIO export client and the DuckDB file, configured from the environment."""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from growingio_pipeline.export_api import DOC, KEY_PAIR_FIELDS, ClientSettings, ExportClient
from growingio_pipeline.warehouse import SCHEMA, WRITE_CONNECTION_CONFIG

ENV_PREFIX = "GROWINGIO_"
"""Each resource setting can be set from the environment as ``GROWINGIO_<SETTING IN UPPER CASE>``."""
DEFAULT_DUCKDB_PATH = "data/growingio_events.duckdb"
STAGING_FOLDER = ".growingio-staging"
_LOCK_RETRY_FIRST_S = 0.05
_LOCK_RETRY_MAX_S = 1.0
_CLIENT_FIELDS = {setting.name: setting for setting in dataclasses.fields(ClientSettings)}
SECRET_SETTINGS = frozenset({"token", "private_key"})
"""Settings read from the environment as ``EnvVar``, so their value never shows in the UI."""


def _client_setting(name: str) -> Any:
    """The resource field of client setting ``name``, with ClientSettings' own default and description.

    A setting the client requires defaults to None here, so the definitions load without it.
    """
    setting = _CLIENT_FIELDS[name]
    default = None if setting.default is dataclasses.MISSING else setting.default
    return Field(default=default, description=setting.metadata[DOC])


class GrowingIOExportResource(dg.ConfigurableResource):  # type: ignore[type-arg]  # its type parameter is this class itself
    """The export client's settings (:class:`ClientSettings`, which holds each default and description), and
    how Dagster retries a step whose export is still RUNNING."""

    token: str | None = _client_setting("token")
    project_id: str | None = _client_setting("project_id")
    base_url: str = _client_setting("base_url")
    client_id: str | None = _client_setting("client_id")
    private_key: str | None = _client_setting("private_key")
    project_uid: str | None = _client_setting("project_uid")
    lake_catalog: str = _client_setting("lake_catalog")
    calls_per_second: float = _client_setting("calls_per_second")
    connect_timeout_s: float = _client_setting("connect_timeout_s")
    read_timeout_s: float = _client_setting("read_timeout_s")
    max_retries: int = _client_setting("max_retries")
    backoff_base_s: float = _client_setting("backoff_base_s")
    backoff_max_s: float = _client_setting("backoff_max_s")
    running_deadline_s: float = _client_setting("running_deadline_s")
    running_poll_interval_s: float = _client_setting("running_poll_interval_s")
    running_poll_max_interval_s: float = _client_setting("running_poll_max_interval_s")
    expire_minutes: int = _client_setting("expire_minutes")
    download_concurrency: int = _client_setting("download_concurrency")
    max_link_refreshes: int = _client_setting("max_link_refreshes")
    running_retry_after_s: int = Field(
        default=600, description="When Dagster retries a step whose export was still RUNNING, in seconds."
    )
    running_max_retries: int = Field(default=6, description="How many times a RUNNING export's step is retried.")

    def client_settings(self) -> ClientSettings:
        """Settings for ``ExportClient``; a clear error naming what is missing, before any request.

        Key-pair mode is used when there is no token and any of its settings is given.
        """
        key_pair = not self.token and any(getattr(self, name) for name in KEY_PAIR_FIELDS)
        needed = ("project_id", *KEY_PAIR_FIELDS) if key_pair else ("token", "project_id")
        missing = [f"{ENV_PREFIX}{name.upper()}" for name in needed if not getattr(self, name)]
        if missing:
            what = "key-pair credentials incomplete (no GROWINGIO_TOKEN)" if key_pair else "credentials missing"
            raise dg.Failure(
                description=(
                    f"GrowingIO {what}: set {' and '.join(missing)} in the environment of the "
                    "Dagster code location (see README, 'Connecting to GrowingIO')."
                ),
                allow_retries=False,
            )
        settings = {name: getattr(self, name) for name in _CLIENT_FIELDS}
        settings["token"] = self.token or None  # an empty token (from the launchpad) means none: key-pair mode
        return ClientSettings(**settings)

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


def resources_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, dg.ConfigurableResource[Any]]:
    """The resources, configured from ``GROWINGIO_*`` variables; they load even when none is set.

    Secrets (``SECRET_SETTINGS``) are passed as ``EnvVar``, so their value never shows in the UI.
    """
    settings: dict[str, Any] = {}
    for name, model_field in GrowingIOExportResource.model_fields.items():
        variable = f"{ENV_PREFIX}{name.upper()}"
        if environ.get(variable):
            settings[name] = (
                dg.EnvVar(variable)
                if name in SECRET_SETTINGS
                else _parsed(variable, environ[variable], model_field.annotation)
            )
    return {
        "growingio": GrowingIOExportResource(**settings),
        "warehouse": WarehouseResource(database=environ.get(f"{ENV_PREFIX}DUCKDB_PATH", DEFAULT_DUCKDB_PATH)),
    }


def _parsed(variable: str, text: str, annotation: Any) -> object:
    """``text`` as the setting's type; a ValueError naming the variable when it is not one."""
    for kind, what in ((int, "a whole number"), (float, "a number")):
        if annotation is kind:
            try:
                return kind(text)
            except ValueError:
                raise ValueError(f"{variable} must be {what}, got {text!r}") from None
    return text
