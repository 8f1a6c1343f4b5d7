"""Export client inputs: date formatting, redaction and settings validation (no network)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from growingio_pipeline.export_api import (
    ClientSettings,
    ExportResult,
    ExportStatus,
    InvalidRequestError,
    format_export_date,
    normalize_export_date,
)
from growingio_pipeline.redaction import redact_text, redact_url

PROJECT = "9b0d1f56d5baff1a"


def test_format_export_date_converts_to_beijing_time() -> None:
    assert format_export_date(datetime(2026, 11, 28, 19, 5, tzinfo=timezone.utc)) == "202611290305"
    shanghai = datetime(2026, 11, 29, 3, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert format_export_date(shanghai) == "202611290300"
    assert format_export_date(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))) == "202601011300"


def test_format_export_date_rejects_naive_datetimes() -> None:
    with pytest.raises(InvalidRequestError, match="naive datetime"):
        format_export_date(datetime(2026, 11, 29, 3))


@pytest.mark.parametrize(
    ("given", "expected"),
    [("202611290315", "202611290315"), ("2026112903", "202611290300"), ("20261129", "202611290000")],
)
def test_normalize_export_date_accepts_three_string_forms(given: str, expected: str) -> None:
    assert normalize_export_date(given) == expected


@pytest.mark.parametrize(
    "bad", ["2026-11-29", "202611", "2026112925", "202602300000", "２０２６１１２９", "", "20261129030", 20261129]
)
def test_normalize_export_date_rejects_malformed_dates(bad: object) -> None:
    with pytest.raises(InvalidRequestError, match="export_date"):
        normalize_export_date(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://bucket.example.com/a/part-00000-x-c000.csv.gz?X-Amz-Signature=abc&X-Amz-Credential=k",
            "https://bucket.example.com/a/part-00000-x-c000.csv.gz",
        ),
        ("https://user:secret@host:8443/p.gz?sig=1#frag", "https://host:8443/p.gz"),
        ("http://127.0.0.1:9000/files/x.gz", "http://127.0.0.1:9000/files/x.gz"),
    ],
)
def test_redact_url_drops_query_userinfo_and_fragment(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_without_host_keeps_only_the_path() -> None:
    assert redact_url("https://user:pw@cdn.example:8443/a/p.gz?Signature=s#f", keep_host=False) == "/a/p.gz"


def test_redact_text_masks_secrets_and_query_strings_even_json_escaped() -> None:
    body = '{"a":"https:\\/\\/h\\/p.gz?Signature=s3cr3t","b":"see http://u:pw@h/x?k=v","t":"tok-123"}'
    redacted = redact_text(body, ("tok-123",))
    for secret in ("s3cr3t", "k=v", "pw@", "tok-123"):
        assert secret not in redacted
    assert "https:\\/\\/h\\/p.gz" in redacted


def test_settings_repr_hides_the_token() -> None:
    settings = ClientSettings(token="very-secret-token", project_id=PROJECT)
    assert "very-secret-token" not in repr(settings)


def test_result_repr_hides_links() -> None:
    result = ExportResult(ExportStatus.FINISHED, "hour", "2026112903", "", "", {"page": ("https://h/p.gz?sig=zzz",)})
    assert "sig=zzz" not in repr(result)
    assert result.link_counts == {"page": 1}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"token": ""}, "token"),
        ({"token": "a\nb"}, "single line"),
        ({"project_id": "not-hex!"}, "project id"),
        ({"project_id": "../etc"}, "project id"),
        ({"base_url": "ftp://growingio.com"}, "base_url"),
        ({"base_url": "https://growingio.com?x=1"}, "base_url"),
        ({"expire_minutes": 0}, "expire"),
        ({"expire_minutes": 10081}, "expire"),
        ({"calls_per_second": 0}, "calls_per_second"),
        ({"max_retries": -1}, "max_retries"),
        ({"download_concurrency": 0}, "download_concurrency"),
        ({"client_id": ""}, "client_id"),
    ],
)
def test_settings_reject_bad_values(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"token": "t", "project_id": PROJECT, **overrides}
    with pytest.raises(ValueError, match=message):
        ClientSettings(**values)  # type: ignore[arg-type]
