"""Dagster resources: the GrowingIO export client and the lake, configured from the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from growingio_pipeline.duckdb_extensions import connection_config
from growingio_pipeline.export_api import DOC, KEY_PAIR_FIELDS, ClientSettings, ExportClient
from growingio_pipeline.lake import (
    DEFAULT_CATALOG,
    DEFAULT_DATA_PATH,
    LAKE_SECRET_VARIABLES,
    LakeSettings,
    LakeUnavailable,
    attach_lake,
    legacy_path_warning,
)
from growingio_pipeline.warehouse import WRITE_CONNECTION_CONFIG

ENV_PREFIX = "GROWINGIO_"
"""Each resource setting can be set from the environment as ``GROWINGIO_<SETTING IN UPPER CASE>``."""
STAGING_FOLDER = ".growingio-staging"
_CLIENT_FIELDS = {setting.name: setting for setting in dataclasses.fields(ClientSettings)}
SECRET_SETTINGS = frozenset({"token", "private_key", "lake_catalog_password"})
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
    lake_catalog_password: str | None = _client_setting("lake_catalog_password")
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
    """The lake, through dagster-duckdb's ``DuckDBResource``: an in-memory DuckDB per connection with the lake
    attached as ``lake``. Loads and queries never wait for each other; concurrent writers retry their conflicts."""

    database: str = Field(
        default=":memory:", description="DuckDB's own database: in memory, the tables are in the attached lake."
    )
    connection_config: dict[str, Any] = Field(
        default_factory=lambda: {**WRITE_CONNECTION_CONFIG, **connection_config()},
        description="DuckDB settings: the memory limit keeps a load's peak bounded; the extension directory "
        "loads the lake's extensions from the installed packages, with no download.",
    )
    catalog: str = Field(
        default=DEFAULT_CATALOG,
        description="The lake's catalog: a SQLite file path, or postgres: and a libpq string without password.",
    )
    data_path: str = Field(default=DEFAULT_DATA_PATH, description="Where the Parquet files go: a folder or s3://.")
    catalog_password: str | None = Field(default=None, description="PostgreSQL catalog password.")
    s3_endpoint: str | None = Field(default=None, description="S3-compatible endpoint, host:port.")
    s3_access_key_id: str | None = Field(default=None, description="S3 access key id.")
    s3_secret_access_key: str | None = Field(default=None, description="S3 secret access key.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_use_ssl: bool = Field(default=True, description="Whether to reach the S3 endpoint over TLS.")
    s3_url_style: str = Field(default="path", description="S3 URL style: path or vhost.")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Warn, once per run, when the old single-file setting is still set."""
        warning = legacy_path_warning()
        if warning and context.log is not None:
            context.log.warning(warning)

    def lake_settings(self) -> LakeSettings:
        """These settings as ``LakeSettings`` (its fields are this resource's lake fields, by name)."""
        return LakeSettings(**{field.name: getattr(self, field.name) for field in dataclasses.fields(LakeSettings)})

    @property
    def staging_root(self) -> Path:
        """Where runs stage downloaded and parsed parts: on local disk beside the catalog, not a /tmp in RAM."""
        return self.lake_settings().local_root / STAGING_FOLDER

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the lake attached and in use; always closed, even when a write fails.

        ``read_only`` reads one snapshot and takes no write lock, so it never delays a load.
        """
        settings = self.lake_settings()
        with self.get_connection() as conn:
            try:
                attach_lake(conn, settings, read_only=read_only)
            except LakeUnavailable as error:
                conn.close()
                raise dg.Failure(description=str(error), allow_retries=False) from None
            try:
                yield conn
            finally:
                conn.close()


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
        "warehouse": warehouse_from_env(environ),
    }


def warehouse_from_env(environ: Mapping[str, str] = os.environ) -> WarehouseResource:
    """The lake resource from ``GROWINGIO_LAKE_*`` and ``GROWINGIO_S3_*`` (read by ``LakeSettings.from_env``).

    Its secrets are passed as ``EnvVar``, so their value never shows in the UI.
    """
    settings = LakeSettings.from_env(environ)
    fields = {field.name: getattr(settings, field.name) for field in dataclasses.fields(LakeSettings)}
    for name, variable in LAKE_SECRET_VARIABLES.items():
        fields[name] = dg.EnvVar(variable) if environ.get(variable) else None
    return WarehouseResource(**fields)


def _parsed(variable: str, text: str, annotation: Any) -> object:
    """``text`` as the setting's type; a ValueError naming the variable when it is not one."""
    for kind, what in ((int, "a whole number"), (float, "a number")):
        if annotation is kind:
            try:
                return kind(text)
            except ValueError:
                raise ValueError(f"{variable} must be {what}, got {text!r}") from None
    return text
