"""The gzip check that runs inside the download stream accepts what gzip readers accept, and nothing broken."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import pytest

from growingio_pipeline.export_api import DownloadError
from growingio_pipeline_tests.test_export_api import FINISHED_HOUR, client_for

# Incompressible bytes then a long run: several download chunks, and inflated output far larger than the input.
_TEXT = b"visitUserId,sessionId\n" + os.urandom(1_500_000).hex().encode() + b"\n" + b"a,b\n" * 2_000_000


def _download(server: Any, tmp_path: Path, part: bytes) -> Path:
    server.override_parts("page", FINISHED_HOUR, [part])
    with client_for(server, max_link_refreshes=1) as client:
        result = client.request_export("hour", FINISHED_HOUR)
        [downloaded] = client.download_parts(result, "page", tmp_path)
    return downloaded.path


def test_concatenated_members_and_zero_padding_download_unchanged(make_local_server: Any, tmp_path: Path) -> None:
    part = gzip.compress(_TEXT[:1000]) + gzip.compress(_TEXT[1000:]) + b"\0" * 512
    path = _download(make_local_server(calls_per_second=100.0), tmp_path, part)
    assert path.read_bytes() == part
    assert gzip.decompress(part) == _TEXT


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda whole: whole[:-8] + bytes([whole[-8] ^ 1]) + whole[-7:], "Incorrect checksum"),
        (lambda whole: whole + b"trailing bytes", "gzip check failed"),
        (lambda whole: whole[: len(whole) * 2 // 3], "ends before the end of its last member"),
        (lambda whole: b"", "not a gzip file"),
    ],
    ids=["bad-crc", "trailing-garbage", "cut-mid-member", "empty"],
)
def test_a_broken_gzip_stream_is_refused_even_when_length_and_md5_match(
    make_local_server: Any, tmp_path: Path, damage: Any, reason: str
) -> None:
    server = make_local_server(calls_per_second=100.0)
    with pytest.raises(DownloadError) as caught:
        _download(server, tmp_path, damage(gzip.compress(_TEXT)))
    assert reason in str(caught.value)
    assert list(tmp_path.iterdir()) == []
