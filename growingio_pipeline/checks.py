"""Asset checks on every (event type, partition): export status, completeness, time window, rejects.

The check results are returned with each materialization (or alone when nothing was loaded), so they are
scoped to the partition that produced them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from growingio_pipeline.event_types import EVENT_TYPES, EventType
from growingio_pipeline.export_api import ExportResult, ExportStatus
from growingio_pipeline.ingest import PartitionVerification
from growingio_pipeline.metadata import request_time_label
from growingio_pipeline.warehouse import LEDGER_TABLE, LoadStatus


@dataclass(frozen=True)
class CheckKind:
    name: str
    description: str


EXPORT_STATUS = CheckKind(
    "export_status",
    "The export API answered FINISHED. NOT_EXISTS warns (no export for this hour: not enabled, too early, "
    "or past the 15-day retention); ERROR fails with the vendor's errorMsg.",
)
ROWS_COMPLETE = CheckKind(
    "rows_loaded_equal_rows_read",
    "Every row read from the export's files is in the table or in growingio._rejects; none lost.",
)
IN_TIME_WINDOW = CheckKind(
    "event_time_in_partition_window",
    "Every row's bucketing time (sendTime; eventTime for ad clicks) lies in the partition's UTC window.",
)
NO_REJECTS = CheckKind(
    "no_rejected_rows",
    "No row of the export was rejected (see growingio._rejects for the reason and source part).",
)
NEVER_TRIED = "No attempt is recorded for this hour: materialize it to load and check it."
CHECK_KINDS = (EXPORT_STATUS, ROWS_COMPLETE, IN_TIME_WINDOW, NO_REJECTS)


def asset_key(event_type: EventType) -> dg.AssetKey:
    """The asset of one event type's table."""
    return dg.AssetKey(["growingio", event_type.name])


def build_check_specs(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """Every check kind for every event type, evaluated per partition."""
    with warnings.catch_warnings():
        # Per-partition checks are a preview feature in this Dagster release; it is the behaviour we want.
        warnings.simplefilter("ignore", category=dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                name=kind.name,
                asset=asset_key(event_type),
                description=kind.description,
                partitions_def=partitions_def,
            )
            for event_type in EVENT_TYPES.values()
            for kind in CHECK_KINDS
        ]


def export_status_result(event_type: EventType, export: ExportResult) -> dg.AssetCheckResult:
    """Passes on FINISHED; warns on NOT_EXISTS; fails with the errorMsg on ERROR."""
    return _export_status_check(
        event_type, export.status.value, export.error_msg, {"request_time": request_time_label(export.request_time)}
    )


def recorded_status_result(
    event_type: EventType, status: LoadStatus | None, error_msg: str | None
) -> dg.AssetCheckResult:
    """The export status as the ledger's latest attempt recorded it: LOADED means the export was FINISHED,
    NOT_EXISTS warns, anything else (ERROR, FAILED, RUNNING, never tried) fails."""
    source = {"source": f"latest attempt in {LEDGER_TABLE}"}
    if status is None:
        return _export_status_check(event_type, "NEVER_TRIED", NEVER_TRIED, source)
    recorded = ExportStatus.FINISHED.value if status is LoadStatus.LOADED else status.value
    return _export_status_check(event_type, recorded, error_msg, source)


def _export_status_check(
    event_type: EventType, status: str, error_msg: str | None, extra_metadata: dict[str, str]
) -> dg.AssetCheckResult:
    not_exists = status == ExportStatus.NOT_EXISTS.value
    metadata = {"status": status, **extra_metadata}
    if error_msg:
        metadata["error_msg"] = error_msg
    return dg.AssetCheckResult(
        asset_key=asset_key(event_type),
        check_name=EXPORT_STATUS.name,
        passed=status == ExportStatus.FINISHED.value,
        severity=dg.AssetCheckSeverity.WARN if not_exists else dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=error_msg or None,
    )


def load_check_results(event_type: EventType, verification: PartitionVerification) -> Sequence[dg.AssetCheckResult]:
    """Completeness, time window and rejects results for a loaded partition."""
    key = asset_key(event_type)
    accounted = verification.rows_in_table + verification.rows_rejected
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name=ROWS_COMPLETE.name,
            passed=accounted == verification.rows_read,
            metadata={
                "rows_read": verification.rows_read,
                "rows_in_table": verification.rows_in_table,
                "rows_rejected": verification.rows_rejected,
            },
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name=IN_TIME_WINDOW.name,
            passed=verification.rows_outside_window == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows_outside_window": verification.rows_outside_window},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name=NO_REJECTS.name,
            passed=verification.rows_rejected == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows_rejected": verification.rows_rejected},
        ),
    ]
