"""The local server's key-pair exchange over HTTP: POST /auth/token, codes on API calls, invalidation, expiry."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from growingio_pipeline.auth import code_request_body
from growingio_pipeline.local_server import FrozenClock, LocalExportServer

KEY_PAIR = {"client_id": "pub-3c1d9e", "private_key": "priv-8a7f6e5d", "project_uid": "nxog09md"}
HOUR = "2026112910"


@pytest.fixture
def server(make_local_server) -> LocalExportServer:
    return make_local_server(calls_per_second=100.0, **KEY_PAIR)


def now_ms() -> int:
    return time.time_ns() // 10**6


def request_code(
    server: LocalExportServer,
    *,
    private_key: str = KEY_PAIR["private_key"],
    tm_offset_ms: int = 0,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> httpx.Response:
    signed = code_request_body(private_key, server.project_uid, server.project_id, now_ms() + tm_offset_ms)
    return httpx.post(
        f"{server.base_url}/auth/token",
        content=(signed if body is None else body).encode(),
        headers={"X-Client-Id": server.client_id} if headers is None else headers,
    )


def export_call(server: LocalExportServer, code: str, client_id: str = KEY_PAIR["client_id"]) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/v2/insights/hour/{server.project_id}/{HOUR}.json",
        headers={"Authorization": code, "X-Client-Id": client_id},
    )


def test_a_signed_request_gets_a_code_that_opens_the_export_api(server: LocalExportServer) -> None:
    answer = request_code(server)

    assert answer.status_code == 200
    payload = answer.json()
    assert payload["status"] == "success" and len(payload["code"]) >= 32
    assert export_call(server, payload["code"]).json()["status"] == "FINISHED"
    assert server.codes_issued == 1


def test_a_new_code_invalidates_the_old_one(server: LocalExportServer) -> None:
    old = request_code(server).json()["code"]
    new = request_code(server).json()["code"]

    assert new != old
    assert export_call(server, old).status_code == 401
    assert export_call(server, new).status_code == 200
    assert server.codes_issued == 2


def test_a_code_needs_its_client_id(server: LocalExportServer) -> None:
    code = request_code(server).json()["code"]
    assert export_call(server, code, client_id="pub-other").status_code == 401


def test_the_long_lived_token_still_opens_the_api(server: LocalExportServer) -> None:
    request_code(server)
    answer = httpx.get(
        f"{server.base_url}/v2/insights/hour/{server.project_id}/{HOUR}.json", headers={"Authorization": server.token}
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"private_key": "priv-wrong"}, 401, "auth does not match: sign with the project's private key"),
        ({"tm_offset_ms": -6 * 60 * 1000}, 401, "away from the server's time (at most 300 s)"),
        ({"tm_offset_ms": 6 * 60 * 1000}, 401, "away from the server's time (at most 300 s)"),
        ({"headers": {}}, 401, "missing X-Client-Id header"),
        ({"headers": {"X-Client-Id": "pub-other"}}, 401, "unknown X-Client-Id"),
        ({"body": "project=nxog09md&ai=9b0d1f56d5baff1a&tm=1"}, 400, "the body lacks auth"),
        ({"body": "project=nxog09md&ai=9b0d1f56d5baff1a&tm=soon&auth=ab"}, 400, "tm must be"),
    ],
    ids=["wrong_signature", "tm_6_min_ago", "tm_in_6_min", "no_client_id", "unknown_client_id", "no_auth", "bad_tm"],
)
def test_a_bad_code_request_is_refused_clearly_and_issues_nothing(
    server: LocalExportServer, request_kwargs: dict, status: int, message: str
) -> None:
    answer = request_code(server, **request_kwargs)

    assert answer.status_code == status
    assert message in answer.json()["message"]
    assert server.codes_issued == 0


def test_a_tm_within_five_minutes_is_accepted(server: LocalExportServer) -> None:
    assert request_code(server, tm_offset_ms=-4 * 60 * 1000).status_code == 200


def test_a_code_expires_after_30_days(make_local_server) -> None:
    auth_clock = FrozenClock(datetime.now(timezone.utc))
    server = make_local_server(auth_clock=auth_clock, **KEY_PAIR)
    code = request_code(server).json()["code"]

    auth_clock.advance(timedelta(days=30) - timedelta(seconds=1))
    assert export_call(server, code).status_code == 200
    auth_clock.advance(timedelta(seconds=1))
    assert export_call(server, code).status_code == 401
