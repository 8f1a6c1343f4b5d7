"""Where the analytics models live and how dbt and readers reach them: the one place to change (no Dagster).

Today the models are tables in schema ``analytics`` of the DuckDB file that holds the raw tables. dbt
reads the file's path from ``GROWINGIO_DBT_DATABASE_PATH`` (``dbt_project/profiles.yml``); Python
readers use ``connect_analytics``. Moving to the DuckLake means changing the profile to attach the lake
as database ``lake`` and ``connect_analytics`` to ``lake.connect_lake``.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

DBT_PROJECT_DIR = Path(__file__).parent / "dbt_project"
"""The dbt project (shipped inside the package, so ``pip install`` users have it)."""

DATABASE_PATH_ENV = "GROWINGIO_DBT_DATABASE_PATH"
"""The variable ``profiles.yml`` reads the warehouse path from."""

ANALYTICS_SCHEMA = "analytics"


def dbt_environment(database_path: str | os.PathLike[str]) -> dict[str, str]:
    """The environment dbt needs to reach the warehouse; absolute, because dbt runs in its project folder."""
    return {DATABASE_PATH_ENV: str(Path(database_path).resolve())}


def connect_analytics(database_path: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """A read-only connection in which ``analytics.<model>`` and ``growingio.<type>`` resolve."""
    return duckdb.connect(str(database_path), read_only=True)
