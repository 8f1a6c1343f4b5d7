"""The expiry and freshness checks in a real Dagster run, and the webhook alerts against a local receiver."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from growingio_pipeline.alerts import WEBHOOK_ENV, redacted, send_alert
from growingio_pipeline.catchup import CatchUpPolicy, WindowState
from growingio_pipeline.event_types import BEIJING, EVENT_TYPES
from growingio_pipeline.guards import EXPIRY_CHECK, FRESHNESS_CHECK, build_guards
from growingio_pipeline.resources import GrowingIOExportResource
from growingio_pipeline.warehouse import LoadStatus
from growingio_pipeline_tests.ledger_support import insert_attempts
from growingio_pipeline_tests.pipeline_harness import (
    EVENT_ASSETS,
    FINISHED_PARTITION,
    materialize_partition,
    warehouse_resource,
)
from growingio_pipeline_tests.webhook_receiver import running_webhook_receiver

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=BEIJING)
POLICY = CatchUpPolicy("hour", datetime(2026, 11, 1, tzinfo=BEIJING))
TOKEN = "tok-5e1f0c9a7b3d2e81ff42"
NEAR_EXPIRY = "202611141500"
"""Leaves the window at 2026-11-29 15:00 Beijing: 2.5 hours after NOW."""


def seed(lake_dir: Path, unloaded: set[str]) -> None:
    starts = WindowState(POLICY, NOW).ready_starts()
    keys = [POLICY.key(start) for start in starts if POLICY.key(start) not in unloaded]
    insert_attempts(lake_dir, [(key, LoadStatus.LOADED, NOW - timedelta(hours=1)) for key in keys])


def run_guards(lake_dir: Path) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    guards = build_guards(POLICY, clock=lambda: NOW)
    defs = dg.Definitions(
        assets=[EVENT_ASSETS],
        asset_checks=[guards.checks],
        jobs=[guards.job],
        resources={"growingio": GrowingIOExportResource(), "warehouse": warehouse_resource(lake_dir)},
    )
    result = defs.resolve_job_def(guards.job.name).execute_in_process()
    assert result.success
    return {
        (evaluation.asset_key.path[-1], evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }


@pytest.fixture
def webhook(monkeypatch):
    with running_webhook_receiver() as receiver:
        monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
        monkeypatch.setenv("GROWINGIO_TOKEN", TOKEN)
        yield receiver


def test_an_unloaded_hour_near_expiry_fails_the_check_and_posts_an_alert(tmp_path, webhook):
    path = tmp_path / "lake"
    seed(path, {NEAR_EXPIRY, "202611161300"})  # the second is 2 days from expiry: not at risk yet
    evaluations = run_guards(path)
    for name in EVENT_TYPES:
        expiry = evaluations[(name, EXPIRY_CHECK)]
        assert not expiry.passed
        assert expiry.metadata["partition_keys"].value == NEAR_EXPIRY
        assert evaluations[(name, FRESHNESS_CHECK)].passed
    [alert] = webhook.payloads
    assert alert["event"] == "expiry_risk"
    assert alert["partitions_at_risk"] == 1
    [partition] = alert["partitions"]
    assert partition["partition_key"] == NEAR_EXPIRY
    assert partition["hours_left"] == 2.5
    assert partition["missing_event_types"] == list(EVENT_TYPES)


def test_everything_loaded_passes_both_checks_and_stays_quiet(tmp_path, webhook):
    path = tmp_path / "lake"
    seed(path, set())
    evaluations = run_guards(path)
    assert all(evaluation.passed for evaluation in evaluations.values())
    assert len(evaluations) == 2 * len(EVENT_TYPES)
    assert webhook.payloads == []


def test_the_freshness_check_fails_when_the_newest_loaded_hour_lags_more_than_two_hours(tmp_path, webhook):
    path = tmp_path / "lake"
    seed(path, {"202611290800", "202611290900", "202611291000"})
    evaluations = run_guards(path)
    freshness = evaluations[("page", FRESHNESS_CHECK)]
    assert not freshness.passed
    assert freshness.metadata["lag_hours"].value == 3.0
    assert freshness.metadata["newest_ready_partition"].value == "202611291000"
    assert evaluations[("page", EXPIRY_CHECK)].passed


def test_a_failed_run_posts_an_alert_without_the_token_or_a_signature(make_local_server, tmp_path, webhook):
    vendor_error = f"export failed, see https://cdn.example/x.csv.gz?Expires=1&Signature=s1gn4ture; token {TOKEN}"
    server = make_local_server(token=TOKEN, error_hours={FINISHED_PARTITION[:10]: vendor_error})
    with dg.instance_for_test() as instance:
        result = materialize_partition(server, tmp_path / "lake", instance=instance, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        context = dg.build_run_status_sensor_context(
            sensor_name="growingio_alert_on_run_failure",
            dagster_event=result.get_run_failure_event(),
            dagster_instance=instance,
            dagster_run=run,
        ).for_run_failure()
        build_guards(POLICY).failure_sensor(context)
    [raw] = webhook.raw_bodies
    assert TOKEN not in raw
    assert "s1gn4ture" not in raw
    alert = json.loads(raw)
    assert alert["event"] == "run_failed"
    assert alert["run_id"] == result.run_id
    assert alert["partition_key"] == FINISHED_PARTITION
    assert "failed on the vendor's side: export failed, see https://cdn.example/x.csv.gz?***" in alert["errors"][0]


def test_every_text_of_an_alert_is_redacted(monkeypatch):
    monkeypatch.setenv("GROWINGIO_TOKEN", TOKEN)
    payload = redacted(
        {
            "message": f"Authorization: {TOKEN}",
            "nested": {"link": "https://cdn.example/part.gz?Signature=abc&Expires=9"},
            "list": ["postgres://user:hunter2@db.example/catalog", 3],
        }
    )
    text = json.dumps(payload)
    for secret in (TOKEN, "Signature=abc", "hunter2"):
        assert secret not in text
    assert payload["list"][1] == 3


def test_a_failing_webhook_is_reported_not_raised(webhook, caplog):
    webhook.status = 500
    assert send_alert({"event": "test"}) is False
    assert "answered HTTP 500" in caplog.text
    assert "not-a-real-secret" not in caplog.text  # the webhook's path is its secret


def test_no_webhook_no_alert(monkeypatch):
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    assert send_alert({"event": "test"}) is False
