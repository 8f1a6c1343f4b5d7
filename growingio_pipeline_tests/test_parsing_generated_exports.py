"""The parser reads the local export server's generated parts back to exactly the generated values."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from growingio_pipeline.event_types import EVENT_TYPES, ColumnKind, EventType
from growingio_pipeline.local_server.csv_writer import write_csv_parts
from growingio_pipeline.local_server.generator import generate_hour
from growingio_pipeline.parsing import UNPARSED_MAPS
from growingio_pipeline_tests.parsed_parts import parse_to_table


def expected_value(event_type: EventType, generated: pl.DataFrame) -> list[pl.Expr]:
    """What each registry column should hold, computed from the generated text."""
    expressions = []
    for column in event_type.columns:
        text = pl.col(column.vendor_name)
        if column.kind is ColumnKind.BIGINT:
            text = text.cast(pl.Int64)
        elif column.kind is ColumnKind.DOUBLE:
            text = text.cast(pl.Float64)
        elif column.kind is ColumnKind.TIME:
            text = text.cast(pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
        expressions.append(text.alias(column.name))
    return expressions


def loaded_value(event_type: EventType) -> list[pl.Expr]:
    """Each registry column as loaded; a map value moved to ``_unparsed_maps`` is put back for comparison."""
    expressions = []
    for column in event_type.columns:
        value = pl.col(column.name)
        if column.kind is ColumnKind.MAP:
            moved = pl.col(UNPARSED_MAPS).str.json_path_match(f"$.{column.name}")
            value = pl.coalesce(value, moved)
        expressions.append(value.alias(column.name))
    return expressions


@pytest.mark.parametrize("event_type", EVENT_TYPES.values(), ids=EVENT_TYPES.keys())
def test_generated_parts_parse_back_to_the_generated_values(tmp_path: Path, event_type: EventType) -> None:
    generated = generate_hour(event_type.name, "2026112910", project_id="9b0d1f56d5baff1a", seed=7, rows_per_hour=400)
    parts = write_csv_parts(generated, part_size_bytes=8 * 1024)
    parsed = []
    for index, content in enumerate(parts):
        path = tmp_path / f"part-{index:05d}.csv.gz"
        path.write_bytes(content)
        parsed.append(parse_to_table(event_type, path, source=path.name, staging_dir=tmp_path / "stage"))

    assert sum(part.rows_rejected for part in parsed) == 0
    assert all(part.unknown_columns == () and part.missing_columns == () for part in parsed)
    loaded = pl.concat([pl.DataFrame(part.written) for part in parsed])
    assert loaded.select(loaded_value(event_type)).equals(generated.select(expected_value(event_type, generated)))
    assert sum(part.rows_read for part in parsed) == generated.height
