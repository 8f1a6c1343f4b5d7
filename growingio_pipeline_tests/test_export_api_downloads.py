"""Export client downloads against the local export server: verification, fresh links, redaction."""

from __future__ import annotations

import csv
import gzip
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from growingio_pipeline.export_api import (
    DownloadError,
    ExportApiError,
    ExportClient,
    ExportResult,
    ExportStatus,
    InvalidRequestError,
)
from growingio_pipeline_tests.conftest import client_for
from growingio_pipeline_tests.test_export_api import FINISHED_HOUR


def csv_rows(paths: list[Path]) -> int:
    """Data rows in gzip CSV parts, read in the vendor's dialect (escape backslash, no doubled quotes)."""
    rows = 0
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
            reader = csv.reader(text, escapechar="\\", doublequote=False)
            next(reader)
            rows += sum(1 for _ in reader)
    return rows


def fetch(client: ExportClient, event_type: str, dest: Path) -> tuple[ExportResult, list[Any]]:
    result = client.request_export("hour", FINISHED_HOUR)
    return result, client.download_parts(result, event_type, dest)


def one_type_calls(server: Any) -> list[Any]:
    return [call for call in server.api_calls if "/page/" in call.path]


def test_parts_download_in_parallel_and_match_the_ground_truth(fast_server: Any, tmp_path: Path) -> None:
    with client_for(fast_server, download_concurrency=3) as client:
        result, parts = fetch(client, "page", tmp_path)
    links = result.download_links["page"]
    assert len(links) > 1, "the fixture should split page into several parts"
    assert [part.index for part in parts] == list(range(len(links)))
    for part, link in zip(parts, links, strict=True):
        assert part.path.name == f"page-{part.index:05d}.csv.gz"
        assert part.size_bytes == part.path.stat().st_size > 0
        assert part.source == link.split("?")[0]
    assert csv_rows([part.path for part in parts]) == fast_server.ground_truth("page", FINISHED_HOUR).height
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".tmp")]


@pytest.mark.parametrize("fault", ["truncate", "corrupt", "wrong_length", "html"])
def test_a_bad_download_succeeds_with_fresh_links(fast_server: Any, tmp_path: Path, fault: str) -> None:
    with client_for(fast_server) as client:
        result = client.request_export("hour", FINISHED_HOUR)
        getattr(fast_server.faults, f"{fault}_next_downloads")(1)
        parts = client.download_parts(result, "page", tmp_path)
    assert len(one_type_calls(fast_server)) == 1
    assert csv_rows([part.path for part in parts]) == fast_server.ground_truth("page", FINISHED_HOUR).height


def test_an_expired_link_is_refreshed(fast_server: Any, tmp_path: Path) -> None:
    with client_for(fast_server, expire_minutes=5) as client:
        result = client.request_export("hour", FINISHED_HOUR)
        fast_server.clock.advance(timedelta(minutes=10))
        parts = client.download_parts(result, "page", tmp_path)
    assert len(one_type_calls(fast_server)) == 1
    assert csv_rows([part.path for part in parts]) == fast_server.ground_truth("page", FINISHED_HOUR).height


def test_persistent_html_gives_a_download_error_naming_the_part_without_its_signature(
    fast_server: Any, tmp_path: Path
) -> None:
    with client_for(fast_server, max_link_refreshes=2) as client:
        result = client.request_export("hour", FINISHED_HOUR)
        fast_server.faults.html_next_downloads(1000)
        with pytest.raises(DownloadError) as caught:
            client.download_parts(result, "page", tmp_path)
    message = str(caught.value)
    assert "not a gzip file" in message and "after 2 link refresh" in message
    assert urlsplit(result.download_links["page"][0]).path in message
    assert "?" not in message.replace("?***", "")
    assert len(one_type_calls(fast_server)) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_type_missing_from_the_all_types_response_is_asked_for(fast_server: Any, tmp_path: Path) -> None:
    with client_for(fast_server) as client:
        result = client.request_export("hour", FINISHED_HOUR)
        partial = ExportResult(
            result.status,
            result.export_type,
            result.export_date,
            result.request_time,
            result.error_msg,
            {},
            result.requested_export_date,
        )
        parts = client.download_parts(partial, "page", tmp_path)
    assert len(one_type_calls(fast_server)) == 1
    assert csv_rows([part.path for part in parts]) == fast_server.ground_truth("page", FINISHED_HOUR).height


def test_only_finished_exports_and_known_types_can_be_downloaded(fast_server: Any, tmp_path: Path) -> None:
    running = ExportResult(ExportStatus.RUNNING, "hour", FINISHED_HOUR, "", "", {})
    with client_for(fast_server) as client:
        with pytest.raises(InvalidRequestError, match="FINISHED"):
            client.download_parts(running, "page", tmp_path)
        with pytest.raises(InvalidRequestError, match="event_type"):
            client.download_parts(running, "pages", tmp_path)
    assert fast_server.download_calls == []


def test_no_token_or_signature_in_logs_or_errors_of_a_faulty_run(
    fast_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    messages: list[str] = []
    links: list[str] = []
    with caplog.at_level(logging.DEBUG), client_for(fast_server, max_link_refreshes=1) as client:
        fast_server.faults.fail_next_api_calls(1, status=503)
        result = client.request_export("hour", FINISHED_HOUR)
        links += [link for type_links in result.download_links.values() for link in type_links]
        fast_server.faults.truncate_next_downloads(1)
        fast_server.faults.corrupt_next_downloads(1)
        client.download_parts(result, "page", tmp_path / "page")
        fast_server.faults.html_next_downloads(1000)
        try:
            client.download_parts(result, "action", tmp_path / "action")
        except ExportApiError as error:
            messages.append(str(error))
        fast_server.faults.reset()
    with client_for(fast_server, token="not-the-token-" + fast_server.token) as wrong_client:
        try:
            wrong_client.request_export("hour", FINISHED_HOUR)
        except ExportApiError as error:
            messages.append(str(error))
    assert len(messages) == 2, "both the download and the authentication should have failed"
    messages += [record.getMessage() for record in caplog.records]
    messages += [str(record.exc_info[1]) for record in caplog.records if record.exc_info]
    signatures = {urlsplit(link).query for link in links} - {""}
    assert signatures, "the server's links should carry a signature for this test to mean anything"
    assert any("HTTP Request" in message for message in messages), "httpx's request log should be captured"
    for message in messages:
        assert fast_server.token not in message
        for signature in signatures:
            assert signature not in message
