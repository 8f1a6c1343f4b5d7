"""Asset metadata labelled for people: row counts, sizes and times with their units and time zones.

Builds the metadata of a loaded hour, and the observation recorded on each asset when an hour loads
nothing (NOT_EXISTS, ERROR, RUNNING past the deadline, FAILED), so every hour's outcome is on the asset.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo

import dagster as dg

from growingio_pipeline.event_types import BEIJING, EventType
from growingio_pipeline.parsing import EXTRA_COLUMNS, UNPARSED_MAPS
from growingio_pipeline.redaction import redact_text

PREVIEW_CELL_CHARS = 40
_BYTE_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")

LINEAGE_DESCRIPTIONS = {
    UNPARSED_MAPS: "Map values that were not a flat JSON object, kept as written: column → raw text.",
    EXTRA_COLUMNS: "Columns the export had that this version does not know: header → value.",
    "_partition_key": "The partition (export_date, Beijing time) the row was loaded for.",
    "_source_part": "The row's file in the export: its download link without host or signed query string.",
    "_loaded_at": "When the partition was written (UTC).",
}
"""What each lineage column the pipeline adds to every table holds (README, 'The DuckDB tables')."""


def human_bytes(size: int) -> str:
    """``size`` in binary units, e.g. ``1.5 MiB (1,572,864 bytes)``."""
    value, unit = float(size), _BYTE_UNITS[0]
    for unit in _BYTE_UNITS:
        if value < 1024 or unit == _BYTE_UNITS[-1]:
            break
        value /= 1024
    return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({size:,} bytes)"


def request_time_label(request_time: str | None) -> str:
    """GrowingIO's ``requestTime`` (server time, Beijing) with its time zone written out."""
    return f"{request_time} Beijing (UTC+8)" if request_time else "none (the API gave no answer)"


def window_metadata(time_window: dg.TimeWindow) -> dict[str, str]:
    """The partition's window in Beijing time (the partition key's zone) and in UTC (the tables' times)."""
    return {
        "window (Beijing)": _window_text(time_window, BEIJING, "Beijing (UTC+8)"),
        "window (UTC)": _window_text(time_window, timezone.utc, "UTC"),
    }


def _window_text(time_window: dg.TimeWindow, zone: tzinfo, zone_name: str) -> str:
    start, end = time_window.start.astimezone(zone), time_window.end.astimezone(zone)
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} {zone_name}"


def unloaded_observation(
    event_type_key: dg.AssetKey,
    partition_key: str,
    status: str,
    error_msg: str | None,
    request_time: str | None,
    time_window: dg.TimeWindow,
) -> dg.AssetObservation:
    """The event that shows on the asset what came of an hour that loaded nothing; the table is unchanged."""
    return dg.AssetObservation(
        asset_key=event_type_key,
        partition=partition_key,
        description=f"GrowingIO export {status}: nothing loaded, the table keeps the rows it had.",
        metadata={
            "status": status,
            "error_msg": redact_text(error_msg) if error_msg else "none",
            "request_time": request_time_label(request_time),
            **window_metadata(time_window),
        },
    )


def preview_markdown(event_type: EventType, rows: tuple[tuple[object, ...], ...]) -> str:
    """The partition's first ``rows`` as a Markdown table: times in Beijing time, long values shortened."""
    if not rows:
        return "_no rows_"
    columns = event_type.column_names
    lines = [
        "Times in Beijing time (UTC+8); the table stores them as UTC instants.",
        "",
        f"| {' | '.join(columns)} |",
        f"|{'---|' * len(columns)}",
    ]
    lines += [f"| {' | '.join(_preview_cell(value) for value in row)} |" for row in rows]
    return "\n".join(lines)


def _preview_cell(value: object) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(BEIJING).isoformat(sep=" ", timespec="milliseconds")
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text if len(text) <= PREVIEW_CELL_CHARS else text[: PREVIEW_CELL_CHARS - 1] + "…"
