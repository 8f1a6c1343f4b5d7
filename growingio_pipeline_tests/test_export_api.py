"""Export client against the local export server over HTTP: statuses, retries, polling, auth."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.export_api import (
    ApiHttpError,
    ApiUnavailableError,
    AuthenticationError,
    ClientSettings,
    ExportClient,
    ExportStatus,
    ExportStillRunning,
    InvalidRequestError,
    ResponseFormatError,
)
from growingio_pipeline_tests.conftest import client_for, server_settings

FINISHED_HOUR = "2026112910"  # the fixtures' clock stands at 2026-11-29 12:00 Beijing time


class _CannedServer(ThreadingHTTPServer):
    """Answers every GET with one fixed status and body; records each request's headers."""

    daemon_threads = True

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.status, self.body = status, body
        self.request_headers: list[dict[str, str]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CannedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _CannedServer

    def do_GET(self) -> None:
        self.server.request_headers.append(dict(self.headers))
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def canned_server() -> Iterator[Callable[[int, bytes], _CannedServer]]:
    """A factory of loopback servers that answer a fixed body: for bodies the local server cannot send."""
    servers: list[_CannedServer] = []

    def make(status: int, body: bytes) -> _CannedServer:
        server = _CannedServer(status, body)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def canned_client(server: _CannedServer, **overrides: Any) -> ExportClient:
    values: dict[str, Any] = {"max_retries": 0, **overrides}
    settings = ClientSettings(base_url=server.base_url, token="canned-token", project_id="9b0d1f56d5baff1a", **values)
    return ExportClient(settings)


def test_finished_export_lists_links_for_every_event_type(fast_server: Any) -> None:
    with client_for(fast_server) as client:
        result = client.request_export("hour", FINISHED_HOUR)
    assert result.status is ExportStatus.FINISHED
    assert result.export_date == FINISHED_HOUR
    assert set(result.download_links) == set(EVENT_TYPES)
    assert all(link.startswith(fast_server.base_url) for links in result.download_links.values() for link in links)
    assert result.request_time


def test_one_type_endpoint_returns_only_that_type(fast_server: Any) -> None:
    with client_for(fast_server) as client:
        result = client.request_export("hour", FINISHED_HOUR + "00", data_type="page")
    assert result.status is ExportStatus.FINISHED
    assert list(result.download_links) == ["page"]
    assert result.download_links["page"]


def test_export_not_ready_yet_is_running(fast_server: Any) -> None:
    with client_for(fast_server) as client:
        result = client.request_export("hour", "2026112911")
    assert result.status is ExportStatus.RUNNING
    assert result.download_links == {}


def test_export_older_than_retention_does_not_exist(fast_server: Any) -> None:
    with client_for(fast_server) as client:
        result = client.request_export("day", "20261101")
    assert result.status is ExportStatus.NOT_EXISTS
    assert result.download_links == {}


def test_failed_export_is_returned_with_its_error_message(make_local_server: Any) -> None:
    server = make_local_server(calls_per_second=100.0, error_hours={FINISHED_HOUR: "export job failed"})
    with client_for(server) as client:
        result = client.request_export("hour", FINISHED_HOUR)
    assert result.status is ExportStatus.ERROR
    assert result.error_msg == "export job failed"


def test_429_then_success_honours_retry_after(make_local_server: Any) -> None:
    # One call per 4 s, so that even on a loaded machine the client's second call comes before the next
    # slot: it gets 429 with Retry-After: 4, and one retry after a 0.01 s backoff would hit 429 again.
    server = make_local_server(calls_per_second=0.25)
    server.prepare([FINISHED_HOUR])
    with client_for(server, calls_per_second=100.0, max_retries=1, backoff_max_s=8.0) as client:
        first = client.request_export("hour", FINISHED_HOUR)
        second = client.request_export("hour", FINISHED_HOUR)
    assert first.status is second.status is ExportStatus.FINISHED
    assert [call.status for call in server.api_calls] == [200, 429, 200]


def test_503_twice_then_success(fast_server: Any) -> None:
    fast_server.faults.fail_next_api_calls(2, status=503)
    with client_for(fast_server) as client:
        result = client.request_export("hour", FINISHED_HOUR)
    assert result.status is ExportStatus.FINISHED
    assert len(fast_server.api_calls) == 3


def test_persistent_5xx_gives_up_after_the_retry_budget(fast_server: Any) -> None:
    fast_server.faults.fail_next_api_calls(10, status=502)
    with client_for(fast_server, max_retries=2) as client, pytest.raises(ApiUnavailableError) as caught:
        client.request_export("hour", FINISHED_HOUR)
    assert "failed 3 times" in str(caught.value) and "HTTP 502" in str(caught.value)
    assert caught.value.status_code == 502
    assert len(fast_server.api_calls) == 3


def test_read_timeout_is_retried(fast_server: Any) -> None:
    fast_server.prepare([FINISHED_HOUR])  # generating the hour's parts must not count against the timeout
    fast_server.faults.stall_next_api_calls(1, seconds=10.0)
    with client_for(fast_server, read_timeout_s=2.0) as client:
        result = client.request_export("hour", FINISHED_HOUR)
    assert result.status is ExportStatus.FINISHED


def test_connection_refused_is_retried_then_reported(make_local_server: Any) -> None:
    server = make_local_server()
    base_url, token, project_id = server.base_url, server.token, server.project_id
    server.stop()
    settings = ClientSettings(
        base_url=base_url,
        token=token,
        project_id=project_id,
        max_retries=1,
        backoff_base_s=0.01,
        backoff_max_s=0.02,
        connect_timeout_s=1.0,
    )
    with ExportClient(settings) as client, pytest.raises(ApiUnavailableError, match="ConnectError"):
        client.request_export("hour", FINISHED_HOUR)


def test_running_twice_then_finished(make_local_server: Any) -> None:
    server = make_local_server(calls_per_second=100.0, running_polls=2)
    with client_for(server) as client:
        result = client.wait_for_export("hour", FINISHED_HOUR)
    assert result.status is ExportStatus.FINISHED
    assert len(server.api_calls) == 3


def test_running_past_the_deadline_raises_export_still_running(fast_server: Any) -> None:
    with client_for(fast_server, running_deadline_s=0.2) as client, pytest.raises(ExportStillRunning) as caught:
        client.wait_for_export("hour", "2026112911")
    assert caught.value.export_date == "202611291100"
    assert "still RUNNING" in str(caught.value)
    assert len(fast_server.api_calls) >= 2


def test_wrong_token_fails_at_once_with_a_clear_message(fast_server: Any) -> None:
    with (
        client_for(fast_server, token="wrong-token") as client,
        pytest.raises(AuthenticationError, match="check the API token") as caught,
    ):
        client.request_export("hour", FINISHED_HOUR)
    assert "wrong-token" not in str(caught.value)
    assert len(fast_server.api_calls) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.request_export("week", FINISHED_HOUR), "export_type"),
        (lambda c: c.request_export("hour", FINISHED_HOUR, data_type="clicks"), "data_type"),
        (lambda c: c.request_export("hour", FINISHED_HOUR, expire_minutes=0), "expire"),
        (lambda c: c.request_export("hour", FINISHED_HOUR, expire_minutes=10081), "expire"),
        (lambda c: c.request_export("hour", "2026-11-29"), "export_date"),
        (lambda c: c.request_export("hour", "2026113099"), "export_date"),
        (lambda c: c.wait_for_export("day", "2026/11/29"), "export_date"),
    ],
)
def test_invalid_inputs_are_rejected_before_any_request(fast_server: Any, call: Any, message: str) -> None:
    with client_for(fast_server) as client, pytest.raises(InvalidRequestError, match=message):
        call(client)
    assert fast_server.api_calls == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([1, 2], "expected a JSON object"),
        ({"status": "PAUSED"}, "unknown status 'PAUSED'"),
        ({"status": 1}, "unknown status"),
        ({"status": "FINISHED", "downloadLinks": ["http://x/a.gz"]}, "downloadLinks should be an object"),
        ({"status": "FINISHED", "downloadLinks": None}, "downloadLinks should be an object"),
        ({"status": "FINISHED", "downloadLinks": {"page": "http://x/a.gz"}}, "should be a list"),
        ({"status": "FINISHED", "downloadLinks": {"page": [42]}}, "should be a string"),
        ({"status": "FINISHED", "downloadLinks": {"page": ["file:///etc/passwd"]}}, "not an http(s) URL"),
        ({"status": "FINISHED", "downloadLinks": {"page": ["ftp://h/p.gz?sig=1"]}}, "not an http(s) URL"),
        ({"status": "ERROR", "errorMsg": 7}, "'errorMsg' should be a string"),
        ({"status": "FINISHED", "exportDate": "2026010100", "downloadLinks": {}}, "asked for export date"),
        ({"status": "FINISHED", "exportType": "day", "downloadLinks": {}}, "asked for a hour export"),
    ],
)
def test_unusable_responses_raise_a_clear_error(fast_server: Any, body: Any, problem: str) -> None:
    fast_server.override_next_api_responses(body)
    with client_for(fast_server) as client, pytest.raises(ResponseFormatError) as caught:
        client.request_export("hour", FINISHED_HOUR)
    assert problem in str(caught.value)
    assert "HTTP 200" in str(caught.value)
    assert "sig=1" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b"<html>maintenance</html>", "not JSON"), (b'{"status": "FINISHED", ', "not JSON"), (b"\xff\xfe", "not JSON")],
)
def test_a_body_that_is_not_json_raises_a_clear_error(canned_server: Any, body: bytes, problem: str) -> None:
    with canned_client(canned_server(200, body)) as client, pytest.raises(ResponseFormatError) as caught:
        client.request_export("hour", FINISHED_HOUR)
    assert problem in str(caught.value) and "HTTP 200" in str(caught.value)


def test_the_excerpt_of_a_bad_body_hides_token_and_link_signatures(canned_server: Any) -> None:
    body = b'{"status": "WEIRD", "echo": "canned-token", "link": "https://s3/p.gz?X-Amz-Signature=abc123"}'
    with canned_client(canned_server(200, body)) as client, pytest.raises(ResponseFormatError) as caught:
        client.request_export("hour", FINISHED_HOUR)
    assert "unknown status 'WEIRD'" in str(caught.value)
    assert "canned-token" not in str(caught.value) and "abc123" not in str(caught.value)


def test_authorization_and_client_id_headers_are_sent(canned_server: Any) -> None:
    server = canned_server(200, json.dumps({"status": "RUNNING"}).encode())
    with canned_client(server, client_id="public-key-1") as client:
        client.request_export("hour", FINISHED_HOUR)
    with canned_client(server) as client:
        client.request_export("hour", FINISHED_HOUR)
    with_id, without_id = server.request_headers
    assert with_id["Authorization"] == without_id["Authorization"] == "canned-token"
    assert with_id["X-Client-Id"] == "public-key-1"
    assert "X-Client-Id" not in without_id


def test_an_unexpected_client_error_status_is_not_retried(canned_server: Any) -> None:
    server = canned_server(404, b'{"message": "Not Found"}')
    with canned_client(server, max_retries=3) as client, pytest.raises(ApiHttpError) as caught:
        client.request_export("hour", FINISHED_HOUR)
    assert caught.value.status_code == 404 and "Not Found" in str(caught.value)
    assert len(server.request_headers) == 1


def test_links_for_an_unknown_event_type_are_ignored_with_a_warning(
    fast_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    body = {
        "status": "FINISHED",
        "exportDate": FINISHED_HOUR,
        "downloadLinks": {"page": ["http://127.0.0.1:1/p.gz?s=1"], "heatmap": ["http://x/h.gz"]},
    }
    fast_server.override_next_api_responses(body)
    with caplog.at_level(logging.WARNING), client_for(fast_server) as client:
        result = client.request_export("hour", FINISHED_HOUR)
    assert list(result.download_links) == ["page"]
    assert "unknown event type 'heatmap'" in caplog.text


def test_client_stays_under_two_calls_per_second(make_local_server: Any) -> None:
    server = make_local_server(calls_per_second=2.0)
    # No retries: a single 429 from the server's limiter would fail the test.
    with client_for(server, calls_per_second=2.0, max_retries=0) as client:
        statuses = [client.request_export("hour", FINISHED_HOUR).status for _ in range(5)]
    assert statuses == [ExportStatus.FINISHED] * 5


_CALLS_FROM_ANOTHER_PROCESS = """
import json, sys
from growingio_pipeline.export_api import ClientSettings, ExportClient
settings = ClientSettings(**json.loads(sys.argv[1]))
with ExportClient(settings) as client:
    print([client.request_export("hour", sys.argv[2]).status.value for _ in range(4)])
"""


def test_clients_in_separate_processes_share_the_two_calls_per_second(make_local_server: Any) -> None:
    server = make_local_server(calls_per_second=2.0)
    # No retries: a single 429 from the server's limiter fails a process. Two runs of one host, two processes.
    settings = json.dumps({**server_settings(server), "calls_per_second": 2.0, "max_retries": 0})
    command = [sys.executable, "-c", _CALLS_FROM_ANOTHER_PROCESS, settings, FINISHED_HOUR]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], [stderr[-2000:] for _, stderr in outputs]
    assert [call.status for call in server.api_calls] == [200] * 8
