"""The local export server's API over HTTP: response shape, auth, validation, rate limit, statuses."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.local_server import BEIJING, FrozenClock, LocalExportServer
from growingio_pipeline.local_server import server as server_module

PROJECT = "9b0d1f56d5baff1a"


def api_get(server: LocalExportServer, path: str, **headers: str) -> httpx.Response:
    """GET an API path with the server's token unless headers say otherwise."""
    headers = {"Authorization": server.token, **headers}
    # A generous timeout: the first call for an hour generates its parts, which takes seconds on a loaded machine.
    return httpx.get(
        f"{server.base_url}{path}", headers={k: v for k, v in headers.items() if v is not None}, timeout=120
    )


def status_of(server: LocalExportServer, export_date: str, export_type: str = "hour") -> str:
    response = api_get(server, f"/v2/insights/{export_type}/page/{PROJECT}/{export_date}.json")
    assert response.status_code == 200, response.text
    return response.json()["status"]


def test_all_types_endpoint_has_the_vendor_shape(server: LocalExportServer) -> None:
    response = api_get(server, f"/v2/insights/hour/{PROJECT}/202611291037.json?expire=30")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == [
        "status", "downloadLinks", "exportType", "exportDate", "exportVersion", "requestTime", "errorMsg"
    ]  # fmt: skip
    assert body["status"] == "FINISHED"
    assert set(body["downloadLinks"]) == set(EVENT_TYPES)
    assert all(isinstance(links, list) for links in body["downloadLinks"].values())
    assert len(body["downloadLinks"]["page"]) >= 1
    assert body["exportType"] == "hour"
    assert body["exportDate"] == "2026112910"
    assert body["exportVersion"] == "v2"
    assert body["requestTime"] == "2026-11-29 12:00"
    assert body["errorMsg"] == ""


def test_one_type_endpoint_returns_a_list_and_its_data_type(server: LocalExportServer) -> None:
    body = api_get(server, f"/v2/insights/hour/action/{PROJECT}/2026112910.json").json()

    assert body["dataType"] == "action"
    assert isinstance(body["downloadLinks"], list) and body["downloadLinks"]
    assert all("/action/" in link for link in body["downloadLinks"])


def test_day_export_truncates_the_date_and_lists_parts(server: LocalExportServer) -> None:
    body = api_get(server, f"/v2/insights/day/vstr/{PROJECT}/202611281530.json").json()

    assert (body["status"], body["exportType"], body["exportDate"]) == ("FINISHED", "day", "20261128")
    assert len(body["downloadLinks"]) >= 1


def test_request_time_follows_the_server_clock(server: LocalExportServer) -> None:
    server.clock.advance(timedelta(minutes=7, seconds=59))

    body = api_get(server, f"/v2/insights/hour/page/{PROJECT}/2026112910.json").json()

    assert body["requestTime"] == "2026-11-29 12:07"


@pytest.mark.parametrize("authorization", ["test-token", "Token test-token"])
def test_bare_and_prefixed_tokens_are_accepted(local_server: LocalExportServer, authorization: str) -> None:
    response = api_get(local_server, f"/v2/insights/hour/page/{PROJECT}/2026112910.json", Authorization=authorization)

    assert response.status_code == 200


def test_the_legacy_client_id_header_is_accepted(local_server: LocalExportServer) -> None:
    response = api_get(local_server, f"/v2/insights/hour/page/{PROJECT}/2026112910.json", **{"X-Client-Id": "pubkey"})

    assert response.status_code == 200


@pytest.mark.parametrize("authorization", [None, "", "wrong-token", "Token wrong-token", "test-token-suffix"])
def test_missing_or_wrong_token_is_401(server: LocalExportServer, authorization: str | None) -> None:
    response = api_get(server, f"/v2/insights/hour/page/{PROJECT}/2026112910.json", Authorization=authorization)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized", "errors": []}


@pytest.mark.parametrize(
    ("path", "named_problem"),
    [
        (f"/v2/insights/week/{PROJECT}/2026112910.json", "export_type"),
        (f"/v2/insights/hour/pages/{PROJECT}/2026112910.json", "data_type"),
        ("/v2/insights/hour/0000000000000000/2026112910.json", "project id"),
        (f"/v2/insights/hour/{PROJECT}/2026-11-29.json", "export_date"),
        (f"/v2/insights/hour/{PROJECT}/20261129.json", "export_date"),
        (f"/v2/insights/hour/{PROJECT}/2026113010", "export_date"),
        (f"/v2/insights/hour/{PROJECT}/2026113125.json", "export_date"),
        (f"/v2/insights/day/{PROJECT}/20261340.json", "export_date"),
        (f"/v2/insights/hour/{PROJECT}/2026112910.json?expire=0", "expire"),
        (f"/v2/insights/hour/{PROJECT}/2026112910.json?expire=10081", "expire"),
        (f"/v2/insights/hour/{PROJECT}/2026112910.json?expire=five", "expire"),
        (f"/v2/insights/hour/a/b/c/{PROJECT}/2026112910.json", "/v2/insights/"),
    ],
)
def test_bad_requests_are_400_naming_the_problem(server: LocalExportServer, path: str, named_problem: str) -> None:
    response = api_get(server, path)

    assert response.status_code == 400
    assert named_problem in response.json()["message"]


@pytest.mark.parametrize("expire", ["1", "10080"])
def test_expire_limits_are_inclusive(server: LocalExportServer, expire: str) -> None:
    assert api_get(server, f"/v2/insights/hour/page/{PROJECT}/2026112910.json?expire={expire}").status_code == 200


def test_calls_beyond_the_rate_are_429_with_retry_after(make_local_server) -> None:
    server = make_local_server(calls_per_second=0.01)  # one token in the bucket, refilled in 100 s
    path = f"/v2/insights/hour/page/{PROJECT}/2026112910.json"

    first, second = api_get(server, path), api_get(server, path)

    assert first.status_code == 200
    assert second.status_code == 429
    assert 90 <= int(second.headers["Retry-After"]) <= 100
    assert [call.status for call in server.api_calls] == [200, 429]


def test_the_default_rate_is_two_calls_per_second(local_server: LocalExportServer) -> None:
    # Ten back-to-back calls need about 4 s to stay under 2/s; the bucket holds 2, so some are refused.
    path = f"/v2/insights/hour/page/{PROJECT}/2026112910.json"
    statuses = [api_get(local_server, path).status_code for _ in range(10)]

    assert statuses[:2] == [200, 200]
    assert 429 in statuses
    assert set(statuses) == {200, 429}


def test_the_rate_limit_is_per_token(make_local_server) -> None:
    server = make_local_server(calls_per_second=0.01)
    path = f"/v2/insights/hour/page/{PROJECT}/2026112910.json"
    api_get(server, path)

    assert api_get(server, path, Authorization="another-token").status_code == 401


@pytest.mark.parametrize(
    ("export_date", "expected"),
    [
        ("2026112913", "NOT_EXISTS"),  # future
        ("2026112912", "NOT_EXISTS"),  # the current hour has not ended
        ("2026112911", "RUNNING"),  # ended at 12:00, ready at 12:40
        ("2026112910", "FINISHED"),
        ("2026111412", "FINISHED"),  # exactly 15 days ago
        ("2026111411", "NOT_EXISTS"),  # beyond the 15-day retention
    ],
)
def test_hour_status_follows_the_clock(server: LocalExportServer, export_date: str, expected: str) -> None:
    assert status_of(server, export_date) == expected


def test_an_hour_finishes_40_minutes_after_it_ends(server: LocalExportServer) -> None:
    server.clock.set(datetime(2026, 11, 29, 12, 39, 59, tzinfo=BEIJING))
    assert status_of(server, "2026112911") == "RUNNING"

    server.clock.advance(timedelta(seconds=1))
    assert status_of(server, "2026112911") == "FINISHED"


@pytest.mark.parametrize("night_hour", ["2026112823", "2026112900", "2026112901"])
def test_night_hours_finish_60_minutes_after_they_end(server: LocalExportServer, night_hour: str) -> None:
    hour_end = datetime.strptime(night_hour, "%Y%m%d%H").replace(tzinfo=BEIJING) + timedelta(hours=1)
    server.clock.set(hour_end + timedelta(minutes=59))
    assert status_of(server, night_hour) == "RUNNING"

    server.clock.set(hour_end + timedelta(minutes=60))
    assert status_of(server, night_hour) == "FINISHED"


def test_a_day_finishes_three_hours_after_it_ends(server: LocalExportServer) -> None:
    server.clock.set(datetime(2026, 11, 29, 2, 59, tzinfo=BEIJING))
    assert status_of(server, "20261128", "day") == "RUNNING"
    assert status_of(server, "20261129", "day") == "NOT_EXISTS"

    server.clock.set(datetime(2026, 11, 29, 3, 0, tzinfo=BEIJING))
    assert status_of(server, "20261128", "day") == "FINISHED"


def test_a_utc_clock_means_the_same_instant(server: LocalExportServer) -> None:
    server.clock.set(datetime(2026, 11, 28, 19, 39, tzinfo=timezone.utc))  # 03:39 Beijing
    assert status_of(server, "2026112902") == "RUNNING"

    server.clock.advance(timedelta(minutes=1))
    assert status_of(server, "2026112902") == "FINISHED"


def test_configured_error_hours_answer_error_with_a_message(make_local_server) -> None:
    server = make_local_server(
        error_hours={"2026112909": "export job failed: disk full", "20261127": "day failed"}, calls_per_second=1000.0
    )

    hour = api_get(server, f"/v2/insights/hour/{PROJECT}/2026112909.json").json()
    day = api_get(server, f"/v2/insights/day/page/{PROJECT}/20261127.json").json()

    assert (hour["status"], hour["errorMsg"], hour["downloadLinks"]) == ("ERROR", "export job failed: disk full", {})
    assert (day["status"], day["errorMsg"], day["downloadLinks"]) == ("ERROR", "day failed", [])
    assert status_of(server, "2026112910") == "FINISHED"


def test_running_polls_delay_finished_per_export(make_local_server) -> None:
    server = make_local_server(running_polls=2, calls_per_second=1000.0)

    assert [status_of(server, "2026112910") for _ in range(3)] == ["RUNNING", "RUNNING", "FINISHED"]
    assert status_of(server, "2026112909") == "RUNNING"


def test_links_appear_only_when_finished(server: LocalExportServer) -> None:
    running = api_get(server, f"/v2/insights/hour/{PROJECT}/2026112911.json").json()
    missing = api_get(server, f"/v2/insights/hour/page/{PROJECT}/2026112913.json").json()

    assert running["status"] == "RUNNING" and running["downloadLinks"] == {}
    assert missing["status"] == "NOT_EXISTS" and missing["downloadLinks"] == []


def test_unknown_paths_are_404(server: LocalExportServer) -> None:
    assert httpx.get(f"{server.base_url}/v3/whatever").status_code == 404


def test_api_calls_are_recorded_without_query_strings(server: LocalExportServer) -> None:
    api_get(server, f"/v2/insights/hour/page/{PROJECT}/2026112910.json?expire=9")
    api_get(server, f"/v2/insights/hour/page/{PROJECT}/2026112910.json", Authorization="nope")

    assert [(call.path, call.status) for call in server.api_calls] == [
        (f"/v2/insights/hour/page/{PROJECT}/2026112910.json", 200),
        (f"/v2/insights/hour/page/{PROJECT}/2026112910.json", 401),
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"token": ""}, "token"),
        ({"project_id": "9b0d/../x"}, "project_id"),
        ({"calls_per_second": 0}, "calls_per_second"),
        ({"download_bytes_per_second": -1.0}, "download_bytes_per_second"),
        ({"rows_per_hour": -1}, "rows_per_hour"),
        ({"part_size_bytes": 0}, "part_size_bytes"),
        ({"error_hours": {"2026-11-29": "x"}}, "export_date"),
    ],
)
def test_bad_server_settings_are_rejected(setting: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalExportServer(**setting)


def test_a_failure_inside_the_server_is_a_500_not_a_dropped_connection(
    server: LocalExportServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A generator bug stands in for any failure inside the server.
    def broken_generator(*args: object, **kwargs: object) -> None:
        raise RuntimeError("generation failed")

    monkeypatch.setattr(server_module, "generate_export", broken_generator)

    response = api_get(server, f"/v2/insights/hour/vstr/{PROJECT}/2026112910.json")

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error", "errors": []}


def test_the_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock(datetime(2026, 11, 29, 12, 0, tzinfo=BEIJING))
    clock.advance(timedelta(minutes=90))
    assert clock() == datetime(2026, 11, 29, 13, 30, tzinfo=BEIJING)

    clock.set(datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert clock() == datetime(2026, 1, 1, 8, 0, tzinfo=BEIJING)
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2026, 1, 1))


def test_logs_hold_no_token_and_no_link_signature(server: LocalExportServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="growingio_pipeline.local_server")
    body = api_get(server, f"/v2/insights/hour/vstr/{PROJECT}/2026112910.json").json()
    link = body["downloadLinks"][0]
    httpx.get(link)
    api_get(server, f"/v2/insights/hour/vstr/{PROJECT}/2026112910.json", Authorization="secret-attempt")

    assert f"/v2/insights/hour/vstr/{PROJECT}/2026112910.json" in caplog.text
    signature = link.split("Signature=")[1]
    for secret in (server.token, "secret-attempt", signature):
        assert secret not in caplog.text
