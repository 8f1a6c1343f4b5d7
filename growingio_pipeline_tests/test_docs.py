"""README's table reference is generated from the event-type registry and must not drift from it."""

from growingio_pipeline.docs import README, render_readme


def test_readme_table_reference_is_up_to_date():
    readme = README.read_text(encoding="utf-8")

    assert render_readme(readme) == readme, "run: python -m growingio_pipeline.docs"


def test_readme_documents_every_table():
    readme = README.read_text(encoding="utf-8")

    for table in ("growingio.visit", "growingio.ads_track_activation", "growingio._load_ledger"):
        assert f"`{table}`" in readme
