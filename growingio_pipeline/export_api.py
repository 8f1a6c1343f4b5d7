"""Client for GrowingIO's raw data export API (v2): request exports, poll, download verified parts.

The API answers, for an hour or a day of one project, a status and (when ``FINISHED``) signed
links to gzip CSV parts. This module validates inputs before any request, throttles and retries
API calls, parses responses into typed results and downloads parts to disk with integrity checks,
asking for fresh links when a download is short, corrupt or expired. A caller may also read each
part's inflated CSV while it downloads (:meth:`ExportClient.download_and_read_parts`): the part is
decompressed once, for the integrity check and the reader together.

Secrets never leave this module in full: the API token (or, in key-pair mode, the auth code) is sent
only in the ``Authorization`` header of API calls (never to download hosts), the private key only
signs, and links are shown without their query string.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import fcntl
import hashlib
import io
import json
import logging
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import urlsplit

import httpx

from growingio_pipeline.auth import TOKEN_PATH, SharedAuthCode, code_request_body, code_scope
from growingio_pipeline.auth_code_store import open_auth_code_store
from growingio_pipeline.byte_pipe import BytePipe
from growingio_pipeline.event_types import BEIJING, EVENT_TYPES
from growingio_pipeline.export_contract import EXPORT_DATE_FORMATS, EXPORT_TYPES, MAX_EXPIRE_MINUTES, MINUTE_FORMAT
from growingio_pipeline.inflate import INFLATE_ERROR, gzip_member_inflater
from growingio_pipeline.lake import DEFAULT_CATALOG
from growingio_pipeline.redaction import redact_text, redact_url

logger = logging.getLogger(__name__)

_PROJECT_ID = re.compile(r"[0-9a-fA-F]{8,64}")
_PROJECT_UID = re.compile(r"[0-9A-Za-z_-]{1,64}")
KEY_PAIR_FIELDS = ("client_id", "private_key", "project_uid")
"""Key-pair mode's settings, all needed when there is no token."""
_EXCERPT_CHARS = 200
_MAX_API_BODY_BYTES = 16 * 1024 * 1024  # a links response is a few KB; refuse to buffer a flood
_DOWNLOAD_CHUNK_BYTES = 1024 * 1024


class ExportStatus(str, Enum):
    """The ``status`` of an export, as the API reports it."""

    FINISHED = "FINISHED"
    RUNNING = "RUNNING"
    NOT_EXISTS = "NOT_EXISTS"
    ERROR = "ERROR"


@dataclass(frozen=True)
class ExportResult:
    """One parsed API response.

    ``download_links`` maps event type to its signed links (one key for the one-type endpoint);
    it is empty unless ``status`` is FINISHED. Links are secrets: the field is left out of the repr.
    """

    status: ExportStatus
    export_type: str
    export_date: str
    request_time: str
    error_msg: str
    download_links: dict[str, tuple[str, ...]] = field(repr=False)
    requested_export_date: str = ""
    """The ``yyyyMMddHHmm`` date this client asked for (used to ask again for fresh links)."""

    @property
    def link_counts(self) -> dict[str, int]:
        """How many parts each event type has: a summary that is safe to log."""
        return {event_type: len(links) for event_type, links in self.download_links.items()}


@dataclass(frozen=True)
class PartVersion:
    """What tells one version of a part from another without reading it: its size and the storage host's
    ``ETag`` and ``Last-Modified`` (None when the host sends none)."""

    size_bytes: int | None
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class DownloadedPart:
    """One verified gzip CSV part on disk."""

    event_type: str
    index: int
    path: Path
    source: str
    """The link without its query string: safe to show."""
    size_bytes: int
    version: PartVersion
    """The part's size and validators as the download answered them."""


ReadResult = TypeVar("ReadResult")
PartReader = Callable[[Path, str, BinaryIO], ReadResult]
"""Reads one part's inflated CSV as it downloads: given the part's final path, its link without the query
string, and the stream. The stream ends only once the part is verified and at that path."""


class ExportApiError(Exception):
    """Base class of every error this client raises."""


class InvalidRequestError(ExportApiError, ValueError):
    """An argument was rejected before any request was made."""


class AuthenticationError(ExportApiError):
    """The API refused the credentials (HTTP 401 or 403)."""

    def __init__(self, message: str, status_code: int):
        self.status_code = status_code
        super().__init__(message)


class ExportStillRunning(ExportApiError):
    """The export was still RUNNING at the polling deadline: ask again later."""

    def __init__(self, export_type: str, export_date: str, data_type: str | None, waited_s: float):
        self.export_type = export_type
        self.export_date = export_date
        self.data_type = data_type
        self.waited_s = waited_s
        what = f"{export_type} export {export_date}" + (f" of {data_type}" if data_type else "")
        super().__init__(f"GrowingIO {what} is still RUNNING after waiting {waited_s:.0f} s; retry later")


class ResponseFormatError(ExportApiError):
    """The API answered something this client cannot use (not JSON, wrong shape, unknown status)."""

    def __init__(self, problem: str, status_code: int | None = None, body_excerpt: str = ""):
        self.status_code = status_code
        self.body_excerpt = body_excerpt
        context = f" (HTTP {status_code}; body starts: {body_excerpt!r})" if status_code else ""
        super().__init__(f"unusable GrowingIO export API response: {problem}{context}")


class ApiHttpError(ExportApiError):
    """The API answered with an HTTP status that retrying cannot fix (e.g. 400, 404)."""

    def __init__(self, message: str, status_code: int | None):
        self.status_code = status_code
        super().__init__(message)


class ApiUnavailableError(ApiHttpError):
    """The API kept failing (429, 5xx, connection errors, timeouts) through every retry."""


class DownloadError(ExportApiError):
    """A part could not be downloaded intact, even with fresh links."""


DOC = "doc"
"""The key of a :class:`ClientSettings` field's description in its ``metadata``."""


def _setting(default: Any, doc: str) -> Any:
    """A settings field with its description, which the Dagster resource shows in the launchpad."""
    return field(default=default, metadata={DOC: doc})


@dataclass(frozen=True)
class ClientSettings:
    """Connection, pacing and retry settings of an :class:`ExportClient`: the one schema of each setting.

    Defaults follow the vendor's documentation: 2 API calls per second, links valid 60 minutes,
    an export normally ready within about an hour of the hour's end. A run polls a RUNNING export
    for 5 minutes by default, then its caller retries later.

    Authentication: ``token`` when given; else key-pair mode, which needs ``client_id``, ``private_key``
    and ``project_uid`` and shares one auth code through the store in ``lake_catalog`` (with
    ``lake_catalog_password`` when that is a PostgreSQL database).
    """

    token: str | None = field(
        default=None, repr=False, kw_only=True, metadata={DOC: "API token, sent as the Authorization header."}
    )
    project_id: str = field(metadata={DOC: "Project ID (`ai`), a hex string of 8 to 64 characters."})
    base_url: str = _setting("https://www.growingio.com", "API base URL (on-premise hosts differ).")
    client_id: str | None = _setting(
        None, "The project's public key, sent as X-Client-Id (key-pair mode, or if your account needs it)."
    )
    private_key: str | None = field(
        default=None,
        repr=False,
        metadata={DOC: "Key-pair mode (no token): the project's private key, which signs the code request."},
    )
    project_uid: str | None = _setting(
        None, "Key-pair mode: the project UID (the value after `projects/` in GrowingIO's URLs)."
    )
    lake_catalog: str = _setting(
        DEFAULT_CATALOG,
        "Key-pair mode: the lake catalog (SQLite file or `postgres:...`) where every run finds the shared auth code.",
    )
    lake_catalog_password: str | None = field(
        default=None,
        repr=False,
        metadata={DOC: "Key-pair mode with a PostgreSQL lake catalog: its password (the lake's own setting)."},
    )
    calls_per_second: float = _setting(2.0, "Vendor limit: 2 API calls per second.")
    connect_timeout_s: float = _setting(10.0, "Seconds to connect to the API or a download host.")
    read_timeout_s: float = _setting(60.0, "Seconds to wait for the next bytes of an answer or a download.")
    max_retries: int = _setting(5, "Retries of one API call on 429, 5xx, connection errors and timeouts.")
    backoff_base_s: float = _setting(0.5, "First retry delay; doubles each retry, with jitter.")
    backoff_max_s: float = _setting(30.0, "Cap of one retry delay, including a server's Retry-After.")
    running_deadline_s: float = _setting(300.0, "How long to poll a RUNNING export before giving up for now.")
    running_poll_interval_s: float = _setting(30.0, "First pause between polls of a RUNNING export; doubles.")
    running_poll_max_interval_s: float = _setting(120.0, "Cap of the pause between polls of a RUNNING export.")
    expire_minutes: int = _setting(60, f"Lifetime of download links, in minutes (1..{MAX_EXPIRE_MINUTES}).")
    download_concurrency: int = _setting(4, "Parts of one event type downloaded (each parsed as it arrives) at once.")
    max_link_refreshes: int = _setting(3, "How many times fresh links are requested for one event type's download.")

    def __post_init__(self) -> None:
        if self.token is not None:
            if not isinstance(self.token, str) or not self.token.strip():
                raise ValueError("ClientSettings.token must be a non-empty GrowingIO API token")
            if any(char in self.token for char in "\r\n"):
                raise ValueError("ClientSettings.token must be a single line")
        else:
            self._check_key_pair()
        _check_project_id(self.project_id)
        _check_base_url(self.base_url)
        for name in ("client_id", "private_key"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, str) or not value.strip() or any(char in value for char in "\r\n")
            ):
                raise ValueError(f"ClientSettings.{name} must be None or a non-empty single line")
        _check_expire(self.expire_minutes, ValueError)
        for name in (
            "calls_per_second",
            "connect_timeout_s",
            "read_timeout_s",
            "running_poll_interval_s",
            "running_poll_max_interval_s",
        ):
            _check_number(name, getattr(self, name), positive=True)
        for name in ("backoff_base_s", "backoff_max_s", "running_deadline_s"):
            _check_number(name, getattr(self, name), positive=False)
        for name in ("max_retries", "max_link_refreshes"):
            _check_count(name, getattr(self, name), minimum=0)
        _check_count("download_concurrency", self.download_concurrency, minimum=1)

    @property
    def uses_key_pair(self) -> bool:
        """Whether API calls carry a shared auth code (no token)."""
        return self.token is None

    def key_pair(self) -> tuple[str, str, str]:
        """``client_id``, ``private_key`` and ``project_uid`` in key-pair mode (all checked at construction)."""
        if self.client_id is None or self.private_key is None or self.project_uid is None:
            raise ValueError("these ClientSettings have no complete key pair")
        return self.client_id, self.private_key, self.project_uid

    def _check_key_pair(self) -> None:
        missing = [name for name in KEY_PAIR_FIELDS if not getattr(self, name)]
        if missing:
            raise ValueError(
                "ClientSettings needs a token, or a key pair (client_id, private_key and project_uid); "
                f"missing: {', '.join(missing)}"
            )
        if not isinstance(self.project_uid, str) or not _PROJECT_UID.fullmatch(self.project_uid):
            raise ValueError(
                f"project UID must be 1 to 64 letters, digits, '_' or '-' (e.g. nxog09md), got {self.project_uid!r}"
            )
        # A catalog it cannot use fails now, before any request (nothing is connected yet).
        open_auth_code_store(self.lake_catalog, self.lake_catalog_password)


def _check_number(name: str, value: object, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"ClientSettings.{name} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"ClientSettings.{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"ClientSettings.{name} must be an integer >= {minimum}, got {value!r}")


def _check_project_id(project_id: object) -> None:
    if not isinstance(project_id, str) or not _PROJECT_ID.fullmatch(project_id):
        raise ValueError(
            f"project id must be a hex string of 8 to 64 characters (e.g. 9b0d1f56d5baff1a), got {project_id!r}"
        )


def _check_base_url(base_url: object) -> None:
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("base_url must not carry credentials, a query or a fragment")


def _check_expire(expire_minutes: object, error: type[Exception]) -> None:
    if (
        isinstance(expire_minutes, bool)
        or not isinstance(expire_minutes, int)
        or not 1 <= expire_minutes <= MAX_EXPIRE_MINUTES
    ):
        raise error(f"expire must be an integer number of minutes in 1..{MAX_EXPIRE_MINUTES}, got {expire_minutes!r}")


def format_export_date(moment: datetime) -> str:
    """``yyyyMMddHHmm`` of ``moment`` in Beijing time, as the API expects.

    Naive datetimes are rejected: a time without a zone is ambiguous between UTC (the files'
    clock) and Beijing time (the API's clock).
    """
    if not isinstance(moment, datetime):
        raise InvalidRequestError(f"expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidRequestError(
            f"naive datetime {moment.isoformat()} is ambiguous; give it a timezone "
            "(e.g. ZoneInfo('Asia/Shanghai') or timezone.utc)"
        )
    return moment.astimezone(BEIJING).strftime(MINUTE_FORMAT)


def normalize_export_date(export_date: str | datetime) -> str:
    """The ``yyyyMMddHHmm`` form of ``export_date``.

    Accepts an aware datetime (see :func:`format_export_date`) or a Beijing-time string
    ``yyyyMMddHHmm``, ``yyyyMMddHH`` or ``yyyyMMdd`` naming a real calendar time.
    """
    if isinstance(export_date, datetime):
        return format_export_date(export_date)
    if not isinstance(export_date, str):
        raise InvalidRequestError(f"export_date must be a str or datetime, got {type(export_date).__name__}")
    date_format = EXPORT_DATE_FORMATS.get(len(export_date))
    if date_format is None or not export_date.isascii() or not export_date.isdigit():
        raise InvalidRequestError(
            f"export_date must be yyyyMMddHHmm, yyyyMMddHH or yyyyMMdd digits, got {export_date!r}"
        )
    try:
        datetime.strptime(export_date, date_format)
    except ValueError:
        raise InvalidRequestError(f"export_date {export_date!r} is not a real date/time") from None
    return export_date.ljust(12, "0")


class _RedactingLogFilter(logging.Filter):
    """Strips URL query strings from httpx/httpcore log records.

    httpx logs every request's full URL at INFO and httpcore logs response headers at DEBUG;
    for download links both would carry the link's signature.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: still never pass its arguments on raw
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact_text(message), None
        return True


def _install_log_redaction() -> None:
    # Logger filters do not apply to child loggers' records, so each httpcore logger gets one.
    names = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks")
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(existing, _RedactingLogFilter) for existing in target.filters):
            target.addFilter(_RedactingLogFilter())


_install_log_redaction()


class _Throttle:
    """Spaces calls at least ``1 / calls_per_second`` apart, across threads and across this host's processes.

    GrowingIO's limit is per token, and the runs of one host (catch-up runs two at a time, a backfill, the
    re-issue sensor) each have their own client: they share the next free slot through ``slot_file``, under
    an exclusive lock. The monotonic clock is the machine's, the same for every process.
    """

    def __init__(self, calls_per_second: float, slot_file: Path):
        self._interval = 1.0 / calls_per_second
        self._lock = threading.Lock()
        self._slot_file = slot_file

    def wait(self) -> None:
        """Block until this caller's slot comes."""
        with self._lock, open(self._slot_file, "a+") as shared:
            fcntl.flock(shared, fcntl.LOCK_EX)
            shared.seek(0)
            stored = shared.read().strip()
            now = time.monotonic()
            slot = max(now, float(stored) if stored else 0.0)
            shared.seek(0)
            shared.truncate()
            shared.write(repr(slot + self._interval))
        if slot > now:
            time.sleep(slot - now)


def _throttle_slot_file(settings: ClientSettings) -> Path:
    """The host's slot file for one API and project (a digest names it: the file says nothing of either)."""
    digest = hashlib.sha256(f"{settings.base_url}\0{settings.project_id}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"growingio-api-slots-{digest}"


_Fail = Callable[[str], "ResponseFormatError"]
"""Builds the error for a problem found in a response body, with its HTTP status and excerpt."""


class _PartFailure(Exception):
    """One part's download failed in a way fresh links may fix; the message is already redacted."""


class ExportClient:
    """A GrowingIO export API client: one pooled HTTP connection set, one throttle, thread-safe.

    Use as a context manager (or call :meth:`close`)::

        with ExportClient(settings) as client:
            result = client.wait_for_export("hour", "2026112903")
            parts = client.download_parts(result, "page", Path("/tmp/parts"))
    """

    def __init__(self, settings: ClientSettings):
        if not isinstance(settings, ClientSettings):
            raise TypeError(f"settings must be ClientSettings, got {type(settings).__name__}")
        self.settings = settings
        self._throttle = _Throttle(settings.calls_per_second, _throttle_slot_file(settings))
        self._random = random.Random()
        self._secrets: tuple[str, ...] = tuple(
            secret for secret in (settings.token, settings.private_key, settings.lake_catalog_password) if secret
        )
        self._api_headers = {"Accept": "application/json"}
        if settings.token is not None:
            self._api_headers["Authorization"] = settings.token
        if settings.client_id is not None:
            self._api_headers["X-Client-Id"] = settings.client_id
        self._shared_code: SharedAuthCode | None = None
        if settings.uses_key_pair:
            client_id, _, project_uid = settings.key_pair()
            scope = code_scope(settings.base_url, client_id, project_uid, settings.project_id)
            store = open_auth_code_store(settings.lake_catalog, settings.lake_catalog_password)
            self._shared_code = SharedAuthCode(store, scope, self._fetch_code)
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            # The API call that refreshes links can run while every download slot is busy.
            limits=httpx.Limits(max_connections=settings.download_concurrency + 1),
            follow_redirects=False,
        )

    def __enter__(self) -> ExportClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    # ------------------------------------------------------------------ API calls

    def request_export(
        self,
        export_type: str,
        export_date: str | datetime,
        data_type: str | None = None,
        *,
        expire_minutes: int | None = None,
    ) -> ExportResult:
        """Ask once (retrying transient failures) for an export; no polling.

        ``data_type=None`` uses the all-types endpoint, otherwise the one-type endpoint.
        Every status, including NOT_EXISTS and ERROR, is returned, not raised.
        """
        expire = self.settings.expire_minutes if expire_minutes is None else expire_minutes
        date = self._validate_request(export_type, export_date, data_type, expire)
        url = self._endpoint_url(export_type, date, data_type)
        response = self._api_get(url, {"expire": expire})
        result = self._parse_response(response, export_type, date, data_type)
        logger.info(
            "GrowingIO %s export %s%s: %s%s",
            export_type,
            date,
            f" ({data_type})" if data_type else "",
            result.status.value,
            f", parts per type {result.link_counts}" if result.download_links else "",
        )
        return result

    def wait_for_export(
        self,
        export_type: str,
        export_date: str | datetime,
        data_type: str | None = None,
        *,
        expire_minutes: int | None = None,
    ) -> ExportResult:
        """Like :meth:`request_export`, polling a RUNNING export with growing intervals.

        Raises :class:`ExportStillRunning` when still RUNNING at ``settings.running_deadline_s``.
        """
        settings = self.settings
        started = time.monotonic()
        interval = settings.running_poll_interval_s
        while True:
            result = self.request_export(export_type, export_date, data_type, expire_minutes=expire_minutes)
            if result.status is not ExportStatus.RUNNING:
                return result
            waited = time.monotonic() - started
            remaining = settings.running_deadline_s - waited
            if remaining <= 0:
                raise ExportStillRunning(export_type, result.requested_export_date, data_type, waited)
            pause = min(interval, remaining)
            logger.info("export still RUNNING; polling again in %.1f s", pause)
            time.sleep(pause)
            interval = min(interval * 2, settings.running_poll_max_interval_s)

    def _validate_request(
        self, export_type: str, export_date: str | datetime, data_type: str | None, expire: int
    ) -> str:
        if export_type not in EXPORT_TYPES:
            raise InvalidRequestError(f"export_type must be one of {', '.join(EXPORT_TYPES)}, got {export_type!r}")
        if data_type is not None and data_type not in EVENT_TYPES:
            raise InvalidRequestError(f"data_type must be None or one of {', '.join(EVENT_TYPES)}, got {data_type!r}")
        _check_expire(expire, InvalidRequestError)
        return normalize_export_date(export_date)

    def _endpoint_url(self, export_type: str, date: str, data_type: str | None) -> str:
        segments = (
            [export_type, data_type, self.settings.project_id] if data_type else [export_type, self.settings.project_id]
        )
        return f"{self.settings.base_url.rstrip('/')}/v2/insights/{'/'.join(segments)}/{date}.json"

    def _api_get(self, url: str, params: dict[str, Any]) -> tuple[int, bytes]:
        """GET an API URL with throttle and retries; the status and body of a usable answer.

        In key-pair mode a 401 to the shared code replaces it once (see :class:`SharedAuthCode`) and retries.
        """
        if self._shared_code is None:
            return self._authorized(self._api_call("GET", url, params=params, headers=self._api_headers))
        code = self._shared_code.current()
        status, body = self._api_call("GET", url, params=params, headers=self._with_code(code))
        if status == 401:
            logger.warning("GrowingIO refused the shared auth code (HTTP 401); replacing it once")
            code = self._shared_code.replace(code)
            status, body = self._api_call("GET", url, params=params, headers=self._with_code(code))
        return self._authorized((status, body))

    def _with_code(self, code: str) -> dict[str, str]:
        if code not in self._secrets:
            self._secrets += (code,)
        return {**self._api_headers, "Authorization": code}

    def _authorized(self, response: tuple[int, bytes]) -> tuple[int, bytes]:
        status = response[0]
        if status in (401, 403):
            what = "the key pair's auth code" if self._shared_code else "the API token"
            raise AuthenticationError(
                f"GrowingIO refused the credentials (HTTP {status}): check {what} "
                f"and that project id {self.settings.project_id} is the project it belongs to",
                status,
            )
        return response

    def _fetch_code(self) -> str:
        """A new auth code from ``POST /auth/token``, signed with the private key (invalidates the old code)."""
        settings = self.settings
        _, private_key, project_uid = settings.key_pair()
        body = code_request_body(private_key, project_uid, settings.project_id, time.time_ns() // 10**6)
        url = f"{settings.base_url.rstrip('/')}{TOKEN_PATH}"
        # The vendor wants a raw body, not a form: no form content type.
        headers = {**self._api_headers, "Content-Type": "text/plain;charset=UTF-8"}
        status, answer = self._api_call("POST", url, content=body.encode(), headers=headers)
        if status in (401, 403):
            raise AuthenticationError(
                f"GrowingIO refused the auth code request (HTTP {status}: {self._excerpt(answer)!r}): "
                "check the private key and project UID (GROWINGIO_PRIVATE_KEY, GROWINGIO_PROJECT_UID), the public "
                "key (GROWINGIO_CLIENT_ID) and project id, and this machine's clock",
                status,
            )
        if status != 200:
            raise ApiHttpError(
                f"GrowingIO answered HTTP {status} to the auth code request; body starts: {self._excerpt(answer)!r}",
                status,
            )
        return _parse_code(answer)

    def _api_call(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
    ) -> tuple[int, bytes]:
        """Send an API request with throttle and retries; the status and body of an answer retrying cannot
        improve (401 and 403 included)."""
        settings = self.settings
        attempt = 0
        while True:
            self._throttle.wait()
            retry_after: float | None = None
            last_status: int | None
            try:
                status, response_headers, body = self._send_bounded(method, url, headers, params, content)
            except httpx.TransportError as exc:
                problem, last_status = f"{type(exc).__name__}: {redact_text(str(exc), self._secrets)}", None
            else:
                last_status = status
                if status != 429 and status < 500:
                    return status, body
                problem, retry_after = f"HTTP {status}", _retry_after_seconds(response_headers)
            if attempt == settings.max_retries:
                raise ApiUnavailableError(
                    f"GrowingIO export API at {redact_url(url)} failed {attempt + 1} "
                    f"time{'s' if attempt else ''}; last: {problem}",
                    last_status,
                )
            delay = self._retry_delay(attempt, retry_after)
            logger.warning(
                "GrowingIO export API call failed (%s); retry %d of %d in %.2f s",
                problem,
                attempt + 1,
                settings.max_retries,
                delay,
            )
            time.sleep(delay)
            attempt += 1

    def _send_bounded(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: dict[str, Any] | None,
        content: bytes | None,
    ) -> tuple[int, httpx.Headers, bytes]:
        with self._http.stream(method, url, params=params, content=content, headers=headers) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > _MAX_API_BODY_BYTES:
                    raise ResponseFormatError(
                        f"body larger than {_MAX_API_BODY_BYTES} bytes",
                        response.status_code,
                        self._excerpt(bytes(body[:_EXCERPT_CHARS])),
                    )
            return response.status_code, response.headers, bytes(body)

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter; a server's Retry-After is a floor; both capped."""
        settings = self.settings
        backoff = min(settings.backoff_max_s, settings.backoff_base_s * 2.0**attempt)
        delay = backoff / 2 + self._random.uniform(0, backoff / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, settings.backoff_max_s)

    def _excerpt(self, body: bytes) -> str:
        text = body[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
        return redact_text(text, self._secrets)[:_EXCERPT_CHARS]

    # ------------------------------------------------------------------ response parsing

    def _parse_response(
        self, response: tuple[int, bytes], export_type: str, date: str, data_type: str | None
    ) -> ExportResult:
        status_code, body = response

        def fail(problem: str) -> ResponseFormatError:
            return ResponseFormatError(problem, status_code, self._excerpt(body))

        if status_code != 200:
            raise ApiHttpError(
                f"GrowingIO export API answered HTTP {status_code} for "
                f"{export_type} {date}{f' ({data_type})' if data_type else ''}; "
                f"body starts: {self._excerpt(body)!r}",
                status_code,
            )
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise fail("body is not JSON") from None
        if not isinstance(payload, dict):
            raise fail(f"expected a JSON object, got {type(payload).__name__}")
        raw_status = payload.get("status")
        try:
            status = ExportStatus(raw_status)
        except ValueError:
            raise fail(f"unknown status {str(raw_status)[:40]!r}") from None
        fields = {
            name: _optional_text(payload, name, fail)
            for name in ("exportDate", "requestTime", "errorMsg", "exportType", "dataType")
        }
        _check_echo(fields, export_type, date, data_type, fail)
        links: dict[str, tuple[str, ...]] = {}
        if status is ExportStatus.FINISHED:
            links = _parse_links(payload.get("downloadLinks"), data_type, fail)
        return ExportResult(
            status=status,
            export_type=export_type,
            export_date=fields["exportDate"],
            request_time=fields["requestTime"],
            # Free text from the server: shown in run logs, so no link signature may survive.
            error_msg=redact_text(fields["errorMsg"], self._secrets),
            download_links=links,
            requested_export_date=date,
        )

    # ------------------------------------------------------------------ downloads

    def download_parts(self, result: ExportResult, event_type: str, dest_dir: Path) -> list[DownloadedPart]:
        """Download ``event_type``'s parts of a FINISHED export into ``dest_dir``, verified.

        Parts download in parallel (``settings.download_concurrency``) to temporary files, then are
        renamed ``{event_type}-{index:05d}.csv.gz``. A part that is short, fails its MD5 or gzip
        check, or is refused (e.g. an expired link) is fetched again with fresh links from the
        one-type endpoint, up to ``settings.max_link_refreshes`` times; then :class:`DownloadError`.
        A type the all-types response left out is asked for on the one-type endpoint. Files in
        ``dest_dir`` from earlier calls are overwritten by index, never deleted: give each call its
        own directory.
        """
        return [part for part, _ in self._download_all(result, event_type, dest_dir, None)]

    def download_and_read_parts(
        self, result: ExportResult, event_type: str, dest_dir: Path, read: PartReader[ReadResult]
    ) -> list[tuple[DownloadedPart, ReadResult]]:
        """:meth:`download_parts`, with ``read`` given each part's inflated CSV while it downloads; each part
        with what ``read`` returned.

        ``read`` runs in a thread of its own per part, so parsing overlaps the network and each part is
        inflated once. Its stream ends only after the part is verified: a part that fails is read again
        from the start when it is fetched again, and what ``read`` made of the failed attempt is its own
        to discard (it sees :class:`~growingio_pipeline.byte_pipe.BrokenPipeFailure`). An error ``read``
        raises on an intact part is raised here.
        """
        return self._download_all(result, event_type, dest_dir, read)

    def _download_all(
        self, result: ExportResult, event_type: str, dest_dir: Path, read: PartReader[ReadResult] | None
    ) -> list[tuple[DownloadedPart, ReadResult]]:
        if event_type not in EVENT_TYPES:
            raise InvalidRequestError(f"event_type must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}")
        if not isinstance(result, ExportResult) or result.status is not ExportStatus.FINISHED:
            status = getattr(result, "status", None)
            raise InvalidRequestError(f"can only download a FINISHED export, got status {status}")
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        links = result.download_links.get(event_type)
        if links is None:
            logger.warning("the export response has no links for %s; asking for them", event_type)
            links = self._fresh_links(result, event_type)
        done: dict[int, tuple[DownloadedPart, ReadResult]] = {}
        pending = list(range(len(links)))
        for refresh in range(self.settings.max_link_refreshes + 1):
            failures = self._download_round(event_type, links, pending, dest_dir, done, read)
            if not failures:
                logger.info("downloaded %d %s part(s) to %s", len(links), event_type, dest_dir)
                return [done[index] for index in range(len(links))]
            if refresh == self.settings.max_link_refreshes:
                break
            logger.warning(
                "%d of %d %s part(s) failed (%s); asking for fresh links (refresh %d of %d)",
                len(failures),
                len(links),
                event_type,
                "; ".join(failures.values()),
                refresh + 1,
                self.settings.max_link_refreshes,
            )
            time.sleep(self._retry_delay(refresh, None))
            fresh = self._fresh_links(result, event_type)
            if len(fresh) == len(links):
                pending = sorted(failures)
            else:
                logger.warning(
                    "fresh links list %d %s part(s) instead of %d; downloading all again",
                    len(fresh),
                    event_type,
                    len(links),
                )
                _discard(done)
                pending = list(range(len(fresh)))
            links = fresh
        raise DownloadError(
            f"could not download {len(failures)} of {len(links)} {event_type} part(s) intact "
            f"after {self.settings.max_link_refreshes} link refresh(es): "
            + "; ".join(f"part {index}: {reason}" for index, reason in sorted(failures.items()))
        )

    def part_versions(self, result: ExportResult, event_type: str) -> list[PartVersion]:
        """The version of each of ``event_type``'s parts in a FINISHED export, from a HEAD request per link:
        nothing is downloaded. :class:`DownloadError` when a part does not answer 200."""
        versions = []
        for link in result.download_links.get(event_type, ()):
            try:
                response = self._http.request("HEAD", link, follow_redirects=True)
            except httpx.TransportError as exc:
                raise DownloadError(
                    f"HEAD of {redact_url(link)}: {type(exc).__name__}: {redact_text(str(exc), self._secrets)}"
                ) from None
            if response.status_code != 200:
                raise DownloadError(f"HEAD of {redact_url(link)} answered HTTP {response.status_code}")
            versions.append(_part_version(response.headers, None))
        return versions

    def _fresh_links(self, result: ExportResult, event_type: str) -> tuple[str, ...]:
        fresh = self.request_export(result.export_type, result.requested_export_date or result.export_date, event_type)
        if fresh.status is not ExportStatus.FINISHED:
            raise DownloadError(
                f"asked for fresh {event_type} links, but the export is now {fresh.status.value}"
                + (f": {fresh.error_msg}" if fresh.error_msg else "")
            )
        return fresh.download_links[event_type]

    def _download_round(
        self,
        event_type: str,
        links: tuple[str, ...],
        pending: list[int],
        dest_dir: Path,
        done: dict[int, tuple[DownloadedPart, ReadResult]],
        read: PartReader[ReadResult] | None,
    ) -> dict[int, str]:
        """Download (and read) ``pending`` parts in parallel into ``done``; the failure reason by index."""
        if not pending:
            return {}
        failures: dict[int, str] = {}
        workers = min(self.settings.download_concurrency, len(pending))
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="growingio-download") as downloads,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="growingio-read") as readers,
        ):
            futures = {
                index: downloads.submit(self._download_part, event_type, index, links[index], dest_dir, read, readers)
                for index in pending
            }
            for index, future in futures.items():
                try:
                    done[index] = future.result()
                except _PartFailure as failure:
                    failures[index] = f"{redact_url(links[index])}: {failure}"
        return failures

    def _download_part(
        self,
        event_type: str,
        index: int,
        link: str,
        dest_dir: Path,
        read: PartReader[ReadResult] | None,
        readers: ThreadPoolExecutor,
    ) -> tuple[DownloadedPart, ReadResult]:
        final_path = dest_dir / f"{event_type}-{index:05d}.csv.gz"
        source = redact_url(link)
        if read is None:
            version = self._save_verified(link, final_path, None)
            result = cast(ReadResult, None)
        else:
            pipe = BytePipe()
            reading = readers.submit(_read_to_end, read, final_path, source, pipe)
            try:
                version = self._save_verified(link, final_path, pipe)
            except BaseException as failure:
                pipe.fail(failure)
                reading.exception()  # waits for the reader, whose outcome is moot: the part is fetched again
                raise
            pipe.finish()
            result = reading.result()
        return DownloadedPart(event_type, index, final_path, source, version.size_bytes or 0, version), result

    def _save_verified(self, link: str, final_path: Path, inflated: BytePipe | None) -> PartVersion:
        """Download ``link`` to ``final_path`` through a temporary file, verified (see :meth:`_stream_verified`)."""
        fd, temp_name = tempfile.mkstemp(dir=final_path.parent, prefix=f".{final_path.name}.", suffix=".tmp")
        temp_path = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                version = self._stream_verified(link, out, inflated)
            os.replace(temp_path, final_path)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        return version

    def _stream_verified(self, link: str, out: BinaryIO, inflated: BytePipe | None) -> PartVersion:
        """Write the link's raw bytes to ``out``, checked against Content-Length, MD5 and gzip integrity.

        The gzip stream is inflated chunk by chunk as it arrives, in this download thread (ISA-L
        releases the GIL), so the check overlaps network I/O instead of reading the file again; the
        inflated bytes go to ``inflated`` when a reader wants them.
        """
        digest = hashlib.md5(usedforsecurity=False)
        gzip_check = _GzipCheck(None if inflated is None else inflated.feed)
        size = 0
        try:
            # Links point at a storage host: no API credentials go there.
            with self._http.stream("GET", link, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise _PartFailure(f"HTTP {response.status_code}")
                expected_size = response.headers.get("content-length")
                expected_md5 = response.headers.get("x-amz-meta-md5-hash")
                headers = response.headers
                # Raw bytes: the file as stored, whatever Content-Encoding says.
                for chunk in response.iter_raw(_DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    gzip_check.feed(chunk)
                    size += len(chunk)
        except httpx.TransportError as exc:
            raise _PartFailure(
                f"{type(exc).__name__} after {size} bytes: {redact_text(str(exc), self._secrets)}"
            ) from None
        if expected_size is not None and expected_size.strip() != str(size):
            raise _PartFailure(f"received {size} bytes, Content-Length says {expected_size[:20]!r}")
        if expected_md5 is not None:
            _verify_md5(digest.digest(), expected_md5)
        gzip_check.finish()
        return _part_version(headers, size)


def _read_to_end(read: PartReader[ReadResult], final_path: Path, source: str, pipe: BytePipe) -> ReadResult:
    """Run ``read`` on the pipe; closing it after, so that a reader that stops early never stalls the download."""
    with pipe:
        return read(final_path, source, io.BufferedReader(pipe))


def _part_version(headers: httpx.Headers, size: int | None) -> PartVersion:
    """A part's version from its response headers; ``size`` as received, else its Content-Length."""
    if size is None:
        length = headers.get("content-length", "").strip()
        size = int(length) if length.isdigit() else None
    return PartVersion(size, headers.get("etag"), headers.get("last-modified"))


def _parse_code(body: bytes) -> str:
    """The code of ``{"status": "success", "code": "..."}``; the body is never quoted, as it may hold a code."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    code = payload.get("code") if isinstance(payload, dict) and payload.get("status") == "success" else None
    if not isinstance(code, str) or not code.strip() or any(char in code for char in "\r\n"):
        raise ResponseFormatError(f'{TOKEN_PATH} did not answer {{"status": "success", "code": "<code>"}}')
    return code


def _optional_text(payload: Mapping[str, Any], name: str, fail: _Fail) -> str:
    value = payload.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise fail(f"field {name!r} should be a string, got {type(value).__name__}")
    return value


def _check_echo(fields: Mapping[str, str], export_type: str, date: str, data_type: str | None, fail: _Fail) -> None:
    """Reject a response that describes another export than the one asked for."""
    truncated = date[:10] if export_type == "hour" else date[:8]
    returned_date = re.sub(r"\D", "", fields["exportDate"])
    if returned_date and not returned_date.startswith(truncated):
        raise fail(f"asked for export date {truncated}, response is for {fields['exportDate']!r}")
    if fields["exportType"] and fields["exportType"] != export_type:
        raise fail(f"asked for a {export_type} export, response is for {fields['exportType']!r}")
    if data_type and fields["dataType"] and fields["dataType"] != data_type:
        raise fail(f"asked for {data_type}, response is for {fields['dataType']!r}")


def _parse_links(raw: object, data_type: str | None, fail: _Fail) -> dict[str, tuple[str, ...]]:
    """``downloadLinks`` of a FINISHED response: an object per type, or one list for one type."""
    if data_type is not None:
        if not isinstance(raw, list):
            raise fail(f"downloadLinks should be a list of links, got {type(raw).__name__}")
        return {data_type: _link_list(raw, data_type, fail)}
    if not isinstance(raw, dict):
        raise fail(f"downloadLinks should be an object of event type -> links, got {type(raw).__name__}")
    links = {}
    for event_type, type_links in raw.items():
        if event_type not in EVENT_TYPES:
            logger.warning("ignoring downloadLinks for unknown event type %r", str(event_type)[:60])
            continue
        if not isinstance(type_links, list):
            raise fail(f"downloadLinks[{event_type!r}] should be a list, got {type(type_links).__name__}")
        links[event_type] = _link_list(type_links, event_type, fail)
    return links


def _link_list(raw: list[Any], event_type: str, fail: _Fail) -> tuple[str, ...]:
    for index, link in enumerate(raw):
        if not isinstance(link, str):
            raise fail(f"{event_type} link {index} should be a string, got {type(link).__name__}")
        try:
            parts = urlsplit(link)
            usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        except ValueError:
            usable = False
        if not usable:
            raise fail(f"{event_type} link {index} is not an http(s) URL with a host: {redact_url(link)[:80]!r}")
    return tuple(raw)


def _retry_after_seconds(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delay: float = (moment - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, delay)


def _verify_md5(actual: bytes, header: str) -> None:
    """Compare with ``x-amz-meta-md5-hash``, which may be hex or base64; ignore an unreadable one."""
    header = header.strip()
    try:
        expected = bytes.fromhex(header) if len(header) == 32 else base64.b64decode(header, validate=True)
    except (ValueError, binascii.Error):
        expected = b""
    if len(expected) != 16:
        logger.warning("ignoring an unreadable x-amz-meta-md5-hash header")
        return
    if expected != actual:
        raise _PartFailure(f"MD5 {actual.hex()} does not match x-amz-meta-md5-hash {expected.hex()}")


_GZIP_MAGIC = b"\x1f\x8b"
_INFLATE_OUTPUT_BYTES = 4 * 1024 * 1024  # bounds the inflated bytes held at once (a zip bomb stays small)


class _GzipCheck:
    """Incremental gzip integrity check: every member inflated, its CRC-32 and length verified.

    Accepts what ``gzip.open`` accepts: concatenated members, zero padding after a member. The inflated
    bytes go to ``on_inflated`` (when given) as they come, at most ``_INFLATE_OUTPUT_BYTES`` at a time.
    """

    def __init__(self, on_inflated: Callable[[bytes], None] | None = None) -> None:
        self._on_inflated = on_inflated
        self._head = b""
        self._inflater: Any = None
        self._member_started = False

    def feed(self, data: bytes) -> None:
        """Check the next bytes of the stream; ``_PartFailure`` at the first sign of corruption."""
        if self._inflater is None:
            self._head += data[: 2 - len(self._head)]
            if len(self._head) < 2:
                return
            if self._head != _GZIP_MAGIC:
                raise _PartFailure(f"not a gzip file (starts with {self._head!r})")
            self._inflater = gzip_member_inflater()
        try:
            while data:
                data = self._inflate(data)
        except INFLATE_ERROR as exc:
            raise _PartFailure(f"gzip check failed: {exc}") from None

    def _inflate(self, data: bytes) -> bytes:
        """Inflate ``data`` (output to ``on_inflated``); the bytes still to inflate, which start a next member."""
        if self._inflater.eof:
            data = data.lstrip(b"\0")
            if not data:
                return b""
            self._inflater = gzip_member_inflater()
        self._member_started = True
        inflated = self._inflater.decompress(data, _INFLATE_OUTPUT_BYTES)
        if self._on_inflated is not None:
            self._on_inflated(inflated)
        if self._inflater.eof:
            self._member_started = False
            next_member: bytes = self._inflater.unused_data
            return next_member
        tail: bytes = self._inflater.unconsumed_tail
        return tail

    def finish(self) -> None:
        """The stream has ended: fail if it was empty or ended inside a member."""
        if self._inflater is None:
            raise _PartFailure(f"not a gzip file (starts with {self._head!r})")
        if self._member_started and not self._inflater.eof:
            raise _PartFailure("gzip check failed: the stream ends before the end of its last member")


def _discard(done: dict[int, tuple[DownloadedPart, ReadResult]]) -> None:
    for part, _ in done.values():
        part.path.unlink(missing_ok=True)
    done.clear()
