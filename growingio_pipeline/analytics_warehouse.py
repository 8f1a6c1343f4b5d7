"""Where the analytics models live and how dbt reaches them: the one place to change (no Dagster).

The models are tables in schema ``analytics`` of the lake, beside the raw ``growingio`` tables, so every
reader of the lake (``query.connect()``, ``growingio-sql``) sees them. dbt opens the lake through the plugin
``dbt_lake`` named in ``dbt_project/profiles.yml``, from the lake variables ``dbt_environment`` gives it.
"""

from __future__ import annotations

from pathlib import Path

from growingio_pipeline.lake import LakeSettings

DBT_PROJECT_DIR = Path(__file__).parent / "dbt_project"
"""The dbt project (shipped inside the package, so ``pip install`` users have it)."""


def dbt_environment(settings: LakeSettings) -> dict[str, str]:
    """The environment dbt needs to reach the lake (paths absolute: dbt runs in its project folder).

    It holds the lake's secrets, for dbt's process only: never log it.
    """
    return settings.environment()
