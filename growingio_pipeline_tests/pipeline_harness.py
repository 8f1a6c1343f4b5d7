"""Runs the real Dagster assets against a local export server and compares DuckDB with the ground truth."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from growingio_pipeline.assets import build_event_assets
from growingio_pipeline.event_types import EVENT_TYPES, Column, ColumnKind, EventType
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.partitions import build_partitions_def
from growingio_pipeline.resources import GrowingIOExportResource, WarehouseResource
from growingio_pipeline_tests.conftest import server_settings

START_DATE = "202611150000"
PARTITIONS_DEF = build_partitions_def("hour", START_DATE)
EVENT_ASSETS = build_event_assets("hour", PARTITIONS_DEF)
FINISHED_PARTITION = "202611290300"
"""03:00-04:00 Beijing on 2026-11-29: exported by the test servers' frozen 12:00 clock."""
COUPON = EventType(
    name="coupon",
    title="Coupons",
    description="A coupon issued to a visitor (a type only the tests' registry has).",
    columns=(
        Column("visitUserId"),
        Column("sessionId"),
        Column("issueTime", ColumnKind.TIME),
        Column("amount", ColumnKind.DOUBLE),
        Column("couponCount", ColumnKind.BIGINT),
        Column("couponVariable", ColumnKind.MAP),
    ),
    bucket_column="issueTime",
)
"""An event type added to the registry alone (with ``monkeypatch.setitem(EVENT_TYPES, ...)``), as README's
"Adding an event type" describes: no other file knows it."""


def export_resource(server: LocalExportServer, **overrides: Any) -> GrowingIOExportResource:
    """Client settings for a test server, with short waits so faults resolve quickly."""
    settings: dict[str, Any] = {
        **server_settings(server),
        "calls_per_second": 2.0,
        "backoff_base_s": 0.01,
        "running_poll_interval_s": 0.05,
        "running_deadline_s": 0.3,
        "running_retry_after_s": 0,
        "running_max_retries": 0,
        **overrides,
    }
    return GrowingIOExportResource(**settings)


def materialize_partition(
    server: LocalExportServer,
    duckdb_path: Path,
    partition_key: str = FINISHED_PARTITION,
    *,
    selection: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    assets: dg.AssetsDefinition = EVENT_ASSETS,
    downstream: Sequence[dg.AssetsDefinition] = (),
    downstream_resources: Mapping[str, Any] | None = None,
    **resource_overrides: Any,
) -> dg.ExecuteInProcessResult:
    """One real Dagster run of the event assets (all types, or ``selection`` like ``["page"]``).

    ``downstream`` assets (with ``downstream_resources``) run in the same run after them, as the models do.
    """
    return dg.materialize(
        [assets, *downstream],
        partition_key=partition_key,
        selection=[f"growingio/{name}" for name in selection] if selection else None,
        resources={
            "growingio": export_resource(server, **resource_overrides),
            "warehouse": WarehouseResource(database=str(duckdb_path)),
            **(downstream_resources or {}),
        },
        instance=instance,
        raise_on_error=raise_on_error,
    )


def loaded_rows(duckdb_path: Path, event_type: EventType, partition_key: str) -> list[tuple]:
    """The partition's rows in DuckDB as comparable tuples, in a stable order."""
    selected = ", ".join(_comparable_sql(column.name, column.kind) for column in event_type.columns)
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        rows = conn.execute(
            f"SELECT {selected}, _unparsed_maps FROM {event_type.table_name} WHERE _partition_key = ?",
            [partition_key],
        ).fetchall()
    map_positions = [i for i, column in enumerate(event_type.columns) if column.kind is ColumnKind.MAP]
    return sorted((_with_unparsed_maps(row, event_type, map_positions) for row in rows), key=repr)


def _comparable_sql(name: str, kind: ColumnKind) -> str:
    return f"epoch_ms({name})" if kind is ColumnKind.TIME else name


def _with_unparsed_maps(row: tuple, event_type: EventType, map_positions: list[int]) -> tuple:
    *values, unparsed = row
    for position in map_positions:
        if values[position] is None and unparsed:
            values[position] = unparsed.get(event_type.columns[position].name)
    return tuple(values)


def expected_rows(server: LocalExportServer, event_type: EventType, partition_key: str) -> list[tuple]:
    """The server's ground truth for the partition, typed the way the pipeline documents it."""
    truth = server.ground_truth(event_type.name, partition_key[:10])
    kinds = [column.kind for column in event_type.columns]
    return sorted(
        (tuple(_typed(text, kind) for text, kind in zip(row, kinds, strict=True)) for row in truth.iter_rows()),
        key=repr,
    )


def _typed(text: str | None, kind: ColumnKind) -> Any:
    if text is None or kind is ColumnKind.STRING:
        return text
    if kind in (ColumnKind.BIGINT, ColumnKind.TIME):
        return int(text)
    if kind is ColumnKind.DOUBLE:
        return float(text)
    try:
        value = json.loads(text)
    except ValueError:
        return text
    flat = isinstance(value, dict) and all(v is None or isinstance(v, str) for v in value.values())
    return value if flat else text


def table_snapshot(duckdb_path: Path) -> dict[str, list[tuple]]:
    """Every event table's rows without load-time lineage, for before/after comparisons."""
    snapshot = {}
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        for event_type in EVENT_TYPES.values():
            rows = conn.execute(f"SELECT * EXCLUDE (_loaded_at) FROM {event_type.table_name}").fetchall()
            snapshot[event_type.name] = sorted(rows, key=repr)
    return snapshot


def ledger(duckdb_path: Path) -> list[dict[str, Any]]:
    """The load ledger, oldest first."""
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        cursor = conn.execute("SELECT * FROM growingio._load_ledger ORDER BY started_at, event_type")
        names = [description[0] for description in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=timezone.utc)
