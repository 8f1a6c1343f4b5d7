"""The local export server's downloads over HTTP: signed links, expiry, parts, dialect, faults, overrides."""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import polars as pl
import pytest

from growingio_pipeline.event_types import EVENT_TYPES
from growingio_pipeline.local_server import LocalExportServer
from growingio_pipeline.local_server.csv_writer import to_csv_text

PROJECT = "9b0d1f56d5baff1a"
FINISHED_HOUR = "2026112910"
LINK = re.compile(
    r"http://127\.0\.0\.1:\d+/exports/9b0d1f56d5baff1a/hour/2026112910/[a-z_]+/"
    r"part-\d{5}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-c000\.csv\.gz"
    r"\?Expires=\d+&Signature=[0-9a-f]{64}"
)


def links_of(
    server: LocalExportServer, event_type: str, export_date: str = FINISHED_HOUR, expire: int = 5
) -> list[str]:
    response = httpx.get(
        f"{server.base_url}/v2/insights/hour/{event_type}/{PROJECT}/{export_date}.json?expire={expire}",
        headers={"Authorization": server.token},
    )
    body = response.json()
    assert body["status"] == "FINISHED", body
    return body["downloadLinks"]


def download(link: str) -> httpx.Response:
    return httpx.get(link)


def read_vendor_csv(text: str) -> list[list[str]]:
    """The vendor's recommended reader: Python's csv with a backslash escape and no doubled quotes."""
    return list(csv.reader(io.StringIO(text, newline=""), escapechar="\\", doublequote=False, strict=True))


def rows_as_python_csv_sees_them(frame: pl.DataFrame) -> list[list[str]]:
    """Ground truth as Python's csv returns it: it cannot tell NULL from "", both become ""."""
    return [["" if value is None else value for value in row] for row in frame.iter_rows()]


def test_links_look_like_spark_output_and_are_stable(server: LocalExportServer) -> None:
    first = links_of(server, "page")

    assert all(LINK.fullmatch(link) for link in first)
    assert [link.split("?")[0] for link in links_of(server, "page")] == [link.split("?")[0] for link in first]


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_every_type_round_trips_through_the_vendor_reader(server: LocalExportServer, event_type: str) -> None:
    truth = server.ground_truth(event_type, FINISHED_HOUR)
    rows: list[list[str]] = []
    for link in links_of(server, event_type):
        response = download(link)
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(response.content)
        header, *part_rows = read_vendor_csv(gzip.decompress(response.content).decode("utf-8"))
        assert header == truth.columns == [column.vendor_name for column in EVENT_TYPES[event_type].columns]
        rows.extend(part_rows)

    assert rows == rows_as_python_csv_sees_them(truth)


def test_a_day_export_serves_its_24_hours(server: LocalExportServer) -> None:
    response = httpx.get(
        f"{server.base_url}/v2/insights/day/vstr/{PROJECT}/20261128.json", headers={"Authorization": server.token}
    )
    hours = [server.ground_truth("vstr", f"20261128{hour:02d}") for hour in range(24)]
    rows = []
    for link in response.json()["downloadLinks"]:
        rows.extend(read_vendor_csv(gzip.decompress(download(link).content).decode())[1:])

    assert rows == rows_as_python_csv_sees_them(pl.concat(hours))
    assert server.ground_truth("vstr", "20261128").equals(pl.concat(hours))


def test_nulls_are_unquoted_empty_and_empty_strings_are_quoted(server: LocalExportServer) -> None:
    truth = server.ground_truth("page", FINISHED_HOUR)
    text = b"".join(gzip.decompress(download(link).content).split(b"\n", 1)[1] for link in links_of(server, "page"))
    first_title_null = truth.with_row_index().filter(pl.col("title").is_null()).row(0, named=True)
    first_title_empty = truth.with_row_index().filter(pl.col("title") == "").row(0, named=True)

    # title sits between referrerPage and time; both rows are found by their unique pageRequestId.
    for row, written_title in ((first_title_null, b""), (first_title_empty, b'""')):
        line_start = text.index(row["visitUserId"].encode() + b"," + row["sessionId"].encode())
        line = text[line_start : text.index(row["pageRequestId"].encode(), line_start)]
        assert b"," + written_title + b"," + row["time"].encode() + b"," in line


def test_data_holds_awkward_values_and_they_survive(server: LocalExportServer) -> None:
    truth = server.ground_truth("page", FINISHED_HOUR)
    values = [value for column in truth.columns for value in truth.get_column(column).drop_nulls().to_list()]

    for needle in (",", '"', "\\", "\n", "\r\n", "首页"):
        assert any(needle in value for value in values), needle
    assert "" in values
    assert truth.null_count().sum_horizontal().item() > 0


def test_parts_split_at_the_configured_size_each_with_a_header(make_local_server) -> None:
    server = make_local_server(part_size_bytes=4 * 1024, calls_per_second=1000.0)
    parts = [download(link).content for link in links_of(server, "page")]

    assert len(parts) >= 3
    header = ",".join(column.vendor_name for column in EVENT_TYPES["page"].columns).encode() + b"\n"
    for part in parts:
        assert part[:2] == b"\x1f\x8b"
        assert gzip.decompress(part).startswith(header)
    # Parts are cut after the block that crosses the size, so one part may exceed it by a block.
    assert all(len(part) < 3 * 4 * 1024 for part in parts[:-1])


def test_an_hour_can_have_no_rows_for_a_type(server: LocalExportServer) -> None:
    server.clock.advance(timedelta(days=1))
    links = links_of(server, "ads_track_click", "2026112903")  # ad types are quiet at 02:00-05:00 Beijing
    text = b"".join(gzip.decompress(download(link).content) for link in links)

    assert server.ground_truth("ads_track_click", "2026112903").height == 0
    header = ",".join(column.vendor_name for column in EVENT_TYPES["ads_track_click"].columns)
    assert text.decode().splitlines() == [header]


def test_a_link_expires_after_its_minutes(server: LocalExportServer) -> None:
    link = links_of(server, "page", expire=30)[0]
    server.clock.advance(timedelta(minutes=29, seconds=59))
    assert download(link).status_code == 200

    server.clock.advance(timedelta(seconds=1))
    expired = download(link)
    assert expired.status_code == 403
    assert b"expired" in expired.content


def test_links_expire_at_once_when_switched(server: LocalExportServer) -> None:
    server.faults.expire_links_immediately()
    link = links_of(server, "page")[0]

    assert download(link).status_code == 403
    server.faults.expire_links_immediately(enabled=False)
    assert download(links_of(server, "page")[0]).status_code == 200


@pytest.mark.parametrize(
    "tamper",
    [
        lambda link: link[:-1] + ("0" if link[-1] != "0" else "1"),
        lambda link: re.sub(r"Expires=(\d+)", lambda m: f"Expires={int(m.group(1)) + 3600}", link),
        lambda link: link.replace("part-00000", "part-00001"),
        lambda link: link.split("&Signature=")[0],
        lambda link: link.split("?")[0],
    ],
    ids=["signature", "expiry", "path", "no-signature", "no-query"],
)
def test_a_tampered_link_is_403(server: LocalExportServer, tamper) -> None:
    link = links_of(server, "page")[0]

    assert download(tamper(link)).status_code == 403


def test_downloads_are_recorded(server: LocalExportServer) -> None:
    link = links_of(server, "vstr")[0]
    download(link)
    download(link[:-2])

    assert [call.status for call in server.download_calls] == [200, 403]
    assert all("Signature" not in call.path for call in server.download_calls)


def test_failing_api_calls_answer_the_status_then_recover(server: LocalExportServer) -> None:
    server.faults.fail_next_api_calls(2, status=502)
    url = f"{server.base_url}/v2/insights/hour/page/{PROJECT}/{FINISHED_HOUR}.json"
    statuses = [httpx.get(url, headers={"Authorization": server.token}).status_code for _ in range(3)]

    assert statuses == [502, 502, 200]


def test_a_stalled_api_call_trips_the_client_timeout(server: LocalExportServer) -> None:
    server.faults.stall_next_api_calls(1, seconds=30)
    url = f"{server.base_url}/v2/insights/hour/page/{PROJECT}/{FINISHED_HOUR}.json"

    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, headers={"Authorization": server.token}, timeout=0.3)
    assert httpx.get(url, headers={"Authorization": server.token}).status_code == 200


def test_a_truncated_download_sends_fewer_bytes_than_promised(server: LocalExportServer) -> None:
    link = links_of(server, "page")[0]
    server.faults.truncate_next_downloads(1)

    with httpx.stream("GET", link) as response:
        promised = int(response.headers["Content-Length"])
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_raw():
                received.extend(chunk)
    assert 0 < len(received) < promised
    assert len(download(link).content) == promised


def test_a_corrupt_download_fails_the_gzip_check(server: LocalExportServer) -> None:
    link = links_of(server, "page")[0]
    server.faults.corrupt_next_downloads(1)
    corrupt = download(link)

    assert int(corrupt.headers["Content-Length"]) == len(corrupt.content)
    with pytest.raises((OSError, EOFError, zlib.error)):
        gzip.decompress(corrupt.content)
    gzip.decompress(download(link).content)


def test_a_wrong_content_length_hides_the_part_end(server: LocalExportServer) -> None:
    link = links_of(server, "page")[0]
    real = download(link).content
    server.faults.wrong_length_next_downloads(1)
    short = download(link)

    assert int(short.headers["Content-Length"]) == len(short.content) == len(real) - 8
    with pytest.raises(EOFError):
        gzip.decompress(short.content)


def test_an_html_page_can_replace_a_part(server: LocalExportServer) -> None:
    link = links_of(server, "page")[0]
    server.faults.html_next_downloads(1)
    page = download(link)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.content.startswith(b"<html>")
    assert download(link).content[:2] == b"\x1f\x8b"


def test_reset_turns_every_fault_off(server: LocalExportServer) -> None:
    server.faults.fail_next_api_calls(5)
    server.faults.html_next_downloads(5)
    server.faults.expire_links_immediately()
    server.faults.reset()
    link = links_of(server, "page")[0]

    assert download(link).content[:2] == b"\x1f\x8b"


def test_overridden_parts_are_served_verbatim(server: LocalExportServer) -> None:
    hostile = [b"not gzip at all", gzip.compress(b'visitUserId,sessionId\n"a\\"b",\n')]
    server.override_parts("vstr", FINISHED_HOUR, hostile)
    links = links_of(server, "vstr")

    assert [download(link).content for link in links] == hostile
    assert [int(download(link).headers["Content-Length"]) for link in links] == [len(part) for part in hostile]
    assert len(links_of(server, "evar")) == 1  # other types keep their generated parts


def test_a_link_speed_paces_all_downloads_together(make_local_server) -> None:
    server = make_local_server(download_bytes_per_second=200_000, calls_per_second=1000.0)
    parts = [os.urandom(150_000), os.urandom(150_000)]
    server.override_parts("vstr", FINISHED_HOUR, parts)
    links = links_of(server, "vstr")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        downloaded = [response.content for response in pool.map(download, links)]
    elapsed = time.monotonic() - started

    assert downloaded == parts
    # A lower bound only (a link may be slower, never faster): both parts share the 200 kB/s.
    assert elapsed >= sum(map(len, parts)) / 200_000


def test_overridden_api_responses_are_served_for_n_calls(server: LocalExportServer) -> None:
    server.override_next_api_responses({"status": "FINISHED", "downloadLinks": None, "odd": [1, "二"]}, n=2)
    url = f"{server.base_url}/v2/insights/hour/{PROJECT}/{FINISHED_HOUR}.json"
    bodies = [httpx.get(url, headers={"Authorization": server.token}).json() for _ in range(3)]

    assert bodies[0] == bodies[1] == {"status": "FINISHED", "downloadLinks": None, "odd": [1, "二"]}
    assert bodies[2]["status"] == "FINISHED" and isinstance(bodies[2]["downloadLinks"], dict)


def test_the_server_stops_cleanly_during_a_stall(make_local_server) -> None:
    server = make_local_server()
    server.faults.stall_next_api_calls(1, seconds=600)
    url = f"{server.base_url}/v2/insights/hour/page/{PROJECT}/{FINISHED_HOUR}.json"
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, headers={"Authorization": server.token}, timeout=0.3)

    server.stop()

    with pytest.raises(httpx.ConnectError):
        httpx.get(url, headers={"Authorization": server.token}, timeout=2)


@pytest.mark.parametrize("event_type", ["page", "ads_track_activation"])
def test_served_text_is_exactly_the_dialect_of_the_ground_truth(server: LocalExportServer, event_type: str) -> None:
    texts = [gzip.decompress(download(link).content) for link in links_of(server, event_type)]
    header = texts[0].split(b"\n", 1)[0] + b"\n"

    assert all(text.startswith(header) for text in texts)
    served = header + b"".join(text[len(header) :] for text in texts)
    assert served == to_csv_text(server.ground_truth(event_type, FINISHED_HOUR))


def test_prepared_exports_are_the_ones_served(server: LocalExportServer) -> None:
    server.prepare([FINISHED_HOUR, "20261128"], ["evar"])

    assert [download(link).content for link in links_of(server, "evar")] == server.parts("evar", FINISHED_HOUR)
    with pytest.raises(ValueError, match="unknown GrowingIO event type"):
        server.prepare([FINISHED_HOUR], ["evars"])
    with pytest.raises(ValueError, match="export_date"):
        server.prepare(["2026-11-29"])


def test_kept_alive_connections_end_with_the_server(make_local_server) -> None:
    server = make_local_server()
    link = links_of(server, "vstr")[0]
    with httpx.Client() as client:
        assert client.get(link).status_code == 200
        server.stop()

        with pytest.raises(httpx.TransportError):
            client.get(link)
