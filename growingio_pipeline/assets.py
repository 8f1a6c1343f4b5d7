"""The ten event-type tables as one multi-asset: one API call per partition, one asset per type."""

from collections.abc import Iterable, Iterator, Sequence

import dagster as dg
import duckdb

from growingio_pipeline.checks import (
    asset_key,
    build_check_specs,
    export_status_result,
    load_check_results,
    recorded_status_result,
)
from growingio_pipeline.event_types import EVENT_TYPES, EventType
from growingio_pipeline.export_api import ExportResult, ExportStatus, ExportStillRunning
from growingio_pipeline.hour_record import read_hour_record
from growingio_pipeline.ingest import (
    PartitionAttempt,
    StagedType,
    TypeLoad,
    record_unloaded,
    stage_event_type,
    write_staged,
)
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
from growingio_pipeline.staging import staging_directory
from growingio_pipeline.warehouse import LoadStatus, column_schema, ensure_schema

CHECKS_NEED_A_PARTITION = (
    "These checks are evaluated per hour and this run has no hour: materialize the hour you want checked "
    "(Materialize, then pick its partition), which loads it and evaluates its checks."
)


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
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetObservation]:
        if not context.selected_asset_keys:
            yield from _check_only_results(context, warehouse)
            return
        event_types = [
            event_type for event_type in EVENT_TYPES.values() if asset_key(event_type) in context.selected_asset_keys
        ]
        attempt = PartitionAttempt(export_type, context.partition_key)
        with growingio.open_client() as client:
            try:
                export = client.wait_for_export(export_type, context.partition_key)
            except ExportStillRunning as still_running:
                yield from _unloaded_hour(
                    context, warehouse, attempt, event_types, LoadStatus.RUNNING, str(still_running)
                )
                raise dg.RetryRequested(
                    max_retries=growingio.running_max_retries, seconds_to_wait=growingio.running_retry_after_s
                ) from still_running
            except Exception as failure:
                # The ledger records every attempt, also one the API never answered usably.
                yield from _unloaded_hour(context, warehouse, attempt, event_types, LoadStatus.FAILED, str(failure))
                raise
            context.log.info(
                f"export {context.partition_key}: {export.status.value} "
                f"(requestTime {request_time_label(export.request_time)})"
            )
            if export.status is not ExportStatus.FINISHED:
                yield from _unloaded_results(context, warehouse, attempt, event_types, export)
                return
            with staging_directory(warehouse.staging_root) as workdir:
                try:
                    staged = [stage_event_type(client, export, event_type, workdir) for event_type in event_types]
                except Exception as failure:
                    yield from _unloaded_hour(
                        context, warehouse, attempt, event_types, LoadStatus.FAILED, str(failure), export.request_time
                    )
                    raise
                results, failure = _write_partition(context, warehouse, attempt, export, staged)
                # Dagster stores these events only now, with the file lock released: on a busy instance that
                # takes seconds, which other runs writing the same DuckDB file would otherwise wait out.
                yield from results
                if failure is not None:
                    unwritten = event_types[len(results) :]
                    yield from _observations(context, unwritten, LoadStatus.FAILED, str(failure), export.request_time)
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
                description=f"GrowingIO column {vendor_names[name]}"
                if name in vendor_names
                else LINEAGE_DESCRIPTIONS[name],
            )
            for name, duckdb_type in column_schema(event_type)
        ]
    )


def _selected(context: dg.AssetExecutionContext, results: Iterable[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    """Only the check results the run selected (a subset run may leave some checks out)."""
    selected = context.selected_asset_check_keys
    return [result for result in results if dg.AssetCheckKey(result.asset_key, result.check_name) in selected]


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
    attempt: PartitionAttempt,
    event_types: Sequence[EventType],
    export: ExportResult,
) -> Iterator[dg.AssetCheckResult | dg.AssetObservation]:
    """NOT_EXISTS warns and ERROR fails; the tables keep the rows they had, and their checks say so."""
    status = LoadStatus(export.status.value)
    yield from _unloaded_hour(context, warehouse, attempt, event_types, status, export.error_msg, export.request_time)
    window = utc_window(context.partition_time_window)
    with warehouse.connect() as conn:
        records = [read_hour_record(conn, event_type, attempt.partition_key, window) for event_type in event_types]
    results = [
        result
        for event_type, record in zip(event_types, records)
        for result in (export_status_result(event_type, export), *load_check_results(event_type, record.verification))
    ]
    yield from _selected(context, results)
    if export.status is ExportStatus.ERROR:
        raise dg.Failure(
            description=f"GrowingIO export {context.partition_key} failed on the vendor's side: {export.error_msg}",
            metadata={"error_msg": export.error_msg, "request_time": request_time_label(export.request_time)},
        )
    context.log.warning(
        f"export {context.partition_key} does not exist (export not enabled, not produced yet, or past the "
        "15-day retention); the tables were left as they were"
    )


def _unloaded_hour(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    attempt: PartitionAttempt,
    event_types: Sequence[EventType],
    status: LoadStatus,
    error_msg: str,
    request_time: str | None = None,
) -> Iterator[dg.AssetObservation]:
    """Record an hour that loaded nothing in the ledger, and on each asset as an observation."""
    with warehouse.connect() as conn:
        ensure_schema(conn)
        record_unloaded(conn, attempt, event_types, status, error_msg)
    yield from _observations(context, event_types, status, error_msg, request_time)


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
    context: dg.AssetExecutionContext, conn: duckdb.DuckDBPyConnection, export: ExportResult, load: TypeLoad
) -> dg.MaterializeResult:
    event_type = load.staged.event_type
    summary = load.summary
    [(table_rows,)] = conn.execute(f"SELECT count(*) FROM {event_type.table_name}").fetchall()
    return dg.MaterializeResult(
        asset_key=asset_key(event_type),
        metadata={
            # The UI shows dagster/row_count as the table's "Row count": the whole table, not this hour.
            "dagster/row_count": table_rows,
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
            "preview": dg.MetadataValue.md(preview_markdown(conn, event_type, context.partition_key)),
        },
        check_results=_selected(
            context,
            [export_status_result(event_type, export), *load_check_results(event_type, load.verification)],
        ),
    )
