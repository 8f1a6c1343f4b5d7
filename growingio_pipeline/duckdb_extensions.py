"""DuckDB extensions from the package registry, so the lake opens with no network.

DuckDB downloads extensions at run time by default. The PyPI packages ``duckdb-extension-<name>`` carry
DuckDB's official signed builds, each as ``extensions/v<version>/<name>.duckdb_extension`` inside the
package. DuckDB looks for an installed extension at ``<extension_directory>/v<version>/<platform>/``, so
this module links the packaged files into such a folder. Signature checks stay on: the files are the
signed builds, and unsigned extensions are never allowed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import secrets
from pathlib import Path

import duckdb

DUCKDB_VERSION = "1.5.5"
"""The DuckDB the extension packages were built for; pyproject.toml pins both to it."""
EXTENSIONS = ("ducklake", "sqlite_scanner", "postgres_scanner", "httpfs")
"""What the lake needs: the format, its SQLite and PostgreSQL catalogs, and S3 for the data files."""


class ExtensionsMissing(RuntimeError):
    """A DuckDB extension package is not installed (or was built for another DuckDB)."""


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "growingio-pipeline"


def _packaged_file(name: str) -> Path:
    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ExtensionsMissing(
            f"the DuckDB extension package duckdb-extension-{name.replace('_', '-')}=={DUCKDB_VERSION} is not "
            "installed: reinstall the project (pip install -e .)"
        )
    path = Path(spec.origin).parent / "extensions" / f"v{DUCKDB_VERSION}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise ExtensionsMissing(f"{package} has no build for DuckDB {DUCKDB_VERSION} (looked for {path})")
    return path


def _link(target: Path, link: Path) -> None:
    """Point ``link`` at ``target``; atomic, so concurrent processes never see a half-made link."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    temporary = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
    temporary.symlink_to(target)
    os.replace(temporary, link)


def extension_directory(root: Path | None = None) -> Path:
    """A DuckDB ``extension_directory`` holding the lake's extensions, laid out as DuckDB expects.

    ``root`` defaults to ``~/.cache/growingio-pipeline/duckdb-extensions`` (``XDG_CACHE_HOME`` respected).
    """
    if duckdb.__version__ != DUCKDB_VERSION:
        raise ExtensionsMissing(
            f"DuckDB {duckdb.__version__} is installed, but the lake's extensions are built for {DUCKDB_VERSION}: "
            f"pip install duckdb=={DUCKDB_VERSION}"
        )
    root = root or _cache_root() / "duckdb-extensions"
    platform_dir = root / f"v{DUCKDB_VERSION}" / _platform()
    platform_dir.mkdir(parents=True, exist_ok=True)
    for name in EXTENSIONS:
        _link(_packaged_file(name), platform_dir / f"{name}.duckdb_extension")
    return root


@functools.cache
def _platform() -> str:
    with duckdb.connect() as conn:
        [(platform,)] = conn.execute("PRAGMA platform").fetchall()
    return str(platform)


def connection_config(root: Path | None = None) -> dict[str, str]:
    """DuckDB settings that load the lake's extensions from ``extension_directory()`` and never download one."""
    return {"extension_directory": str(extension_directory(root)), "autoinstall_known_extensions": "false"}
