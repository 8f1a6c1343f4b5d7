"""The event-type tables as one multi-asset: one API call per partition, one asset per type."""

from collections.abc import Iterable, Iterator, Sequence

import dagster as dg
import duckdb

from growingio_pipeline.catchup import freshness_fail_window
from growingio_pipeline.checks import (
    asset_key,
    build_check_specs,
    export_status_result,
    load_check_results,
    recorded_status_result,
)
from growingio_pipeline.event_types import EVENT_TYPES, EventType
from growingio_pipeline.export_api import ExportResult, ExportStillRunning
from growingio_pipeline.hour_record import read_hour_record
from growingio_pipeline.ingest import PartitionAttempt, PartitionLoad, TypeLoad, load_partition
from growingio_pipeline.metadata import (
    LINEAGE_DESCRIPTIONS,
    human_bytes,
    preview_markdown,
    request_time_label,
    unloaded_observation,
    window_metadata,
)
from growingio_pipeline.partitions import utc_window
from growingio_pipeline.resources import GrowingIOExportResource, WarehouseResource
from growingio_pipeline.warehouse import LoadStatus, column_schema, ensure_schema

CHECKS_NEED_A_PARTITION = (
    "These checks are evaluated per hour and this run has no hour: materialize the hour you want checked "
    "(Materialize, then pick its partition), which loads it and evaluates its checks."
)


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
    ) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult | dg.AssetObservation]:
        if not context.selected_asset_keys:
            yield from _check_only_results(context, warehouse)
            return
        event_types = [
            event_type for event_type in EVENT_TYPES.values() if asset_key(event_type) in context.selected_asset_keys
        ]
        attempt = PartitionAttempt(export_type, context.partition_key)
        window = utc_window(context.partition_time_window)
        with growingio.open_client() as client:
            load = load_partition(client, warehouse.connect, warehouse.staging_root, attempt, event_types, window)
        # Dagster stores these events only now, with the DuckDB file closed: on a busy instance that takes
        # seconds, which other runs writing the same file would otherwise wait out.
        yield from _results(context, growingio, warehouse, load, event_types)

    return growingio_export


def _results(
    context: dg.AssetExecutionContext,
    growingio: GrowingIOExportResource,
    warehouse: WarehouseResource,
    load: PartitionLoad,
    event_types: list[EventType],
) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult | dg.AssetObservation]:
    """Materializations, observations and check results of ``load``; then its failure, as Dagster should see it.

    Every selected asset gets an event for the hour: a materialization if its type was written, else an
    observation naming the status, so the Events tab tells an unloaded hour from one never tried.
    """
    export = load.export
    request_time = export.request_time if export is not None else None
    if export is not None:
        context.log.info(
            f"export {context.partition_key}: {export.status.value} "
            f"(requestTime {request_time_label(export.request_time)})"
        )
        yield from (_materialize_result(context, export, type_load) for type_load in load.loads)
        if load.unloaded_status is not None:
            yield from _observations(context, event_types, load.unloaded_status, export.error_msg, request_time)
            yield from _unloaded_results(context, warehouse, event_types, export)
            _raise_or_warn(context, export, load.unloaded_status)
    if load.failure is None:
        return
    status = LoadStatus.RUNNING if isinstance(load.failure, ExportStillRunning) else LoadStatus.FAILED
    # The types written before the failure were materialized; the rest were left as they were.
    unwritten = event_types[len(load.loads) :]
    yield from _observations(context, unwritten, status, str(load.failure), request_time)
    if isinstance(load.failure, ExportStillRunning):
        raise dg.RetryRequested(
            max_retries=growingio.running_max_retries, seconds_to_wait=growingio.running_retry_after_s
        ) from load.failure
    raise load.failure


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
                description=f"GrowingIO column {vendor_names[name]}"
                if name in vendor_names
                else LINEAGE_DESCRIPTIONS[name],
            )
            for name, duckdb_type in column_schema(event_type)
        ]
    )


def _selected(context: dg.AssetExecutionContext, results: Iterable[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    """Only the check results the run selected (a subset run may leave some checks out)."""
    selected = {(key.asset_key, key.name) for key in context.selected_asset_check_keys}
    return [result for result in results if (result.asset_key, result.check_name) in selected]


def _check_only_results(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    """A run of the checks alone re-evaluates its hour from the ledger and the table, with no API call."""
    if not context.has_partition_key:
        raise dg.Failure(description=CHECKS_NEED_A_PARTITION, allow_retries=False)
    checked = {key.asset_key for key in context.selected_asset_check_keys}
    event_types = [event_type for event_type in EVENT_TYPES.values() if asset_key(event_type) in checked]
    with warehouse.connect() as conn:
        ensure_schema(conn)
        results = _recorded_check_results(conn, event_types, context.partition_key, context.partition_time_window)
    yield from _selected(context, results)


def _recorded_check_results(
    conn: duckdb.DuckDBPyConnection, event_types: Sequence[EventType], partition_key: str, time_window: dg.TimeWindow
) -> list[dg.AssetCheckResult]:
    """Every check of each type's hour, from what the warehouse recorded and holds."""
    results = []
    for event_type in event_types:
        record = read_hour_record(conn, event_type, partition_key, utc_window(time_window))
        results.append(recorded_status_result(event_type, record.latest_status, record.latest_error_msg))
        results.extend(load_check_results(event_type, record.verification))
    return results


def _unloaded_results(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    event_types: Sequence[EventType],
    export: ExportResult,
) -> list[dg.AssetCheckResult]:
    """NOT_EXISTS warns and ERROR fails; the tables keep the rows they had, and their load checks say so."""
    window = utc_window(context.partition_time_window)
    with warehouse.connect() as conn:
        records = [read_hour_record(conn, event_type, context.partition_key, window) for event_type in event_types]
    results = [
        result
        for event_type, record in zip(event_types, records, strict=True)
        for result in (export_status_result(event_type, export), *load_check_results(event_type, record.verification))
    ]
    return _selected(context, results)


def _raise_or_warn(context: dg.AssetExecutionContext, export: ExportResult, status: LoadStatus) -> None:
    """ERROR fails the run; NOT_EXISTS warns. Either way the tables keep the rows they had."""
    if status is LoadStatus.ERROR:
        raise dg.Failure(
            description=f"GrowingIO export {context.partition_key} failed on the vendor's side: {export.error_msg}",
            metadata={"error_msg": export.error_msg, "request_time": request_time_label(export.request_time)},
        )
    context.log.warning(
        f"export {context.partition_key} does not exist (export not enabled, not produced yet, or past the "
        "15-day retention); the tables were left as they were"
    )


def _observations(
    context: dg.AssetExecutionContext,
    event_types: Sequence[EventType],
    status: LoadStatus,
    error_msg: str,
    request_time: str | None,
) -> Iterator[dg.AssetObservation]:
    for event_type in event_types:
        yield unloaded_observation(
            asset_key(event_type),
            context.partition_key,
            status.value,
            error_msg,
            request_time,
            context.partition_time_window,
        )


def _materialize_result(
    context: dg.AssetExecutionContext, export: ExportResult, load: TypeLoad
) -> dg.MaterializeResult[None]:
    event_type = load.staged.event_type
    summary = load.summary
    return dg.MaterializeResult(
        asset_key=asset_key(event_type),
        metadata={
            # The UI shows dagster/row_count as the table's "Row count": the whole table, not this hour.
            "dagster/row_count": load.table_rows,
            "dagster/partition_row_count": load.verification.rows_in_table,
            "dagster/table_name": event_type.table_name,
            "dagster/column_schema": _table_schema(event_type),
            **window_metadata(context.partition_time_window),
            "parts": summary.parts,
            "download size": human_bytes(summary.bytes),
            "rows_rejected": summary.rows_rejected,
            "unparsed_maps": summary.unparsed_maps,
            "unknown_columns": ", ".join(summary.unknown_columns) or "none",
            "missing_columns": ", ".join(summary.missing_columns) or "none",
            "sources": "\n".join(part.source for part in load.staged.parts) or "none (no data this hour)",
            "request_time": request_time_label(export.request_time),
            "preview": dg.MetadataValue.md(preview_markdown(event_type, load.preview)),
        },
        check_results=_selected(
            context,
            [export_status_result(event_type, export), *load_check_results(event_type, load.verification)],
        ),
    )
