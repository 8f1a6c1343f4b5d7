"""The ten event-type tables as one multi-asset: one API call per partition, one asset per type."""

from collections.abc import Iterable, Iterator, Sequence

import dagster as dg
import duckdb

from growingio_pipeline.catchup import freshness_fail_window
from growingio_pipeline.checks import asset_key, build_check_specs, export_status_result, load_check_results
from growingio_pipeline.event_types import EVENT_TYPES, EventType
from growingio_pipeline.export_api import ExportResult, ExportStatus, ExportStillRunning
from growingio_pipeline.ingest import (
    PartitionAttempt,
    StagedType,
    TypeLoad,
    record_unloaded,
    stage_event_type,
    write_staged,
)
from growingio_pipeline.partitions import utc_window
from growingio_pipeline.resources import GrowingIOExportResource, WarehouseResource
from growingio_pipeline.staging import staging_directory
from growingio_pipeline.warehouse import LoadStatus, column_schema, ensure_schema

PREVIEW_ROWS = 5
PREVIEW_CELL_CHARS = 40


def build_event_assets(export_type: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """One asset per event type, materialized together from the all-types export of a partition."""

    @dg.multi_asset(
        name="growingio_export",
        specs=[_asset_spec(event_type, export_type) for event_type in EVENT_TYPES.values()],
        check_specs=build_check_specs(partitions_def),
        partitions_def=partitions_def,
        can_subset=True,
    )
    def growingio_export(
        context: dg.AssetExecutionContext,
        growingio: GrowingIOExportResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        event_types = [
            event_type for event_type in EVENT_TYPES.values() if asset_key(event_type) in context.selected_asset_keys
        ]
        attempt = PartitionAttempt(export_type, context.partition_key)
        with growingio.open_client() as client:
            try:
                export = client.wait_for_export(export_type, context.partition_key)
            except ExportStillRunning as still_running:
                _record(warehouse, attempt, event_types, LoadStatus.RUNNING, str(still_running))
                raise dg.RetryRequested(
                    max_retries=growingio.running_max_retries, seconds_to_wait=growingio.running_retry_after_s
                ) from still_running
            except Exception as failure:
                # The ledger records every attempt, also one the API never answered usably.
                _record(warehouse, attempt, event_types, LoadStatus.FAILED, str(failure))
                raise
            context.log.info(
                f"export {context.partition_key}: {export.status.value} (requestTime {export.request_time})"
            )
            if export.status is not ExportStatus.FINISHED:
                yield from _unloaded_results(context, warehouse, attempt, event_types, export)
                return
            with staging_directory(warehouse.staging_root) as workdir:
                try:
                    staged = [stage_event_type(client, export, event_type, workdir) for event_type in event_types]
                except Exception as failure:
                    _record(warehouse, attempt, event_types, LoadStatus.FAILED, str(failure))
                    raise
                results, failure = _write_partition(context, warehouse, attempt, export, staged)
                # Dagster stores these events only now, with the file lock released: on a busy instance that
                # takes seconds, which other runs writing the same DuckDB file would otherwise wait out.
                yield from results
                if failure is not None:
                    raise failure

    return growingio_export


def _write_partition(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    attempt: PartitionAttempt,
    export: ExportResult,
    staged: Sequence[StagedType],
) -> tuple[list[dg.MaterializeResult], Exception | None]:
    """Write each staged type in its own transaction: the results of those written, and the failure
    that stopped the rest (already in the ledger), if any."""
    results: list[dg.MaterializeResult] = []
    window = utc_window(context.partition_time_window)
    with warehouse.connect() as conn:
        ensure_schema(conn)
        for staged_type in staged:
            try:
                load = write_staged(conn, staged_type, attempt, window)
            except Exception as failure:
                record_unloaded(conn, attempt, [staged_type.event_type], LoadStatus.FAILED, str(failure))
                return results, failure
            results.append(_materialize_result(context, conn, export, load))
    return results, None


def _asset_spec(event_type: EventType, export_type: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=asset_key(event_type),
        description=f"{event_type.title}: {event_type.description} Table `{event_type.table_name}`.",
        group_name="growingio",
        kinds={"duckdb", "polars"},
        skippable=True,
        # Red once no partition was loaded for the allowed lag plus one period; the `newest_partition_fresh`
        # check (guards.py) measures the lag between partitions themselves.
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=freshness_fail_window(export_type)),
        metadata={
            "dagster/column_schema": _table_schema(event_type),
            "dagster/table_name": event_type.table_name,
        },
    )


def _table_schema(event_type: EventType) -> dg.TableSchema:
    vendor_names = {column.name: column.vendor_name for column in event_type.columns}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=duckdb_type,
                description=f"GrowingIO column {vendor_names[name]}" if name in vendor_names else "lineage",
            )
            for name, duckdb_type in column_schema(event_type)
        ]
    )


def _selected(context: dg.AssetExecutionContext, results: Iterable[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    """Only the check results the run selected (a subset run may leave some checks out)."""
    selected = context.selected_asset_check_keys
    return [result for result in results if dg.AssetCheckKey(result.asset_key, result.check_name) in selected]


def _unloaded_results(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    attempt: PartitionAttempt,
    event_types: Sequence[EventType],
    export: ExportResult,
) -> Iterator[dg.AssetCheckResult]:
    """NOT_EXISTS warns and ERROR fails; the tables keep the rows they had."""
    _record(warehouse, attempt, event_types, LoadStatus(export.status.value), export.error_msg)
    yield from _selected(context, [export_status_result(event_type, export) for event_type in event_types])
    if export.status is ExportStatus.ERROR:
        raise dg.Failure(
            description=f"GrowingIO export {context.partition_key} failed on the vendor's side: {export.error_msg}",
            metadata={"error_msg": export.error_msg, "request_time": export.request_time},
        )
    context.log.warning(
        f"export {context.partition_key} does not exist (export not enabled, not produced yet, or past the "
        "15-day retention); the tables were left as they were"
    )


def _record(
    warehouse: WarehouseResource,
    attempt: PartitionAttempt,
    event_types: Sequence[EventType],
    status: LoadStatus,
    error_msg: str,
) -> None:
    with warehouse.connect() as conn:
        ensure_schema(conn)
        record_unloaded(conn, attempt, event_types, status, error_msg)


def _materialize_result(
    context: dg.AssetExecutionContext, conn: duckdb.DuckDBPyConnection, export: ExportResult, load: TypeLoad
) -> dg.MaterializeResult:
    event_type = load.staged.event_type
    summary = load.summary
    return dg.MaterializeResult(
        asset_key=asset_key(event_type),
        metadata={
            "dagster/row_count": load.verification.rows_in_table,
            "dagster/table_name": event_type.table_name,
            "dagster/column_schema": _table_schema(event_type),
            "parts": summary.parts,
            "bytes": summary.bytes,
            "rows_rejected": summary.rows_rejected,
            "unparsed_maps": summary.unparsed_maps,
            "unknown_columns": ", ".join(summary.unknown_columns) or "none",
            "missing_columns": ", ".join(summary.missing_columns) or "none",
            "sources": "\n".join(part.source for part in load.staged.parts) or "none (no data this hour)",
            "request_time": export.request_time,
            "preview": dg.MetadataValue.md(_preview(conn, event_type, context.partition_key)),
        },
        check_results=_selected(
            context,
            [export_status_result(event_type, export), *load_check_results(event_type, load.verification)],
        ),
    )


def _preview(conn: duckdb.DuckDBPyConnection, event_type: EventType, partition_key: str) -> str:
    """The first rows of the partition as a Markdown table, long values shortened."""
    columns = event_type.column_names
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM {event_type.table_name} WHERE _partition_key = ? LIMIT {PREVIEW_ROWS}",
        [partition_key],
    ).fetchall()
    if not rows:
        return "_no rows_"
    lines = [f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}"]
    lines += [f"| {' | '.join(_preview_cell(value) for value in row)} |" for row in rows]
    return "\n".join(lines)


def _preview_cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text if len(text) <= PREVIEW_CELL_CHARS else text[: PREVIEW_CELL_CHARS - 1] + "…"
