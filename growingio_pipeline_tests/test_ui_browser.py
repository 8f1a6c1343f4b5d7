"""The newcomer's path through the Dagster UI, in headless Chromium against `dagster dev` and the local server.

The UI lists the ten raw assets and the analytics models, with their checks (the models' are their dbt tests),
materializes one partition of all of them from the partition dialog, and the run's rows land in the lake.
Screenshots are saved under the test's tmp directory (the path is printed).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect, sync_playwright

from growingio_pipeline.assets import CHECKS_NEED_A_PARTITION
from growingio_pipeline.checks import CHECK_KINDS
from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.partitions import BEIJING, KEY_FORMATS
from growingio_pipeline_tests.analytics_harness import ANALYTICS_ASSETS, MODELS
from growingio_pipeline_tests.conftest import PROJECT_ROOT
from growingio_pipeline_tests.dagster_processes import (
    DagsterDev,
    lingering_group_members,
    log_tail,
    running_dagster_dev,
    running_local_server_command,
)
from growingio_pipeline_tests.pipeline_harness import lake_environment, read_lake
from growingio_pipeline_tests.test_demo import run_demo

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
CHECKED_MODEL = "sessions"
ALL_ASSETS = len(EVENT_TYPES) + len(MODELS)
VIEWPORT = ViewportSize(width=1400, height=1000)  # the docs' screenshots are this size
# The catalog renders only the rows in view (about 45 px each): a window tall enough for every asset and its
# group headings lets the test count them all.
CATALOG_VIEWPORT = ViewportSize(width=1400, height=max(1000, 60 * (ALL_ASSETS + 4)))

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
    lake_dir = tmp_path / "lake"
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    print(f"screenshots in {screenshots}")

    with running_local_server_command(token=TOKEN, project_id=PROJECT_ID, rows_per_hour=PAGE_ROWS_PER_HOUR) as server:
        env = {
            "GROWINGIO_BASE_URL": server.base_url,
            "GROWINGIO_TOKEN": TOKEN,
            "GROWINGIO_PROJECT_ID": PROJECT_ID,
            **lake_environment(lake_dir),
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

    assert lingering_group_members(dagster_group) == [], "dagster dev left processes behind"
    assert lingering_group_members(server_group) == [], "the local export server left processes behind"
    with read_lake(lake_dir) as conn:
        page_rows = conn.execute(
            "SELECT count(*) FROM growingio.page WHERE _partition_key = ?", [partition]
        ).fetchone()[0]
        page_views = conn.execute("SELECT count(*) FROM analytics.page_views").fetchone()[0]
    assert page_rows == PAGE_ROWS_PER_HOUR
    assert page_views > 0  # the same run built the models


def _drive_the_ui(browser: Browser, dev: DagsterDev, partition: str, screenshots: Path) -> None:
    page = _new_page(browser, CATALOG_VIEWPORT)
    with _screenshot_and_log_on_failure(page, dev, screenshots):
        page.goto(dev.base_url)
        _catalog_lists_the_raw_assets_and_the_models(page, screenshots)
        _checks_are_listed(page, screenshots)
        _model_checks_are_its_dbt_tests(page, screenshots)
        _launch_one_partition(page, partition, screenshots)
        run_id = _wait_for_run(dev, partition)
        _runs_page_shows_success(page, run_id, partition, screenshots)
        _asset_page_shows_the_materialization(page, partition, screenshots)
        _model_page_shows_the_materialization_and_passed_checks(page, partition, screenshots)


def _catalog_lists_the_raw_assets_and_the_models(page: Page, screenshots: Path) -> None:
    page.get_by_role("link", name="Catalog").click()
    for prefix, group, names in (("growingio", "growingio", set(EVENT_TYPES)), ("analytics", "analytics", set(MODELS))):
        asset_links = page.locator(f'a[href^="/assets/{prefix}/"]')
        expect(asset_links).to_have_count(len(names))
        listed = {href.removeprefix(f"/assets/{prefix}/").split("?")[0] for href in _hrefs(asset_links)}
        assert listed == names
        group_links = page.locator('a[href*="/asset-groups"]').filter(has_text=group)
        expect(group_links).to_have_count(len(names))
    page.screenshot(path=screenshots / "1-catalog.png")


def _hrefs(links: Locator) -> list[str]:
    return [link.get_attribute("href") for link in links.all()]


def _checks_are_listed(page: Page, screenshots: Path) -> None:
    page.locator(f'a[href="/assets/growingio/{CHECKED_ASSET}"]').first.click()
    page.get_by_role("tab", name="Checks").click()
    for kind in CHECK_KINDS:
        expect(page.get_by_text(kind.name, exact=True).first).to_be_visible()
    page.screenshot(path=screenshots / "2-checks.png")


def _model_checks_are_its_dbt_tests(page: Page, screenshots: Path) -> None:
    page.get_by_role("link", name="Catalog").click()
    page.locator(f'a[href="/assets/analytics/{CHECKED_MODEL}"]').first.click()
    page.get_by_role("tab", name="Checks").click()
    dbt_tests = [key.name for key in ANALYTICS_ASSETS.check_keys if key.asset_key.path == ["analytics", CHECKED_MODEL]]
    assert dbt_tests, f"analytics/{CHECKED_MODEL} has no dbt tests"
    expect(page.get_by_text(f"Checks ({len(dbt_tests)})", exact=True)).to_be_visible()
    for name in dbt_tests:
        # The list shortens long names in the middle (the full name is in a hidden element inside the shortened
        # one): filter down to the check, open it, and its page shows the full name.
        page.get_by_placeholder("Filter checks").fill(name)
        page.get_by_text(name, exact=True).first.locator("xpath=..").click()
        expect(page.get_by_text(name, exact=True).filter(visible=True).first).to_be_visible()
    page.screenshot(path=screenshots / "2-model-checks.png")


def _launch_one_partition(page: Page, partition: str, screenshots: Path) -> None:
    """Every asset of the catalog, raw and models, for ``partition`` in one run."""
    page.get_by_role("link", name="Catalog").click()
    expect(page.locator('a[href^="/assets/analytics/"]')).to_have_count(len(MODELS))
    # The checkbox input is hidden behind its styled label; the header's selects every row. The catalog keeps
    # a selection made before, and a second click would clear it.
    if not page.get_by_role("checkbox").first.is_checked():
        page.locator("label").filter(has=page.get_by_role("checkbox")).first.click()
    page.get_by_role("button", name="Materialize selected").click()
    dialog = page.get_by_role("dialog").filter(has_text=f"Launch runs to materialize {ALL_ASSETS} assets")
    partitions_box = dialog.get_by_placeholder("ex:")
    partitions_box.fill(partition)
    partitions_box.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    page.screenshot(path=screenshots / "3-partition-dialog.png")
    dialog.get_by_role("button", name="Launch 1 run").click()
    expect(dialog).to_be_hidden()


def _wait_for_run(dev: DagsterDev, partition: str, expected_status: str = "SUCCESS") -> str:
    """The run's id once it is done (GraphQL says when to look; the UI is what the test asserts on)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    runs: list[dict] = []
    while time.monotonic() < deadline:
        response = httpx.post(dev.graphql_url, json={"query": RUNS_QUERY, "variables": {"partition": partition}})
        runs = response.json()["data"]["runsOrError"]["results"]
        if len(runs) == 1 and runs[0]["status"] in RUN_STATUSES_DONE:
            assert runs[0]["status"] == expected_status, f"the run of partition {partition} ended {runs[0]['status']}"
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


def _model_page_shows_the_materialization_and_passed_checks(page: Page, partition: str, screenshots: Path) -> None:
    page.get_by_role("link", name="Catalog").click()
    page.locator(f'a[href="/assets/analytics/{CHECKED_MODEL}"]').first.click()
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_text(partition, exact=True).first).to_be_visible()
    page.get_by_role("tab", name="Checks").click()
    checks = sum(key.asset_key.path == ["analytics", CHECKED_MODEL] for key in ANALYTICS_ASSETS.check_keys)
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(checks)  # the list's status of each check
    page.screenshot(path=screenshots / "5-model-materialized.png")


@contextmanager
def _screenshot_and_log_on_failure(page: Page, dev: DagsterDev, screenshots: Path) -> Iterator[None]:
    try:
        yield
    except Exception:
        page.screenshot(path=screenshots / "failure.png")
        print(f"failed at {page.url}; dagster dev's log ends with:\n{log_tail(dev.log_path)}")
        raise


ALL_RUNS_QUERY = """
query AllRuns {
  runsOrError { ... on Runs { results { runId status tags { key value } } } ... on PythonError { message } }
}
"""
DEMO_HOURS = 2
ERROR_MSG = "export job crashed: disk full"
DOCS = PROJECT_ROOT / "docs"


@pytest.mark.browser
def test_the_ui_shows_the_demos_hours_and_every_hours_outcome(tmp_path: Path) -> None:
    """From the demo's state: its hours show materialized, Execute all on the Checks tab fails with what to
    do, and a NOT_EXISTS hour and an ERROR hour each show as such. Saves README's screenshots in docs/."""
    if not CHROMIUM.exists():
        pytest.fail(f"the UI test needs Debian's chromium at {CHROMIUM}")
    lake_dir, dagster_home = tmp_path / "lake", tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
    demo_hours = run_demo(lake_dir, dagster_home, hours=DEMO_HOURS).partitions()
    day = datetime.strptime(demo_hours[0], KEY_FORMATS["hour"])
    error_hour = (day + timedelta(hours=3)).strftime(KEY_FORMATS["hour"])
    # Past the export server's 15-day retention (real clock): NOT_EXISTS, and the partition set's first hour.
    not_exists_hour = (day - timedelta(days=16)).strftime(KEY_FORMATS["hour"])
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    print(f"screenshots in {screenshots}")

    with running_local_server_command(
        token=TOKEN,
        project_id=PROJECT_ID,
        rows_per_hour=PAGE_ROWS_PER_HOUR,
        extra_args=["--error-hour", f"{error_hour[:10]}={ERROR_MSG}"],
    ) as server:
        env = {
            "GROWINGIO_BASE_URL": server.base_url,
            "GROWINGIO_TOKEN": TOKEN,
            "GROWINGIO_PROJECT_ID": PROJECT_ID,
            **lake_environment(lake_dir),
            "GROWINGIO_START_DATE": not_exists_hour,
            "GROWINGIO_EXPORT_TYPE": "hour",
        }
        with (
            running_dagster_dev(dagster_home, env, module=None, cwd=PROJECT_ROOT) as dev,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = _new_page(browser)
                with _screenshot_and_log_on_failure(page, dev, screenshots):
                    page.goto(dev.base_url)
                    _demo_hours_are_materialized(page, demo_hours)
                    _execute_all_checks_fails_with_what_to_do(page, dev, screenshots)
                    _launch_one_partition(page, not_exists_hour, screenshots)
                    _wait_for_run(dev, not_exists_hour, expected_status="SUCCESS")
                    _launch_one_partition(page, error_hour, screenshots)
                    _wait_for_run(dev, error_hour, expected_status="FAILURE")
                    _hour_shows(
                        page, demo_hours[-1], ["dagster/partition_row_count"], DOCS / "ui-loaded.png", loaded=True
                    )
                    _hour_shows(page, not_exists_hour, ["NOT_EXISTS"], DOCS / "ui-not-exists.png")
                    _hour_shows(page, error_hour, ["ERROR", ERROR_MSG], DOCS / "ui-error.png")
            finally:
                browser.close()


def _new_page(browser: Browser, viewport: ViewportSize = VIEWPORT) -> Page:
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)  # a 2-core machine launching a run needs more than the default 5 s
    # A fresh DAGSTER_HOME greets the first visitor with a newsletter dialog over whatever page is open.
    page.add_locator_handler(
        page.get_by_role("dialog").filter(has_text="Join the Dagster community"),
        lambda dialog: dialog.get_by_role("button", name="Skip").click(),
    )
    return page


def _open_asset(page: Page, tab: str | None = None) -> None:
    page.get_by_role("link", name="Catalog").click()
    page.locator(f'a[href="/assets/growingio/{CHECKED_ASSET}"]').first.click()
    if tab:
        page.get_by_role("tab", name=tab).click()


def _demo_hours_are_materialized(page: Page, demo_hours: list[str]) -> None:
    _open_asset(page)
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_text(demo_hours[-1], exact=True).first).to_be_visible()
    _open_asset(page, "Partitions")
    expect(page.get_by_text(f"Materialized ({len(demo_hours)})").first).to_be_visible()


def _execute_all_checks_fails_with_what_to_do(page: Page, dev: DagsterDev, screenshots: Path) -> None:
    _open_asset(page, "Checks")
    earlier = {run["runId"] for run in _runs(dev)}
    page.get_by_role("button", name="Execute all").click()
    run = _wait_for_new_run(dev, earlier)
    assert run["status"] == "FAILURE", run
    assert "dagster/partition" not in run["tags"], "Execute all launches a run without a partition"
    page.goto(f"{dev.base_url}/runs/{run['runId']}")
    expect(page.get_by_text(CHECKS_NEED_A_PARTITION).first).to_be_visible()
    expect(page.get_by_text("DagsterInvariantViolationError")).to_have_count(0)
    page.screenshot(path=screenshots / "6-execute-all-checks.png")


def _runs(dev: DagsterDev) -> list[dict]:
    """Every run of the instance, with its tags as a dict."""
    response = httpx.post(dev.graphql_url, json={"query": ALL_RUNS_QUERY})
    runs = response.json()["data"]["runsOrError"]["results"]
    return [{**run, "tags": {tag["key"]: tag["value"] for tag in run["tags"]}} for run in runs]


def _wait_for_new_run(dev: DagsterDev, earlier: set[str]) -> dict:
    """The one run not in ``earlier``, once it is done."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    new: list[dict] = []
    while time.monotonic() < deadline:
        new = [run for run in _runs(dev) if run["runId"] not in earlier]
        if len(new) == 1 and new[0]["status"] in RUN_STATUSES_DONE:
            return new[0]
        time.sleep(1.0)
    raise AssertionError(f"no new run was done within {RUN_TIMEOUT_S:.0f} s: {new}")


def _hour_shows(page: Page, partition: str, texts: list[str], screenshot: Path, *, loaded: bool = False) -> None:
    """The hour, picked in the asset's Partitions tab, shows ``texts``: a loaded hour in its materialization,
    another in its events (the observation), expanded. Saved as ``screenshot``."""
    _open_asset(page, "Partitions")
    page.get_by_placeholder("Filter by name").fill(partition)
    page.get_by_text(partition, exact=True).first.click()
    scope: Page | Locator = page
    if not loaded:
        page.get_by_role("button", name="View all historical events (1)").click()
        scope = page.get_by_role("dialog")
        scope.get_by_text(partition, exact=True).last.click()  # expands the event's metadata
    for text in texts:
        expect(scope.get_by_text(text).first).to_be_visible()
    page.screenshot(path=screenshot)
    page.keyboard.press("Escape")
