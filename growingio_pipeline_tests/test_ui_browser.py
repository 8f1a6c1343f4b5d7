"""The newcomer's path through the Dagster UI, in headless Chromium against `dagster dev` and the local server.

The UI lists the ten assets and their checks, materializes one partition from the partition dialog, and the
run's rows land in DuckDB. Screenshots are saved under the test's tmp directory (the path is printed).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from growingio_pipeline.checks import CHECK_KINDS
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.partitions import BEIJING, KEY_FORMATS
from growingio_pipeline_tests.conftest import PROJECT_ROOT
from growingio_pipeline_tests.dagster_processes import (
    DagsterDev,
    log_tail,
    process_group_members,
    running_dagster_dev,
    running_local_server_command,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TOKEN = "ui-test-token"
PROJECT_ID = "9b0d1f56d5baff1a"
PAGE_ROWS_PER_HOUR = 50
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_S = 180.0
RUN_STATUSES_DONE = {"SUCCESS", "FAILURE", "CANCELED"}
CHECKED_ASSET = "page"

RUNS_QUERY = """
query Runs($partition: String!) {
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $partition}]}) {
    ... on Runs { results { runId status } }
    ... on PythonError { message }
  }
}
"""


def recent_finished_partition(now: datetime) -> str:
    """An hour the export server (real clock) has certainly FINISHED: at most 60 min latency, so 3 h back is safe."""
    hour = (now.astimezone(BEIJING) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    return hour.strftime(KEY_FORMATS["hour"])


@pytest.mark.browser
def test_the_ui_lists_the_assets_and_materializes_a_partition(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the UI test needs Debian's chromium at {CHROMIUM}: run scripts/test.sh as root, "
            "or 'sudo apt-get install chromium'"
        )
    partition = recent_finished_partition(datetime.now(timezone.utc))
    start_date = (datetime.strptime(partition, KEY_FORMATS["hour"]) - timedelta(hours=2)).strftime(KEY_FORMATS["hour"])
    duckdb_path = tmp_path / "events.duckdb"
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    print(f"screenshots in {screenshots}")

    with running_local_server_command(token=TOKEN, project_id=PROJECT_ID, rows_per_hour=PAGE_ROWS_PER_HOUR) as server:
        env = {
            "GROWINGIO_BASE_URL": server.base_url,
            "GROWINGIO_TOKEN": TOKEN,
            "GROWINGIO_PROJECT_ID": PROJECT_ID,
            "GROWINGIO_DUCKDB_PATH": str(duckdb_path),
            "GROWINGIO_START_DATE": start_date,
            "GROWINGIO_EXPORT_TYPE": "hour",
        }
        # As a newcomer runs it: the project's instance settings, and workspace.yaml from the project root.
        dagster_home = tmp_path / "dagster_home"
        dagster_home.mkdir()
        shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
        with running_dagster_dev(dagster_home, env, module=None, cwd=PROJECT_ROOT) as dev:
            dagster_group = dev.process.pid
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                try:
                    _drive_the_ui(browser, dev, partition, screenshots)
                finally:
                    browser.close()
        server_group = server.process.pid

    assert process_group_members(dagster_group) == [], "dagster dev left processes behind"
    assert process_group_members(server_group) == [], "the local export server left processes behind"
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        page_rows = conn.execute(
            "SELECT count(*) FROM growingio.page WHERE _partition_key = ?", [partition]
        ).fetchone()[0]
    assert page_rows == PAGE_ROWS_PER_HOUR


def _drive_the_ui(browser: Browser, dev: DagsterDev, partition: str, screenshots: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)  # a 2-core machine launching a run needs more than the default 5 s
    # A fresh DAGSTER_HOME greets the first visitor with a newsletter dialog over whatever page is open.
    page.add_locator_handler(
        page.get_by_role("dialog").filter(has_text="Join the Dagster community"),
        lambda dialog: dialog.get_by_role("button", name="Skip").click(),
    )
    with _screenshot_and_log_on_failure(page, dev, screenshots):
        page.goto(dev.base_url)
        _catalog_lists_the_ten_assets(page, screenshots)
        _checks_are_listed(page, screenshots)
        _launch_one_partition(page, partition, screenshots)
        run_id = _wait_for_run(dev, partition)
        _runs_page_shows_success(page, run_id, partition, screenshots)
        _asset_page_shows_the_materialization(page, partition, screenshots)


def _catalog_lists_the_ten_assets(page: Page, screenshots: Path) -> None:
    page.get_by_role("link", name="Catalog").click()
    asset_links = page.locator('a[href^="/assets/growingio/"]')
    expect(asset_links).to_have_count(len(EVENT_TYPES))
    listed = {href.removeprefix("/assets/growingio/").split("?")[0] for href in _hrefs(asset_links)}
    assert listed == set(EVENT_TYPES)
    group_links = page.locator('a[href*="/asset-groups"]').filter(has_text="growingio")
    expect(group_links).to_have_count(len(EVENT_TYPES))
    page.screenshot(path=screenshots / "1-catalog.png")


def _hrefs(links: Locator) -> list[str]:
    return [link.get_attribute("href") for link in links.all()]


def _checks_are_listed(page: Page, screenshots: Path) -> None:
    page.locator(f'a[href="/assets/growingio/{CHECKED_ASSET}"]').first.click()
    page.get_by_role("tab", name="Checks").click()
    for kind in CHECK_KINDS:
        expect(page.get_by_text(kind.name, exact=True).first).to_be_visible()
    page.screenshot(path=screenshots / "2-checks.png")


def _launch_one_partition(page: Page, partition: str, screenshots: Path) -> None:
    page.get_by_role("link", name="Catalog").click()
    expect(page.locator('a[href^="/assets/growingio/"]')).to_have_count(len(EVENT_TYPES))
    # The checkbox input is hidden behind its styled label; the header's selects every row.
    page.locator("label").filter(has=page.get_by_role("checkbox")).first.click()
    page.get_by_role("button", name="Materialize selected").click()
    dialog = page.get_by_role("dialog").filter(has_text=f"Launch runs to materialize {len(EVENT_TYPES)} assets")
    partitions_box = dialog.get_by_placeholder("ex:")
    partitions_box.fill(partition)
    partitions_box.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    page.screenshot(path=screenshots / "3-partition-dialog.png")
    dialog.get_by_role("button", name="Launch 1 run").click()
    expect(dialog).to_be_hidden()


def _wait_for_run(dev: DagsterDev, partition: str) -> str:
    """The run's id once it is done (GraphQL says when to look; the UI is what the test asserts on)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    runs: list[dict] = []
    while time.monotonic() < deadline:
        response = httpx.post(dev.graphql_url, json={"query": RUNS_QUERY, "variables": {"partition": partition}})
        runs = response.json()["data"]["runsOrError"]["results"]
        if len(runs) == 1 and runs[0]["status"] in RUN_STATUSES_DONE:
            assert runs[0]["status"] == "SUCCESS", f"the run of partition {partition} ended {runs[0]['status']}"
            return runs[0]["runId"]
        time.sleep(1.0)
    raise AssertionError(f"the run of partition {partition} was not done within {RUN_TIMEOUT_S:.0f} s: {runs}")


def _runs_page_shows_success(page: Page, run_id: str, partition: str, screenshots: Path) -> None:
    page.locator('a[href="/runs"]').click()
    page.get_by_role("link", name=run_id[:8]).click()
    expect(page.get_by_text(f"partition: {partition}").first).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()
    page.screenshot(path=screenshots / "4-run.png")


def _asset_page_shows_the_materialization(page: Page, partition: str, screenshots: Path) -> None:
    page.get_by_role("link", name="Catalog").click()
    page.locator(f'a[href="/assets/growingio/{CHECKED_ASSET}"]').first.click()
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_text(partition, exact=True).first).to_be_visible()
    expect(page.get_by_text("Row count")).to_be_visible()
    page.screenshot(path=screenshots / "5-asset-materialized.png")


@contextmanager
def _screenshot_and_log_on_failure(page: Page, dev: DagsterDev, screenshots: Path) -> Iterator[None]:
    try:
        yield
    except Exception:
        page.screenshot(path=screenshots / "failure.png")
        print(f"failed at {page.url}; dagster dev's log ends with:\n{log_tail(dev.log_path)}")
        raise
