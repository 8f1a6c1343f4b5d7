"""Dagster resources: the GrowingIO export client and the lake, configured from the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from growingio_pipeline.duckdb_extensions import connection_config
from growingio_pipeline.export_api import ClientSettings, ExportClient
from growingio_pipeline.lake import (
    DEFAULT_CATALOG,
    DEFAULT_DATA_PATH,
    LakeSettings,
    LakeUnavailable,
    attach_lake,
    legacy_path_warning,
)
from growingio_pipeline.warehouse import WRITE_CONNECTION_CONFIG

DEFAULT_BASE_URL = "https://www.growingio.com"
STAGING_FOLDER = ".growingio-staging"


class GrowingIOExportResource(dg.ConfigurableResource):
    """Connection settings for GrowingIO's raw data export API (v2)."""

    base_url: str = Field(default=DEFAULT_BASE_URL, description="API base URL (on-premise hosts differ).")
    token: str | None = Field(default=None, description="API token, sent as the Authorization header.")
    project_id: str | None = Field(default=None, description="Project ID (`ai`), a hex string.")
    client_id: str | None = Field(default=None, description="Legacy X-Client-Id, only if your account needs it.")
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
        """Settings for ``ExportClient``; a clear error when the token or project id is missing."""
        missing = [
            env_var
            for env_var, value in (("GROWINGIO_TOKEN", self.token), ("GROWINGIO_PROJECT_ID", self.project_id))
            if not value
        ]
        if missing:
            raise dg.Failure(
                description=(
                    f"GrowingIO credentials missing: set {' and '.join(missing)} in the environment of the "
                    "Dagster code location (see README, 'Connecting to GrowingIO')."
                ),
                allow_retries=False,
            )
        return ClientSettings(
            base_url=self.base_url,
            token=self.token,
            project_id=self.project_id,
            client_id=self.client_id,
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
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the lake attached and in use; always closed, even when a write fails."""
        settings = self.lake_settings()
        with self.get_connection() as conn:
            try:
                attach_lake(conn, settings)
            except LakeUnavailable as error:
                conn.close()
                raise dg.Failure(description=str(error), allow_retries=False) from None
            try:
                yield conn
            finally:
                conn.close()


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
        ),
        "warehouse": warehouse_from_env(),
    }


def warehouse_from_env() -> WarehouseResource:
    """The lake resource from ``GROWINGIO_LAKE_*`` and ``GROWINGIO_S3_*``; secrets as ``EnvVar``, never shown."""
    settings = LakeSettings.from_env()
    return WarehouseResource(
        catalog=settings.catalog,
        data_path=settings.data_path,
        catalog_password=_optional_env("GROWINGIO_LAKE_CATALOG_PASSWORD"),
        s3_endpoint=settings.s3_endpoint,
        s3_access_key_id=settings.s3_access_key_id,
        s3_secret_access_key=_optional_env("GROWINGIO_S3_SECRET_ACCESS_KEY"),
        s3_region=settings.s3_region,
        s3_use_ssl=settings.s3_use_ssl,
        s3_url_style=settings.s3_url_style,
    )
