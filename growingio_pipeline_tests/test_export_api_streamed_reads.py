"""Reading parts as they download: one inflation, the end of a part only once it is verified, retries from the start."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from growingio_pipeline.byte_pipe import BrokenPipeFailure
from growingio_pipeline_tests.conftest import client_for
from growingio_pipeline_tests.test_export_api import FINISHED_HOUR
from growingio_pipeline_tests.test_export_api_downloads import csv_rows


class RowCounter:
    """A part reader that counts data rows, and notes what it saw of each call."""

    def __init__(self, fail_first_call_with: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self._fail_first_call_with = fail_first_call_with

    def __call__(self, gz_path: Path, source: str, csv_stream: BinaryIO) -> int:
        call: dict[str, Any] = {"part": gz_path.name, "source": source, "file_there_at_start": gz_path.exists()}
        self.calls.append(call)
        try:
            text = io.TextIOWrapper(csv_stream, encoding="utf-8", newline="")
            rows = csv.reader(text, escapechar="\\", doublequote=False)
            next(rows)
            if self._fail_first_call_with is not None and len(self.calls) == 1:
                raise self._fail_first_call_with
            count = sum(1 for _ in rows)
        except BrokenPipeFailure:
            call["ended"] = "broken"
            raise
        call["ended"] = "whole"
        call["file_there_at_end"] = gz_path.exists()
        return count


def test_a_part_is_read_while_it_downloads_and_ends_only_once_it_is_in_place(
    make_local_server: Any, tmp_path: Path
) -> None:
    # One part of about 40 MB of CSV: more than the pipe holds, so the download cannot finish before the read starts.
    server = make_local_server(calls_per_second=100.0, rows_per_hour=60_000, part_size_bytes=1 << 40)
    reader = RowCounter()
    with client_for(server) as client:
        result = client.request_export("hour", FINISHED_HOUR)
        [(part, rows)] = client.download_and_read_parts(result, "page", tmp_path, reader)
    assert rows == csv_rows([part.path]) == server.ground_truth("page", FINISHED_HOUR).height
    [call] = reader.calls
    assert call == {
        "part": part.path.name,
        "source": part.source,
        "file_there_at_start": False,
        "ended": "whole",
        "file_there_at_end": True,
    }
    assert "?" not in call["source"]


@pytest.mark.parametrize("fault", ["truncate", "corrupt", "wrong_length", "html"])
def test_a_part_that_fails_is_read_again_from_the_start(fast_server: Any, tmp_path: Path, fault: str) -> None:
    reader = RowCounter()
    with client_for(fast_server) as client:
        result = client.request_export("hour", FINISHED_HOUR)
        getattr(fast_server.faults, f"{fault}_next_downloads")(1)
        downloaded = client.download_and_read_parts(result, "page", tmp_path, reader)
    assert sum(rows for _, rows in downloaded) == fast_server.ground_truth("page", FINISHED_HOUR).height
    endings = [call.get("ended") for call in reader.calls]
    # The faulty download's reader saw a broken stream, or never read a row (an HTML page breaks it at once).
    assert len(reader.calls) == len(downloaded) + 1
    assert endings.count("whole") == len(downloaded)
    assert endings.count("whole") + endings.count("broken") + endings.count(None) == len(reader.calls)


def test_the_download_failure_wins_over_the_reader_failing_on_the_same_part(fast_server: Any, tmp_path: Path) -> None:
    """Garbage from a corrupt part can fail a parser before the download's checks end: the part is fetched again."""
    reader = RowCounter(fail_first_call_with=ValueError("unreadable row"))
    with client_for(fast_server, download_concurrency=1) as client:
        result = client.request_export("hour", FINISHED_HOUR)
        fast_server.faults.wrong_length_next_downloads(1)
        downloaded = client.download_and_read_parts(result, "page", tmp_path, reader)
    assert sum(rows for _, rows in downloaded) == fast_server.ground_truth("page", FINISHED_HOUR).height


def test_a_reader_error_on_an_intact_part_is_raised(make_local_server: Any, tmp_path: Path) -> None:
    server = make_local_server(calls_per_second=100.0, rows_per_hour=60_000, part_size_bytes=1 << 40)
    reader = RowCounter(fail_first_call_with=ValueError("unreadable row"))
    with client_for(server) as client:
        result = client.request_export("hour", FINISHED_HOUR)
        with pytest.raises(ValueError, match="unreadable row"):
            client.download_and_read_parts(result, "page", tmp_path, reader)
    # The download went on to the end after the reader stopped (to tell a bad part from bad data).
    assert [path.name for path in tmp_path.iterdir()] == ["page-00000.csv.gz"]
