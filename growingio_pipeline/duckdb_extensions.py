"""DuckDB's extensions for the lake, offline: the signed builds from the ``duckdb-extension-*`` PyPI packages.

DuckDB looks for ``<extension_directory>/v<version>/<platform>/<name>.duckdb_extension`` before it downloads
anything; the packages ship ``extensions/v<version>/<name>.duckdb_extension`` (no platform folder), so this
module links them into that layout. Signature checks stay on: the files are DuckDB's own signed builds.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import duckdb

EXTENSIONS = ("ducklake", "sqlite_scanner", "postgres_scanner", "httpfs")
"""The extensions the lake needs, by DuckDB name (package ``duckdb-extension-<name with - for _>``)."""


def extension_directory() -> Path:
    """A folder to pass as DuckDB's ``extension_directory`` setting, holding links to the packaged extensions."""
    version = f"v{duckdb.__version__}"
    platform = duckdb.execute("PRAGMA platform").fetchone()[0]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "growingio-pipeline" / "duckdb-extensions"
    folder = root / version / platform
    folder.mkdir(parents=True, exist_ok=True)
    for name in EXTENSIONS:
        spec = importlib.util.find_spec(f"duckdb_extension_{name}")
        packaged = Path(spec.origin).parent / "extensions" / version / f"{name}.duckdb_extension" if spec else None
        if packaged is None or not packaged.is_file():
            requirement = f"duckdb-extension-{name.replace('_', '-')}=={duckdb.__version__}"
            raise RuntimeError(f"DuckDB extension {name!r} for DuckDB {version} is missing: pip install {requirement}")
        link = folder / packaged.name
        if not link.exists() or link.resolve() != packaged.resolve():
            # Link under a unique name, then rename: concurrent processes never see a half-made link.
            staging = folder / f".{packaged.name}.{os.getpid()}"
            staging.unlink(missing_ok=True)
            staging.symlink_to(packaged)
            staging.replace(link)
    return root
