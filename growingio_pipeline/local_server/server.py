"""A local stand-in for GrowingIO's raw-data export API (v2) and its signed download links."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl

from growingio_pipeline.auth import CODE_LIFETIME_S, TOKEN_PATH, sign
from growingio_pipeline.event_types import BEIJING, EVENT_TYPES, RETENTION_DAYS, get_event_type
from growingio_pipeline.export_contract import EXPORT_DATE_FORMATS, EXPORT_PERIODS, EXPORT_TYPES, MAX_EXPIRE_MINUTES
from growingio_pipeline.local_server.clock import parse_export_date, utc_now
from growingio_pipeline.local_server.csv_writer import (
    DEFAULT_COMPRESSLEVEL,
    DEFAULT_PART_SIZE_BYTES,
    write_csv_parts,
)
from growingio_pipeline.local_server.faults import Faults
from growingio_pipeline.local_server.generator import generate_export

logger = logging.getLogger(__name__)

DEFAULT_EXPIRE_MINUTES = 5
HOUR_LATENCY = timedelta(minutes=40)
NIGHT_HOUR_LATENCY = timedelta(minutes=60)
NIGHT_HOURS = frozenset({23, 0, 1})
"""Beijing hours whose exports take NIGHT_HOUR_LATENCY."""
DAY_LATENCY = timedelta(hours=3)
DEFAULT_CACHE_BYTES = 1024 * 1024 * 1024
TM_TOLERANCE = timedelta(minutes=5)
"""How far a code request's ``tm`` may be from the server's time."""
MAX_TOKEN_BODY_BYTES = 4096
_REISSUE_SEED_STEP = 7919
"""A re-issued export is generated with the seed moved by this much per re-issue: other rows, same shape."""
_PART_NAME = re.compile(r"part-(\d{5})-[0-9a-f-]{36}-c000\.csv\.gz")
_HTML_ERROR_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)


@dataclass(frozen=True)
class CallRecord:
    """One request the server answered: its path (no query string) and HTTP status."""

    path: str
    status: int


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    declared_length: int | None = None  # a Content-Length other than len(body), for faults
    sent_bytes: int | None = None  # send fewer bytes than the body, then close
    paced: bool = False  # a part: sent at the pace of the link (``download_bytes_per_second``)


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return _Response(status, body, headers=headers or {})


def _error(status: int, message: str) -> _Response:
    return _json_response(status, {"message": message, "errors": []})


def _access_denied(reason: str) -> _Response:
    body = f"<Error><Code>AccessDenied</Code><Message>{reason}</Message></Error>".encode()
    return _Response(403, body, content_type="application/xml")


class _BadRequest(Exception):
    """A request the API rejects with 400 and this message."""


class _RateLimiter:
    """A token bucket per client token: ``rate`` calls per second, bursts up to max(1, rate)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> int | None:
        """None if the call may proceed (and is counted), else whole seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - last) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self._rate))


def link_bytes_per_second(megabits: float | None) -> float | None:
    """A link speed in megabits per second as ``download_bytes_per_second`` (None: no limit)."""
    return None if megabits is None else megabits * 1_000_000 / 8


class _Link:
    """The client's network link: every paced byte, over all connections together, at ``bytes_per_second``."""

    CHUNK_BYTES = 64 * 1024

    def __init__(self, bytes_per_second: float) -> None:
        self._bytes_per_second = bytes_per_second
        self._lock = threading.Lock()
        self._free_at = 0.0  # monotonic time when the bytes handed to the link so far have crossed it

    def send(self, write: Callable[[bytes], object], body: bytes) -> None:
        """``write`` ``body`` in chunks, each once the link has carried it."""
        for start in range(0, len(body), self.CHUNK_BYTES):
            chunk = body[start : start + self.CHUNK_BYTES]
            with self._lock:
                self._free_at = max(self._free_at, time.monotonic()) + len(chunk) / self._bytes_per_second
                carried_at = self._free_at
            time.sleep(max(0.0, carried_at - time.monotonic()))
            write(chunk)


class LocalExportServer:
    """GrowingIO's export API (both endpoints), signed part links and generated data on a local port.

    An API call is answered in this order: 429 beyond ``calls_per_second`` per Authorization value
    (token bucket on the monotonic clock); fault-switch stalls and 5xx; 401 for a missing or wrong
    credential; an overridden JSON body; 400 for a bad path, project, date or ``expire``; else 200
    with the vendor's fields. A credential is the token (bare or ``Token <token>``; ``X-Client-Id`` is
    accepted and ignored) or, with ``X-Client-Id: <client_id>``, the current auth code.

    Key-pair authentication: ``POST /auth/token`` with ``X-Client-Id`` and the raw body
    ``project=<project_uid>&ai=<project_id>&tm=<epoch ms>&auth=<hex HMAC-SHA256>`` (see
    :mod:`growingio_pipeline.auth`) answers ``{"status": "success", "code": ...}``. It answers 401 for
    a missing or unknown ``X-Client-Id``, another project, a ``tm`` more than 5 minutes from
    ``auth_clock`` (the real time by default: clients sign with their own clock, whatever ``clock``
    simulates) or a wrong signature; 400 for a malformed body. A new code invalidates the previous
    one; a code expires 30 days after issue (by ``auth_clock``); ``codes_issued`` counts them.

    Status by ``clock`` (any aware datetime; periods are Beijing time): NOT_EXISTS until the period
    ends and once it started more than ``retention_days`` ago; ERROR for ``error_hours`` keys
    (yyyyMMddHH or yyyyMMdd); RUNNING until 40 min after an hour (60 min for hours starting 23:00,
    00:00, 01:00; 3 h after a day) and for the first ``running_polls`` polls of an export; then
    FINISHED. ``requestTime`` is Beijing time. The all-types answer has no ``dataType``, as in the
    vendor's example; links are listed only when FINISHED.

    Links are ``/exports/.../part-NNNNN-<uuid>-c000.csv.gz?Expires=<epoch s>&Signature=<HMAC>``:
    403 once ``clock`` reaches Expires or if any part of the link was altered. Parts are cached
    (least recently used first out beyond ``cache_bytes``); ``prepare`` fills the cache ahead. A part
    answers GET and HEAD with an ``ETag`` (its MD5) and ``Last-Modified`` (when its export was produced).
    ``reissue`` produces an export again, as the vendor does when it re-runs one: new rows, a new job uuid
    in the links, new ETags and ``Last-Modified`` the clock's time. With ``download_bytes_per_second``, parts
    are sent no faster than that, all downloads together: a client's network link rather than loopback.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "demo-token",
        project_id: str = "9b0d1f56d5baff1a",
        seed: int = 1,
        rows_per_hour: int = 5000,
        part_size_bytes: int = DEFAULT_PART_SIZE_BYTES,
        clock: Callable[[], datetime] | None = None,
        error_hours: Mapping[str, str] | None = None,
        running_polls: int = 0,
        calls_per_second: float = 2.0,
        retention_days: int = RETENTION_DAYS,
        compresslevel: int = DEFAULT_COMPRESSLEVEL,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        client_id: str = "demo-client-id",
        private_key: str = "demo-private-key",
        project_uid: str = "demo0uid",
        auth_clock: Callable[[], datetime] | None = None,
        download_bytes_per_second: float | None = None,
    ) -> None:
        if not token or not client_id or not private_key or not project_uid:
            raise ValueError("the server needs a non-empty token, client_id, private_key and project_uid")
        if not re.fullmatch(r"[0-9A-Za-z]+", project_id):
            raise ValueError(f"project_id must be alphanumeric, got {project_id!r}")
        if calls_per_second <= 0:
            raise ValueError(f"calls_per_second must be positive, got {calls_per_second}")
        if download_bytes_per_second is not None and download_bytes_per_second <= 0:
            raise ValueError(f"download_bytes_per_second must be positive, got {download_bytes_per_second}")
        for name, value, minimum in (
            ("running_polls", running_polls, 0),
            ("rows_per_hour", rows_per_hour, 0),
            ("retention_days", retention_days, 1),
            ("part_size_bytes", part_size_bytes, 1),
            ("cache_bytes", cache_bytes, 0),
        ):
            if value < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {value}")
        for export_date in error_hours or {}:
            parse_export_date(export_date)
        self.host, self.token, self.project_id = host, token, project_id
        self.seed, self.rows_per_hour, self.part_size_bytes = seed, rows_per_hour, part_size_bytes
        self.compresslevel, self.cache_bytes = compresslevel, cache_bytes
        self.clock: Callable[[], datetime] = clock or utc_now
        self.error_hours = dict(error_hours or {})
        self.running_polls, self.retention_days = running_polls, retention_days
        self.client_id, self.private_key, self.project_uid = client_id, private_key, project_uid
        self.auth_clock: Callable[[], datetime] = auth_clock or utc_now
        self.codes_issued = 0
        self._code: tuple[str, datetime] | None = None  # the one valid code and its expiry
        self.faults = Faults()
        self.api_calls: list[CallRecord] = []
        self.download_calls: list[CallRecord] = []
        self._requested_port = port
        self._secret = os.urandom(32)
        self._rate_limiter = _RateLimiter(calls_per_second)
        self._link = _Link(download_bytes_per_second) if download_bytes_per_second else None
        self._state_lock = threading.Lock()
        self._generation_lock = threading.Lock()
        self._parts_cache: OrderedDict[tuple[str, str], list[bytes]] = OrderedDict()
        self._reissued: dict[str, tuple[int, datetime]] = {}  # export_date -> (times re-issued, when last)
        self._overridden_parts: dict[tuple[str, str], list[bytes]] = {}
        self._overridden_responses: list[Any] = []
        self._polls: dict[tuple[str, str], int] = {}
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalExportServer:
        """Bind the port and serve in a background thread."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._requested_port), _Handler, self)
        # A short poll interval makes stop() quick; serve_forever only checks for shutdown between polls.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="growingio-local-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end stalled requests and free the port."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        if self._thread is not None:
            self._thread.join()
        self._httpd, self._thread = None, None

    def __enter__(self) -> LocalExportServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://host:port``, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    # --- test hooks and ground truth -------------------------------------------------------------

    def ground_truth(self, event_type: str, export_date: str) -> pl.DataFrame:
        """The exact rows the server serves for (type, yyyyMMddHH or yyyyMMdd), without HTTP.

        Vendor column names in registry order, all Utf8; null for NULL, "" for an empty string.
        Overridden parts are not reflected.
        """
        return self._generated(event_type, export_date, enum_columns=False)

    def _generated(self, event_type: str, export_date: str, *, enum_columns: bool) -> pl.DataFrame:
        return generate_export(
            get_event_type(event_type).name,
            export_date,
            project_id=self.project_id,
            seed=self._seed(export_date),
            rows_per_hour=self.rows_per_hour,
            enum_columns=enum_columns,
        )

    def _seed(self, export_date: str) -> int:
        """The generator's seed for an export: another one each time it was re-issued."""
        issue, _ = self._reissued.get(export_date, (0, None))
        return self.seed + _REISSUE_SEED_STEP * issue

    def reissue(self, export_date: str) -> None:
        """Produce the export of ``export_date`` (yyyyMMddHH or yyyyMMdd) again now, with other rows."""
        parse_export_date(export_date)
        with self._state_lock:
            issue, _ = self._reissued.get(export_date, (0, None))
            self._reissued[export_date] = (issue + 1, self.clock())
            for key in [key for key in self._parts_cache if key[1] == export_date]:
                del self._parts_cache[key]

    def _last_modified(self, export_type: str, export_date: str) -> datetime:
        """When the export was produced: when it became ready, or when it was last re-issued."""
        if export_date in self._reissued:
            return self._reissued[export_date][1]
        start = parse_export_date(export_date)
        return start + EXPORT_PERIODS[export_type] + _latency(export_type, start)

    def override_parts(self, event_type: str, export_date: str, parts: list[bytes]) -> None:
        """Serve ``parts`` verbatim as the parts of (type, export_date) instead of generated data."""
        parse_export_date(export_date)
        with self._state_lock:
            self._overridden_parts[(get_event_type(event_type).name, export_date)] = [bytes(part) for part in parts]

    def override_next_api_responses(self, body: Any, n: int = 1) -> None:
        """Answer the next ``n`` authorised API calls with ``body`` as JSON, status 200."""
        encoded = json.loads(json.dumps(body))  # fail now, not in the handler, if it is not JSON
        with self._state_lock:
            self._overridden_responses = [encoded] * n

    def parts(self, event_type: str, export_date: str) -> list[bytes]:
        """The gzip parts served for (type, export_date): overridden, cached or generated now."""
        key = (event_type, export_date)
        with self._state_lock:
            if key in self._overridden_parts:
                return self._overridden_parts[key]
            if key in self._parts_cache:
                self._parts_cache.move_to_end(key)
                return self._parts_cache[key]
        with self._generation_lock:
            with self._state_lock:
                if key in self._parts_cache:
                    return self._parts_cache[key]
            frame = self._generated(event_type, export_date, enum_columns=True)
            parts = write_csv_parts(frame, self.part_size_bytes, self.compresslevel)
            with self._state_lock:
                self._parts_cache[key] = parts
                self._evict_over_budget()
            return parts

    def prepare(self, export_dates: Iterable[str], event_types: Iterable[str] | None = None) -> None:
        """Generate and compress these exports' parts now, so later API calls and downloads are quick.

        Benchmarks call this to keep data generation out of what they time (within ``cache_bytes``).
        """
        names = [get_event_type(name).name for name in event_types] if event_types is not None else list(EVENT_TYPES)
        for export_date in export_dates:
            parse_export_date(export_date)
            for name in names:
                self.parts(name, export_date)

    def _evict_over_budget(self) -> None:
        total = sum(len(part) for parts in self._parts_cache.values() for part in parts)
        while len(self._parts_cache) > 1 and total > self.cache_bytes:
            _, evicted = self._parts_cache.popitem(last=False)
            total -= sum(len(part) for part in evicted)

    # --- the export API --------------------------------------------------------------------------

    def _handle_api(self, path: str, query: Mapping[str, list[str]], headers: Message[str, str]) -> _Response:
        authorization = headers.get("Authorization") or ""
        refused = self._throttled_or_failing(authorization)
        if refused is not None:
            return refused
        if not self._authorized(authorization, headers.get("X-Client-Id") or ""):
            return _error(401, "Unauthorized")
        with self._state_lock:
            overridden = self._overridden_responses.pop(0) if self._overridden_responses else None
        if overridden is not None:
            return _json_response(200, overridden)
        try:
            return _json_response(200, self._export(path, query))
        except _BadRequest as problem:
            return _error(400, str(problem))

    def _throttled_or_failing(self, caller: str) -> _Response | None:
        """429 beyond the rate limit, or the fault switches' stall and 5xx; None to go on."""
        retry_after = self._rate_limiter.retry_after(caller)
        if retry_after is not None:
            return _json_response(
                429, {"message": "Too Many Requests", "errors": []}, {"Retry-After": str(retry_after)}
            )
        stall = self.faults.take_api_stall()
        if stall and self._stopping.wait(stall):
            return _error(503, "Service Unavailable")
        failure = self.faults.take_api_failure()
        return None if failure is None else _error(failure, "Service Unavailable")

    def _authorized(self, authorization: str, client_id: str) -> bool:
        """The token, or the current unexpired code sent with this server's X-Client-Id."""
        if hmac.compare_digest(_bare_token(authorization).encode(), self.token.encode()):
            return True
        with self._state_lock:
            current = self._code
        return (
            current is not None
            and hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(authorization.strip().encode(), current[0].encode())
            and self.auth_clock() < current[1]
        )

    # --- key-pair authentication ------------------------------------------------------------------

    def _handle_token(self, headers: Message[str, str], body: bytes) -> _Response:
        client_id = headers.get("X-Client-Id") or ""
        refused = self._throttled_or_failing(f"X-Client-Id {client_id}")
        if refused is not None:
            return refused
        if not client_id:
            return _error(401, "missing X-Client-Id header: send the project's public key")
        if not hmac.compare_digest(client_id.encode(), self.client_id.encode()):
            return _error(401, "unknown X-Client-Id: not the public key of a project")
        try:
            fields = _token_request_fields(body)
        except _BadRequest as problem:
            return _error(400, str(problem))
        if fields["project"] != self.project_uid or fields["ai"] != self.project_id:
            return _error(401, "project UID and ai do not belong to this X-Client-Id")
        now = self.auth_clock()
        skew = abs(now.timestamp() * 1000 - int(fields["tm"]))
        if skew > TM_TOLERANCE.total_seconds() * 1000:
            return _error(
                401, f"tm is {skew / 1000:.0f} s away from the server's time (at most 300 s): check the clock"
            )
        expected = sign(self.private_key, fields["project"], fields["ai"], int(fields["tm"]))
        if not hmac.compare_digest(fields["auth"].encode(), expected.encode()):
            return _error(401, "auth does not match: sign with the project's private key")
        code = secrets.token_urlsafe(48)
        with self._state_lock:
            # Issuing a code invalidates the previous one, as the vendor documents.
            self._code = (code, now + timedelta(seconds=CODE_LIFETIME_S))
            self.codes_issued += 1
        return _json_response(200, {"status": "success", "code": code})

    def _export(self, path: str, query: Mapping[str, list[str]]) -> dict[str, Any]:
        segments = path.removeprefix("/v2/insights/").split("/")
        if len(segments) == 3:
            export_type, ai, file_name = segments
            data_type = None
        elif len(segments) == 4:
            export_type, data_type, ai, file_name = segments
        else:
            raise _BadRequest(
                "expected /v2/insights/{export_type}/{ai}/{export_date}.json "
                "or /v2/insights/{export_type}/{data_type}/{ai}/{export_date}.json"
            )
        if export_type not in EXPORT_TYPES:
            raise _BadRequest(f"export_type must be one of {', '.join(EXPORT_TYPES)}, got {export_type!r}")
        if data_type is not None and data_type not in EVENT_TYPES:
            raise _BadRequest(f"data_type must be one of {', '.join(EVENT_TYPES)}, got {data_type!r}")
        if ai != self.project_id:
            raise _BadRequest(f"unknown project id (ai) {ai!r}")
        export_date = _truncated_export_date(export_type, file_name)
        expire_minutes = _expire_minutes(query)
        now = self.clock()
        status, error_message = self._status(export_type, export_date, now)
        event_types = [data_type] if data_type else list(EVENT_TYPES)
        links: dict[str, list[str]] = {}
        if status == "FINISHED":
            expires = int(now.timestamp()) + (0 if self.faults.links_expire_at_once else expire_minutes * 60)
            links = {name: self._links(export_type, export_date, name, expires) for name in event_types}
        response: dict[str, Any] = {
            "status": status,
            "downloadLinks": links.get(data_type, []) if data_type else links,
            "exportType": export_type,
        }
        if data_type:
            response["dataType"] = data_type
        response.update(
            exportDate=export_date,
            exportVersion="v2",
            requestTime=now.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
            errorMsg=error_message,
        )
        return response

    def _status(self, export_type: str, export_date: str, now: datetime) -> tuple[str, str]:
        """The export's status (and errorMsg) at ``now``, from its period, latency and configuration."""
        start = parse_export_date(export_date)
        end = start + EXPORT_PERIODS[export_type]
        if now < end or start < now - timedelta(days=self.retention_days):
            return "NOT_EXISTS", ""
        if export_date in self.error_hours:
            return "ERROR", self.error_hours[export_date]
        if now < end + _latency(export_type, start):
            return "RUNNING", ""
        with self._state_lock:
            polls = self._polls[(export_type, export_date)] = self._polls.get((export_type, export_date), 0) + 1
        if polls <= self.running_polls:
            return "RUNNING", ""
        return "FINISHED", ""

    def _links(self, export_type: str, export_date: str, event_type: str, expires: int) -> list[str]:
        parts = self.parts(event_type, export_date)
        # Spark names a job's files part-NNNNN-<job uuid>-c000: one uuid per export, stable across calls.
        job_key = f"{self.project_id}/{export_type}/{export_date}/{event_type}/{self._seed(export_date)}".encode()
        job_uuid = uuid.UUID(bytes=hashlib.md5(job_key).digest())
        folder = f"/exports/{self.project_id}/{export_type}/{export_date}/{event_type}"
        links = []
        for index in range(len(parts)):
            path = f"{folder}/part-{index:05d}-{job_uuid}-c000.csv.gz"
            links.append(f"{self.base_url}{path}?Expires={expires}&Signature={self._signature(path, expires)}")
        return links

    def _signature(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    # --- downloads ------------------------------------------------------------------------------

    def _handle_download(self, path: str, query: Mapping[str, list[str]]) -> _Response:
        expires_text = (query.get("Expires") or [""])[0]
        signature = (query.get("Signature") or [""])[0]
        if not expires_text.isdigit() or not hmac.compare_digest(signature, self._signature(path, int(expires_text))):
            return _access_denied("The request signature we calculated does not match the signature you provided.")
        if self.clock().timestamp() >= int(expires_text):
            return _access_denied("Request has expired")
        segments = path.split("/")
        match = _PART_NAME.fullmatch(segments[-1]) if len(segments) == 7 else None
        if match is None:
            return _Response(404, b"Not Found", content_type="text/plain")
        export_type, export_date, event_type = segments[3], segments[4], segments[5]
        parts = self.parts(event_type, export_date)
        index = int(match.group(1))
        if index >= len(parts):
            return _Response(404, b"Not Found", content_type="text/plain")
        headers = {
            "ETag": f'"{hashlib.md5(parts[index], usedforsecurity=False).hexdigest()}"',
            "Last-Modified": format_datetime(
                self._last_modified(export_type, export_date).astimezone(UTC), usegmt=True
            ),
        }
        part = _Response(200, parts[index], content_type="application/octet-stream", headers=headers, paced=True)
        return _with_download_fault(part, self.faults.take_download_fault())


def _with_download_fault(response: _Response, fault: str | None) -> _Response:
    body = response.body
    if fault == "html":
        return _Response(200, _HTML_ERROR_PAGE, content_type="text/html; charset=utf-8")
    if fault == "truncate":
        response.sent_bytes = len(body) // 2
    elif fault == "corrupt":
        damaged = bytearray(body)
        middle = len(damaged) // 2
        for offset in range(max(10, middle - 4), min(len(damaged), middle + 4)):
            damaged[offset] ^= 0xFF
        for offset in range(max(10, len(damaged) - 8), len(damaged)):  # the CRC-32 and size trailer
            damaged[offset] ^= 0xFF
        response.body = bytes(damaged)
    elif fault == "wrong_length":
        response.declared_length = response.sent_bytes = max(0, len(body) - 8)
    return response


def _token_request_fields(body: bytes) -> dict[str, str]:
    """``project``, ``ai``, ``tm`` and ``auth`` of a raw ``a=b&c=d`` code request body."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise _BadRequest("the body must be UTF-8 text: project=<uid>&ai=<ai>&tm=<epoch ms>&auth=<signature>") from None
    fields = {name: values[-1] for name, values in parse_qs(text, keep_blank_values=True).items()}
    missing = [name for name in ("project", "ai", "tm", "auth") if not fields.get(name)]
    if missing:
        raise _BadRequest(
            f"the body lacks {', '.join(missing)}: send project=<uid>&ai=<ai>&tm=<epoch ms>&auth=<signature>"
        )
    if not fields["tm"].isascii() or not fields["tm"].isdigit():
        raise _BadRequest("tm must be the request time in epoch milliseconds")
    return fields


def _bare_token(authorization: str) -> str:
    """The token from ``Authorization: <token>`` or the older ``Authorization: Token <token>``."""
    value = authorization.strip()
    return value[len("Token ") :].strip() if value.startswith("Token ") else value


def _truncated_export_date(export_type: str, file_name: str) -> str:
    """``{export_date}.json`` -> the date truncated per export type (day: yyyyMMdd, hour: yyyyMMddHH)."""
    digits = file_name.removesuffix(".json")
    if not file_name.endswith(".json") or not digits.isdigit() or len(digits) not in EXPORT_DATE_FORMATS:
        raise _BadRequest(f"export_date must be yyyyMMddHHmm digits followed by .json, got {file_name!r}")
    keep = 10 if export_type == "hour" else 8
    if len(digits) < keep:
        raise _BadRequest(f"an hour export needs export_date yyyyMMddHH or yyyyMMddHHmm, got {digits!r}")
    try:
        datetime.strptime(digits, EXPORT_DATE_FORMATS[len(digits)])
    except ValueError:
        raise _BadRequest(f"export_date {digits!r} is not a real date and time") from None
    return digits[:keep]


def _expire_minutes(query: Mapping[str, list[str]]) -> int:
    values = query.get("expire")
    if not values:
        return DEFAULT_EXPIRE_MINUTES
    text = values[-1]
    if not text.isdigit() or not 1 <= int(text) <= MAX_EXPIRE_MINUTES:
        raise _BadRequest(f"expire must be a whole number of minutes in 1..{MAX_EXPIRE_MINUTES}, got {text!r}")
    return int(text)


def _latency(export_type: str, start: datetime) -> timedelta:
    if export_type == "day":
        return DAY_LATENCY
    return NIGHT_HOUR_LATENCY if start.hour in NIGHT_HOURS else HOUR_LATENCY


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: LocalExportServer):
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("client connection ended early: %s", error)  # clients may hang up; stop() ends connections
        else:
            logger.exception("error while answering a request")

    def close_connections(self) -> None:
        """End kept-alive connections too, so no request is answered after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_POST(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        length = self.headers.get("Content-Length") or ""
        if path != TOKEN_PATH:
            response = _error(404, f"no such endpoint {path!r}")
        elif not length.isdigit() or int(length) > MAX_TOKEN_BODY_BYTES:
            response = _error(400, f"send the body with a Content-Length of at most {MAX_TOKEN_BODY_BYTES} bytes")
        else:
            response = owner._handle_token(self.headers, self.rfile.read(int(length)))
        if response.status in (400, 404):
            self.close_connection = True  # the body may be unread: it must not be taken for the next request
        owner.api_calls.append(CallRecord(path, response.status))
        self._send(response)

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, *, head: bool = False) -> None:
        """GET, or HEAD: the same status and headers, no body."""
        owner = self.server.owner
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        is_download = url.path.startswith("/exports/")
        try:
            if url.path.startswith("/v2/insights/") and not head:
                response = owner._handle_api(url.path, query, self.headers)
            elif is_download:
                response = owner._handle_download(url.path, query)
            else:
                response = _error(404, f"no such endpoint {url.path!r}")
        except Exception:
            logger.exception("error while answering %s", url.path)
            response = _error(500, "Internal Server Error")
        (owner.download_calls if is_download else owner.api_calls).append(CallRecord(url.path, response.status))
        self._send(response, head=head)

    def _send(self, response: _Response, *, head: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        declared = response.declared_length if response.declared_length is not None else len(response.body)
        self.send_header("Content-Length", str(declared))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.sent_bytes is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        body = response.body if response.sent_bytes is None else response.body[: response.sent_bytes]
        if head:
            return
        link = self.server.owner._link
        if response.paced and link is not None:
            link.send(self.wfile.write, body)
        else:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries link signatures: log the path only.
        logger.debug("%s %s", self.command, urlsplit(self.path).path)
