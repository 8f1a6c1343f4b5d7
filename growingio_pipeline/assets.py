"""The event-type tables as one multi-asset: one API call per partition, one asset per type."""

from collections.abc import Iterable, Iterator

import dagster as dg

from growingio_pipeline.checks import asset_key, build_check_specs, export_status_result, load_check_results
from growingio_pipeline.event_types import EVENT_TYPES, EventType
from growingio_pipeline.export_api import ExportResult, ExportStillRunning
from growingio_pipeline.ingest import PartitionAttempt, PartitionLoad, TypeLoad, load_partition
from growingio_pipeline.partitions import utc_window
from growingio_pipeline.resources import GrowingIOExportResource, WarehouseResource
from growingio_pipeline.warehouse import LoadStatus, column_schema

PREVIEW_CELL_CHARS = 40


def build_event_assets(export_type: str, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """One asset per event type, materialized together from the all-types export of a partition."""

    @dg.multi_asset(
        name="growingio_export",
        specs=[_asset_spec(event_type) for event_type in EVENT_TYPES.values()],
        check_specs=build_check_specs(partitions_def),
        partitions_def=partitions_def,
        can_subset=True,
    )
    def growingio_export(
        context: dg.AssetExecutionContext,
        growingio: GrowingIOExportResource,
        warehouse: WarehouseResource,
    ) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
        event_types = [
            event_type for event_type in EVENT_TYPES.values() if asset_key(event_type) in context.selected_asset_keys
        ]
        attempt = PartitionAttempt(export_type, context.partition_key)
        window = utc_window(context.partition_time_window)
        with growingio.open_client() as client:
            load = load_partition(client, warehouse.connect, warehouse.staging_root, attempt, event_types, window)
        # Dagster stores these events only now, with the DuckDB file closed: on a busy instance that takes
        # seconds, which other runs writing the same file would otherwise wait out.
        yield from _results(context, growingio, load, event_types)

    return growingio_export


def _results(
    context: dg.AssetExecutionContext,
    growingio: GrowingIOExportResource,
    load: PartitionLoad,
    event_types: list[EventType],
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
    """Materializations and check results of ``load``; then its failure, as Dagster should see it."""
    export = load.export
    if export is not None:
        context.log.info(f"export {context.partition_key}: {export.status.value} (requestTime {export.request_time})")
        yield from (_materialize_result(context, export, type_load) for type_load in load.loads)
        if load.unloaded_status is not None:
            yield from _selected(context, [export_status_result(event_type, export) for event_type in event_types])
            _raise_or_warn(context, export, load.unloaded_status)
    if isinstance(load.failure, ExportStillRunning):
        raise dg.RetryRequested(
            max_retries=growingio.running_max_retries, seconds_to_wait=growingio.running_retry_after_s
        ) from load.failure
    if load.failure is not None:
        raise load.failure


def _asset_spec(event_type: EventType) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=asset_key(event_type),
        description=f"{event_type.title}: {event_type.description} Table `{event_type.table_name}`.",
        group_name="growingio",
        kinds={"duckdb", "polars"},
        skippable=True,
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
    selected = {(key.asset_key, key.name) for key in context.selected_asset_check_keys}
    return [result for result in results if (result.asset_key, result.check_name) in selected]


def _raise_or_warn(context: dg.AssetExecutionContext, export: ExportResult, status: LoadStatus) -> None:
    """ERROR fails the run; NOT_EXISTS warns. Either way the tables keep the rows they had."""
    if status is LoadStatus.ERROR:
        raise dg.Failure(
            description=f"GrowingIO export {context.partition_key} failed on the vendor's side: {export.error_msg}",
            metadata={"error_msg": export.error_msg, "request_time": export.request_time},
        )
    context.log.warning(
        f"export {context.partition_key} does not exist (export not enabled, not produced yet, or past the "
        "15-day retention); the tables were left as they were"
    )


def _materialize_result(
    context: dg.AssetExecutionContext, export: ExportResult, load: TypeLoad
) -> dg.MaterializeResult[None]:
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
            "preview": dg.MetadataValue.md(_preview(event_type, load.preview)),
        },
        check_results=_selected(
            context,
            [export_status_result(event_type, export), *load_check_results(event_type, load.verification)],
        ),
    )


def _preview(event_type: EventType, rows: tuple[tuple[object, ...], ...]) -> str:
    """The partition's first rows as a Markdown table, long values shortened."""
    if not rows:
        return "_no rows_"
    columns = event_type.column_names
    lines = [f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}"]
    lines += [f"| {' | '.join(_preview_cell(value) for value in row)} |" for row in rows]
    return "\n".join(lines)


def _preview_cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text if len(text) <= PREVIEW_CELL_CHARS else text[: PREVIEW_CELL_CHARS - 1] + "…"
