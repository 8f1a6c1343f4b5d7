"""The dbt-duckdb plugin that opens the lake for dbt exactly as ``lake.connect_lake`` does (no Dagster).

``dbt_project/profiles.yml`` names this module. dbt-duckdb then opens its in-memory DuckDB with the offline
extension directory (``update_connection_config``) and lets this plugin attach the lake as ``lake``
(``configure_connection``), from the ``GROWINGIO_LAKE_*`` and ``GROWINGIO_S3_*`` variables of dbt's
environment. Catalog password and S3 keys thus become DuckDB temporary secrets in memory: they are never in
``profiles.yml``, in dbt's parsed profile or in its logs.

It also gives dbt the SQL function ``growingio_write_turn('take' | 'give')``, which the project calls around each
model's writes (``dbt_project.yml``, ``macros/write_turn.sql``): on a SQLite catalog a model then holds this host's
write turn only while it writes its computed rows and commits, so a load waits at most for that, never for a
model's query or a whole dbt run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from dbt.adapters.duckdb.credentials import DuckDBCredentials
from dbt.adapters.duckdb.plugins import BasePlugin

from growingio_pipeline.duckdb_extensions import connection_config
from growingio_pipeline.lake import HostWriteTurn, LakeSettings, attach_lake


class Plugin(BasePlugin):
    """Attaches the lake of the environment to every connection dbt opens."""

    def update_connection_config(self, creds: DuckDBCredentials, config: dict[str, Any]) -> None:
        """Load the lake's extensions from the installed packages, never from the network."""
        config.update(connection_config())

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Attach the lake as ``lake``: the catalog, the data path and their secrets, as every reader does."""
        settings = LakeSettings.from_env()
        local = ([] if settings.is_postgres else [settings.catalog]) + ([] if settings.is_s3 else [settings.data_path])
        relative = [path for path in local if not Path(path).is_absolute()]
        if relative:
            # dbt runs in its project folder: a relative path (or the defaults) would make a new, empty lake there.
            raise ValueError(
                f"the lake's local paths must be absolute for dbt, got {', '.join(relative)}: set "
                "GROWINGIO_LAKE_CATALOG and GROWINGIO_LAKE_DATA_PATH (the Dagster assets set them for dbt)"
            )
        attach_lake(conn, settings)
        turn = HostWriteTurn(settings)
        actions = {"take": turn.take, "give": turn.give}

        def write_turn(action: str) -> bool:
            actions[action]()
            return True

        conn.create_function(
            "growingio_write_turn",
            write_turn,
            [duckdb.sqltype("VARCHAR")],
            duckdb.sqltype("BOOLEAN"),
            side_effects=True,
        )
        # DuckDB's first call of a Python function imports pandas when it is installed (0.3-0.4 s): paid here,
        # not by the first model while it holds the turn. Giving back a turn not held does nothing.
        conn.execute("select growingio_write_turn('give')")
