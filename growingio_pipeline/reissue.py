"""Noticing a re-issued export: the vendor produced an hour again after it was loaded.

``requestTime`` is the server's time of the request, not of the export, so it cannot tell a re-issue. What
can is the parts themselves: a load records a fingerprint of its parts (each part's size, ``ETag`` and
``Last-Modified`` as the storage host answered, in link order; never a link) in the ledger. A re-check asks
the API for a loaded hour again (one call), sends a HEAD to each part (nothing is downloaded) and compares.

Free of Dagster: the re-check sensor asks this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

import duckdb

from growingio_pipeline.export_api import ExportClient, ExportStatus, PartVersion
from growingio_pipeline.warehouse import FINGERPRINT_COLUMN, LEDGER_TABLE, LoadStatus, ledger_columns


def fingerprint(versions: Iterable[PartVersion]) -> str:
    """A short digest of the parts' versions, in link order: equal for the same parts, else different."""
    listed = [[version.size_bytes, version.etag, version.last_modified] for version in versions]
    return hashlib.sha256(json.dumps(listed).encode()).hexdigest()[:32]


def loaded_fingerprints(
    conn: duckdb.DuckDBPyConnection, export_type: str, since: str = ""
) -> dict[str, dict[str, str]]:
    """``{partition_key: {event_type: fingerprint}}`` of each type's latest LOADED attempt, for the partitions
    from key ``since`` on; types loaded before fingerprints were kept are left out (they cannot be compared)."""
    if FINGERPRINT_COLUMN not in ledger_columns(conn):
        return {}
    rows = conn.execute(
        f"SELECT partition_key, event_type, arg_max({FINGERPRINT_COLUMN}, finished_at) FROM {LEDGER_TABLE} "
        # Ordered, so that a partition's changed types (and the run tags naming them) come in one order each time.
        "WHERE export_type = ? AND status = ? AND partition_key >= ? GROUP BY ALL ORDER BY partition_key, event_type",
        [export_type, LoadStatus.LOADED.value, since],
    ).fetchall()
    loaded: dict[str, dict[str, str]] = {}
    for partition_key, event_type, parts_fingerprint in rows:
        if parts_fingerprint is not None:
            loaded.setdefault(partition_key, {})[event_type] = parts_fingerprint
    return loaded


def changed_types(
    client: ExportClient, export_type: str, partition_key: str, loaded: Mapping[str, str]
) -> dict[str, str]:
    """The types of ``loaded`` whose parts differ now, with their new fingerprints.

    One API call (the client keeps to the rate limit), then a HEAD per part of those types. An export that is
    no longer FINISHED (gone past retention, being re-run) changes nothing yet.
    """
    export = client.request_export(export_type, partition_key)
    if export.status is not ExportStatus.FINISHED:
        return {}
    changed = {}
    for event_type, recorded in loaded.items():
        if event_type not in export.download_links:
            continue
        now = fingerprint(client.part_versions(export, event_type))
        if now != recorded:
            changed[event_type] = now
    return changed
