"""Runs the real Dagster assets against a local export server and compares the lake with the ground truth."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from growingio_pipeline.assets import build_event_assets
from growingio_pipeline.event_types import EVENT_TYPES, Column, ColumnKind, EventType
from growingio_pipeline.lake import LakeSettings, connect_lake
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


def warehouse_resource(lake_dir: Path) -> WarehouseResource:
    """The lake resource for a lake inside ``lake_dir`` (SQLite catalog, local files)."""
    settings = LakeSettings.in_folder(lake_dir)
    return WarehouseResource(catalog=settings.catalog, data_path=settings.data_path)


def lake_environment(lake_dir: Path) -> dict[str, str]:
    """The variables that point a process (worker, CLI, ``dagster dev``) at the lake inside ``lake_dir``."""
    settings = LakeSettings.in_folder(lake_dir)
    return {"GROWINGIO_LAKE_CATALOG": settings.catalog, "GROWINGIO_LAKE_DATA_PATH": settings.data_path}


@contextmanager
def read_lake(lake_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the lake inside ``lake_dir``."""
    conn = connect_lake(LakeSettings.in_folder(lake_dir), read_only=True)
    try:
        yield conn
    finally:
        conn.close()


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


def export_environment(server: LocalExportServer) -> dict[str, str]:
    """The variables that point a ``dagster`` command at a test server, from the first test partition on."""
    return {
        "GROWINGIO_BASE_URL": server.base_url,
        "GROWINGIO_TOKEN": server.token,
        "GROWINGIO_PROJECT_ID": server.project_id,
        "GROWINGIO_START_DATE": START_DATE,
    }


def materialize_partition(
    server: LocalExportServer,
    lake_dir: Path,
    partition_key: str = FINISHED_PARTITION,
    *,
    selection: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    assets: dg.AssetsDefinition = EVENT_ASSETS,
    warehouse: WarehouseResource | None = None,
    downstream: Sequence[dg.AssetsDefinition] = (),
    downstream_resources: Mapping[str, Any] | None = None,
    **resource_overrides: Any,
) -> dg.ExecuteInProcessResult:
    """One real Dagster run of the event assets (all types, or ``selection`` like ``["page"]``).

    The lake is the one inside ``lake_dir``, unless ``warehouse`` gives another (a PostgreSQL catalog).
    ``downstream`` assets (with ``downstream_resources``) run in the same run after them, as the models do.
    """
    return dg.materialize(
        [assets, *downstream],
        partition_key=partition_key,
        selection=[f"growingio/{name}" for name in selection] if selection else None,
        resources={
            "growingio": export_resource(server, **resource_overrides),
            "warehouse": warehouse or warehouse_resource(lake_dir),
            **(downstream_resources or {}),
        },
        instance=instance,
        raise_on_error=raise_on_error,
    )


def loaded_rows(lake_dir: Path, event_type: EventType, partition_key: str) -> list[tuple]:
    """The partition's rows in the lake as comparable tuples, in a stable order."""
    with read_lake(lake_dir) as conn:
        return partition_rows(conn, event_type, partition_key)


def partition_rows(conn: duckdb.DuckDBPyConnection, event_type: EventType, partition_key: str) -> list[tuple]:
    """The partition's rows on an open connection as comparable tuples, in a stable order."""
    selected = ", ".join(_comparable_sql(column.name, column.kind) for column in event_type.columns)
    rows = conn.execute(
        f"SELECT {selected}, _unparsed_maps FROM {event_type.table_name} WHERE _partition_key = ?", [partition_key]
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


def table_snapshot(lake_dir: Path) -> dict[str, list[tuple]]:
    """Every event table's rows without load-time lineage, for before/after comparisons."""
    snapshot = {}
    with read_lake(lake_dir) as conn:
        for event_type in EVENT_TYPES.values():
            rows = conn.execute(f"SELECT * EXCLUDE (_loaded_at) FROM {event_type.table_name}").fetchall()
            snapshot[event_type.name] = sorted(rows, key=repr)
    return snapshot


def ledger(lake_dir: Path) -> list[dict[str, Any]]:
    """The load ledger, oldest first."""
    with read_lake(lake_dir) as conn:
        cursor = conn.execute("SELECT * FROM growingio._load_ledger ORDER BY started_at, event_type")
        names = [description[0] for description in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=timezone.utc)
