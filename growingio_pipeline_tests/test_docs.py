"""README's table reference is generated from the event-type registry and must not drift from it."""

from growingio_pipeline.docs import README, render_readme
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.warehouse import LEDGER_TABLE, REJECTS_TABLE


def test_readme_table_reference_is_up_to_date():
    readme = README.read_text(encoding="utf-8")

    assert render_readme(readme) == readme, "run: python -m growingio_pipeline.docs"


def test_readme_documents_every_table():
    readme = README.read_text(encoding="utf-8")
    tables = [event_type.table_name for event_type in EVENT_TYPES.values()] + [LEDGER_TABLE, REJECTS_TABLE]

    assert len(tables) == len(EVENT_TYPES) + 2
    assert [table for table in tables if f"`{table}`" not in readme] == []
