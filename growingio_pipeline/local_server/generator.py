"""Deterministic, realistic GrowingIO export rows, generated with numpy and polars.

Every value is a function of (project, export hour, seed, rows_per_hour): the same inputs give
the same rows on any machine. Rows of one hour join the way the vendor's tables do:

- a visit per session; visitUserId + sessionId are shared by every event of a session;
- page -> visit by vstRequestId (one page in ten belongs to a session that started the hour before);
- action, custom_event and pvar -> page by pageRequestId; action_tag -> action by actionRequestId;
- users log in mid-session: some sessions' events carry loginUserId only from a point on;
- ads_track_activation -> visit by visitUserId; an activation matches a click of an earlier hour
  (up to 3 days before) by device id (idfa, IMEI, androidId, OAID), or only by IP and user agent,
  or no click at all, and then carries that click's link, campaign and channel.

Row counts are ``rows_per_hour`` page rows times ``rows_per_page(type)``; the ad types have no
rows in ``ADS_QUIET_HOURS`` (Beijing). A type only the registry knows is generated too: the events of
random sessions, at ``DEFAULT_ROWS_PER_PAGE``, its other columns drawn by column kind. Values include
what real exports contain: Chinese text, commas, quotes, backslashes, LF and CRLF inside values, empty
strings, NULLs and very long URLs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa

from growingio_pipeline.event_types import EVENT_TYPES, Column, ColumnKind, EventType, get_event_type
from growingio_pipeline.export_contract import HOUR_FORMAT
from growingio_pipeline.local_server.clock import hours_of, parse_export_date

ROWS_PER_PAGE: dict[str, float] = {
    "visit": 0.25,  # four page views per session
    "page": 1.0,
    "action": 0.8,
    "action_tag": 0.3,
    "custom_event": 0.4,
    "pvar": 0.2,
    "evar": 0.1,
    "vstr": 0.05,
    "ads_track_click": 0.02,
    "ads_track_activation": 0.005,
}
"""Rows of each type per page row in an hour."""

DEFAULT_ROWS_PER_PAGE = 0.1
"""Rows per page row of a registry type that ``ROWS_PER_PAGE`` does not name."""

ADS_QUIET_HOURS = frozenset({2, 3, 4})
"""Beijing hours in which the ad types have no rows (a type can be empty in an hour)."""

if not set(ROWS_PER_PAGE) <= set(EVENT_TYPES):
    raise RuntimeError(
        f"ROWS_PER_PAGE names types the registry does not have: {sorted(set(ROWS_PER_PAGE) - set(EVENT_TYPES))}"
    )

_HOUR_MS = 3_600_000
_PREVIOUS_HOUR_PAGE_SHARE = 0.1
_MAX_ROWS_PER_HOUR = 1 << 24  # request ids pack (hour, row) into 64 bits
_PLATFORMS = ("web", "iOS", "Android", "minp")

_PICK_TABLE_SIZE = 1 << 16

_LOGIN_DELAY_MAX_MS = 20 * 60_000
"""A session that logs in mid-way does so up to 20 minutes after it starts."""
_AD_DEVICE_COLUMNS = ("idfa", "imei", "android_id", "oaid")
_AD_CAMPAIGN_COLUMNS = ("link_id", "campaign_id", "channel_id", "link_name", "campaign_name", "channel_name")
_ACTIVATION_MATCH_SHARES = (0.45, 0.25)
"""Shares of activations that match a click by device id, and only by IP and user agent; the rest match none."""
_CLICK_LAGS_H = (1, 2, 3, 5, 24, 72)
"""How many hours before its activation a matched click happened (inside the 7-day attribution window)."""

Recipe = Callable[[np.random.Generator, int], pl.Series]
"""Makes ``n`` values of one column from a random generator."""


def row_count(event_type: str, export_date: str, rows_per_hour: int) -> int:
    """How many rows ``event_type`` has in the hour ``export_date`` (yyyyMMddHH)."""
    if event_type.startswith("ads_") and parse_export_date(export_date).hour in ADS_QUIET_HOURS:
        return 0
    # Rounding up gives every type with rows at least one session and page to belong to.
    return math.ceil(rows_per_hour * rows_per_page(event_type))


def rows_per_page(event_type: str) -> float:
    """Rows of ``event_type`` per page row in an hour."""
    return ROWS_PER_PAGE.get(get_event_type(event_type).name, DEFAULT_ROWS_PER_PAGE)


def generate_hour(event_type: str, export_date: str, *, project_id: str, seed: int, rows_per_hour: int) -> pl.DataFrame:
    """The rows of ``event_type`` in the Beijing hour ``export_date`` (yyyyMMddHH).

    Columns are the registry's vendor names in registry order, all ``pl.Utf8``: null for NULL,
    ``""`` for an empty string.
    """
    frame = _hour_frame(event_type, export_date, project_id=project_id, seed=seed, rows_per_hour=rows_per_hour)
    return frame.select(pl.all().cast(pl.Utf8))


def generate_export(
    event_type: str,
    export_date: str,
    *,
    project_id: str,
    seed: int,
    rows_per_hour: int,
    enum_columns: bool = False,
) -> pl.DataFrame:
    """The rows of an hourly (yyyyMMddHH) or daily (yyyyMMdd: its 24 hours) export.

    With ``enum_columns`` the low-cardinality columns stay ``pl.Enum`` (same values, and the
    CSV writer escapes each category once instead of every row); otherwise all are ``pl.Utf8``.
    """
    hours = [
        _hour_frame(event_type, hour, project_id=project_id, seed=seed, rows_per_hour=rows_per_hour)
        for hour in hours_of(export_date)
    ]
    # An empty hour's columns are plain text: relaxed concatenation turns such a column into text.
    frame = pl.concat(hours, how="vertical_relaxed") if len(hours) > 1 else hours[0]
    return frame if enum_columns else frame.select(pl.all().cast(pl.Utf8))


def _hour_frame(event_type: str, export_date: str, *, project_id: str, seed: int, rows_per_hour: int) -> pl.DataFrame:
    """The hour's rows; pool-drawn columns are pl.Enum, the rest pl.Utf8."""
    spec = get_event_type(event_type)
    if len(export_date) != 10:
        raise ValueError(f"generate_hour needs an hourly export_date yyyyMMddHH, got {export_date!r}")
    if not 0 <= rows_per_hour < _MAX_ROWS_PER_HOUR:
        raise ValueError(f"rows_per_hour must be in 0..{_MAX_ROWS_PER_HOUR - 1}, got {rows_per_hour}")
    hour = _Hour(project_id, seed, export_date, rows_per_hour)
    n = row_count(event_type, export_date, rows_per_hour)
    if n == 0:
        return pl.DataFrame({column.vendor_name: pl.Series([], dtype=pl.Utf8) for column in spec.columns})
    linked = _LINKED.get(spec.name, _linked_by_default(spec))(hour, n)
    rng = hour.rng(f"columns:{spec.name}")
    columns: dict[str, pl.Series] = {}
    for column in spec.columns:
        values = linked[column.vendor_name] if column.vendor_name in linked else _recipe_for(column)(rng, n)
        columns[column.vendor_name] = values.alias(column.vendor_name)
    unknown = set(linked) - set(columns)
    if unknown:
        raise RuntimeError(f"linked columns {sorted(unknown)} are not registry columns of {spec.name}")
    return pl.DataFrame(columns)


# --- identifiers -------------------------------------------------------------------------------


def _splitmix64(keys: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix: distinct keys give distinct, random-looking values."""
    z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_HEX_PAIRS = np.frombuffer(b"".join(f"{byte:02x}".encode() for byte in range(256)), dtype=np.uint16)
_UUID_LAYOUT = ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12))
"""(hex offset, text offset, length) of the five dash-separated groups."""


def _random_bytes(keys: np.ndarray, salt: int) -> np.ndarray:
    """16 random-looking bytes per key (an (n, 16) uint8 array), distinct for distinct keys."""
    salt64 = np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    high = _splitmix64(keys.astype(np.uint64) ^ salt64)
    low = _splitmix64(high ^ np.uint64(0x5851F42D4C957F2D))
    raw = np.empty((len(keys), 2), dtype=">u8")
    raw[:, 0], raw[:, 1] = high, low
    return raw.view(np.uint8).reshape(len(keys), 16)


def _ascii_rows(matrix: np.ndarray) -> pl.Series:
    """Each row of an (n, width) uint8 ASCII array as one string."""
    count, width = matrix.shape
    offsets = np.arange(0, width * (count + 1), width, dtype=np.int64)
    data = np.ascontiguousarray(matrix)
    return pl.Series(pl.from_arrow(pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))))


def _uuid_matrix(keys: np.ndarray, salt: int) -> np.ndarray:
    """UUID-formatted ids as an (n, 36) ASCII matrix, unique per distinct key (for one salt).

    Ids stay matrices while rows are gathered (a cheap numpy copy) and become text at the end.
    """
    hex_digits = _HEX_PAIRS[_random_bytes(keys, salt)].view(np.uint8).reshape(len(keys), 32)
    text = np.full((len(keys), 36), ord("-"), dtype=np.uint8)
    for source, target, length in _UUID_LAYOUT:
        text[:, target : target + length] = hex_digits[:, source : source + length]
    return text


def _uuids(keys: np.ndarray, salt: int) -> pl.Series:
    """UUID-formatted text ids, unique per distinct key (for one salt)."""
    return _ascii_rows(_uuid_matrix(keys, salt))


def _prefixed_hex_matrix(prefixes: np.ndarray, keys: np.ndarray, salt: int) -> np.ndarray:
    """``<2-letter prefix><32 hex digits>`` ids as an (n, 34) ASCII matrix, unique per distinct key."""
    text = np.empty((len(keys), 34), dtype=np.uint8)
    text[:, :2] = np.frombuffer(prefixes.astype("S2").tobytes(), dtype=np.uint8).reshape(len(keys), 2)
    text[:, 2:] = _HEX_PAIRS[_random_bytes(keys, salt)].view(np.uint8).reshape(len(keys), 32)
    return text


def _salt(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _gather(series: pl.Series, index: np.ndarray) -> pl.Series:
    return series.gather(pl.Series(index, dtype=pl.UInt32))


def _ms_text(values: np.ndarray) -> pl.Series:
    return pl.Series(values.astype(np.int64)).cast(pl.Utf8)


# --- the hour's skeleton: sessions, pages and actions --------------------------------------------


@dataclass(frozen=True)
class _Sessions:
    """Sessions (= visits) that start in one hour."""

    user_index: np.ndarray
    visit_user_id: np.ndarray  # id matrices, see _uuid_matrix
    session_id: np.ndarray
    vst_request_id: np.ndarray
    platform: np.ndarray  # index into _PLATFORMS, fixed per user
    start_ms: np.ndarray

    @property
    def count(self) -> int:
        return len(self.user_index)

    def take(self, index: np.ndarray) -> _Sessions:
        return _Sessions(
            self.user_index[index],
            self.visit_user_id[index],
            self.session_id[index],
            self.vst_request_id[index],
            self.platform[index],
            self.start_ms[index],
        )

    @staticmethod
    def concat(first: _Sessions, second: _Sessions) -> _Sessions:
        return _Sessions(
            np.concatenate([first.user_index, second.user_index]),
            np.concatenate([first.visit_user_id, second.visit_user_id]),
            np.concatenate([first.session_id, second.session_id]),
            np.concatenate([first.vst_request_id, second.vst_request_id]),
            np.concatenate([first.platform, second.platform]),
            np.concatenate([first.start_ms, second.start_ms]),
        )


@dataclass(frozen=True)
class _Pages:
    sessions: _Sessions  # one entry per page row
    page_request_id: np.ndarray  # id matrix
    path: np.ndarray  # index into _PAGE_PATHS
    send_ms: np.ndarray
    time_ms: np.ndarray


@dataclass(frozen=True)
class _Actions:
    page_index: np.ndarray
    action_request_id: np.ndarray  # id matrix
    send_ms: np.ndarray


@dataclass(frozen=True)
class _Hour:
    """One project-hour: its keys, time window and lazily built skeleton."""

    project_id: str
    seed: int
    export_date: str
    rows_per_hour: int

    @property
    def start_ms(self) -> int:
        return int(parse_export_date(self.export_date).timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + _HOUR_MS

    @property
    def number(self) -> int:
        """Hours since the epoch: packs with a row number into a unique id key."""
        return self.start_ms // _HOUR_MS

    def previous(self) -> _Hour:
        earlier = parse_export_date(self.export_date) - timedelta(hours=1)
        return _Hour(self.project_id, self.seed, earlier.strftime(HOUR_FORMAT), self.rows_per_hour)

    def rng(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng(_salt(self.project_id, self.seed, self.export_date, purpose))

    def salt(self, purpose: str) -> int:
        return _salt(self.project_id, self.seed, purpose)

    def row_keys(self, n: int) -> np.ndarray:
        return (np.uint64(self.number) << np.uint64(24)) | np.arange(n, dtype=np.uint64)

    def window(self, rng: np.random.Generator, low_ms: np.ndarray) -> np.ndarray:
        """A random instant in [max(low, hour start), hour end) for each low bound."""
        low = np.maximum(low_ms, self.start_ms)
        instants: np.ndarray = low + np.floor(rng.random(len(low)) * (self.end_ms - low)).astype(np.int64)
        return instants

    def client_time(self, rng: np.random.Generator, send_ms: np.ndarray) -> np.ndarray:
        """The client's clock: a little before the server received the event."""
        return send_ms - rng.integers(0, 5_000, len(send_ms))

    @property
    def sessions(self) -> _Sessions:
        return _sessions(self)

    @property
    def pages(self) -> _Pages:
        return _pages(self)

    @property
    def actions(self) -> _Actions:
        return _actions(self)


@lru_cache(maxsize=8)
def _sessions(hour: _Hour) -> _Sessions:
    n = row_count("visit", hour.export_date, hour.rows_per_hour)
    rng = hour.rng("sessions")
    # Users recur across hours: each hour draws from one project-wide pool.
    user_index = rng.integers(0, max(1, hour.rows_per_hour), n).astype(np.uint64)
    platform = (_splitmix64(user_index ^ np.uint64(hour.salt("platform"))) % np.uint64(len(_PLATFORMS))).astype(
        np.int64
    )
    keys = hour.row_keys(n)
    return _Sessions(
        user_index=user_index,
        visit_user_id=_uuid_matrix(user_index, hour.salt("user")),
        session_id=_uuid_matrix(keys, hour.salt("session")),
        vst_request_id=_uuid_matrix(keys, hour.salt("visit")),
        platform=platform,
        start_ms=hour.window(rng, np.full(n, hour.start_ms, dtype=np.int64)),
    )


@lru_cache(maxsize=4)
def _pages(hour: _Hour) -> _Pages:
    n = row_count("page", hour.export_date, hour.rows_per_hour)
    rng = hour.rng("pages")
    current, previous = hour.sessions, hour.previous().sessions
    pool = _Sessions.concat(previous, current)
    # Pages exist only when rows_per_hour > 0, and then every hour has sessions (counts round up).
    index = np.where(
        rng.random(n) < _PREVIOUS_HOUR_PAGE_SHARE,
        rng.integers(0, previous.count, n),
        previous.count + rng.integers(0, current.count, n),
    )
    send_ms = hour.window(rng, pool.start_ms[index])
    # Rows of one session sit together (as in partitioned Spark output), in time order.
    order = np.argsort(index * _HOUR_MS + (send_ms - hour.start_ms))  # one int64 sort key: cheaper than lexsort
    index, send_ms = index[order], send_ms[order]
    sessions = pool.take(index)
    return _Pages(
        sessions=sessions,
        page_request_id=_uuid_matrix(hour.row_keys(n), hour.salt("page")),
        path=rng.integers(0, len(_PAGE_PATHS), n),
        send_ms=send_ms,
        time_ms=hour.client_time(rng, send_ms),
    )


@lru_cache(maxsize=4)
def _actions(hour: _Hour) -> _Actions:
    n = row_count("action", hour.export_date, hour.rows_per_hour)
    rng = hour.rng("actions")
    pages = hour.pages
    page_index = np.sort(rng.integers(0, len(pages.send_ms), n))
    prefixes = np.where(pages.sessions.platform[page_index] == 0, "wa", "ma")  # web or mobile
    send_ms = np.minimum(pages.send_ms[page_index] + rng.integers(0, 120_000, n), hour.end_ms - 1)
    return _Actions(page_index, _prefixed_hex_matrix(prefixes, hour.row_keys(n), hour.salt("action")), send_ms)


# --- columns that come from the skeleton (joins, times, sessions) --------------------------------

_DOMAINS = ("www.example-shop.cn", "com.example.shop", "com.example.shop", "wx123456789abc")
"""The domain (web host, app package or mini-program id) of each of _PLATFORMS."""
_PAGE_PATHS = (
    "/",
    "/index.html",
    "/products/spring-2026",
    "/cart",
    "/checkout/confirm",
    "/search",
    "/活动/双十一",
    "/user/profile",
    "/help/faq#退货",
    "MainActivity",
    "ProductDetailActivity",
    "pages/index/index",
)


def _session_columns(sessions: _Sessions) -> dict[str, pl.Series]:
    return {"visitUserId": _ascii_rows(sessions.visit_user_id), "sessionId": _ascii_rows(sessions.session_id)}


def _enum_pool(values: Sequence[str | None]) -> pl.Series:
    """A pool to draw from by index: an Enum series (None entries are nulls)."""
    categories = list(dict.fromkeys(value for value in values if value is not None))
    return pl.Series(list(values), dtype=pl.Enum(categories))


_DOMAIN_POOL = _enum_pool(_DOMAINS)
_PAGE_POOL = _enum_pool(_PAGE_PATHS)
_PLATFORM_POOL = _enum_pool(_PLATFORMS)


def _domain(platform: np.ndarray) -> pl.Series:
    return _gather(_DOMAIN_POOL, platform)


def _page_path(path: np.ndarray) -> pl.Series:
    return _gather(_PAGE_POOL, path)


def _login_user_id(sessions: _Sessions, send_ms: np.ndarray, hour: _Hour) -> pl.Series:
    """A stable login id for about half the users, null for the anonymous rest.

    Two visitor ids share each login (one person on two devices). Half the sessions of logged-in users
    log in mid-way: their events before the login carry no id.
    """
    mixed = _splitmix64((sessions.user_index >> np.uint64(1)) ^ np.uint64(hour.salt("login")))
    ids = pl.Series((mixed % np.uint64(10_000_000)).astype(np.int64)).cast(pl.Utf8)
    per_session = _splitmix64(sessions.start_ms.astype(np.uint64) ^ mixed)
    delay = np.where(
        per_session >> np.uint64(63) == 1, (per_session % np.uint64(_LOGIN_DELAY_MAX_MS)).astype(np.int64), 0
    )
    anonymous = pl.Series(((mixed >> np.uint64(60)) < np.uint64(8)) | (send_ms < sessions.start_ms + delay))
    return pl.select(pl.when(anonymous).then(None).otherwise("u" + ids)).to_series()


def _linked_visit(hour: _Hour, n: int) -> dict[str, pl.Series]:
    sessions = hour.sessions
    rng = hour.rng("linked:visit")
    return {
        **_session_columns(sessions),
        "platform": _gather(_PLATFORM_POOL, sessions.platform),
        "domain": _domain(sessions.platform),
        "page": _page_path(rng.integers(0, len(_PAGE_PATHS), n)),
        "time": _ms_text(hour.client_time(rng, sessions.start_ms)),
        "sendTime": _ms_text(sessions.start_ms),
        "vstRequestId": _ascii_rows(sessions.vst_request_id),
    }


def _linked_page(hour: _Hour, n: int) -> dict[str, pl.Series]:
    pages = hour.pages
    return {
        **_session_columns(pages.sessions),
        "platform": _gather(_PLATFORM_POOL, pages.sessions.platform),
        "domain": _domain(pages.sessions.platform),
        "page": _page_path(pages.path),
        "time": _ms_text(pages.time_ms),
        "sendTime": _ms_text(pages.send_ms),
        "loginUserId": _login_user_id(pages.sessions, pages.send_ms, hour),
        "pageRequestId": _ascii_rows(pages.page_request_id),
        "vstRequestId": _ascii_rows(pages.sessions.vst_request_id),
    }


def _page_event_columns(
    hour: _Hour, page_index: np.ndarray, send_ms: np.ndarray, rng: np.random.Generator
) -> dict[str, pl.Series]:
    """Columns of an event that happened on a page: its session, page and times."""
    pages = hour.pages
    sessions = pages.sessions.take(page_index)
    return {
        **_session_columns(sessions),
        "domain": _domain(sessions.platform),
        "page": _page_path(pages.path[page_index]),
        "sendTime": _ms_text(send_ms),
        "time": _ms_text(hour.client_time(rng, send_ms)),
        "pageTime": _ms_text(pages.time_ms[page_index]),
        "loginUserId": _login_user_id(sessions, send_ms, hour),
        "pageRequestId": _ascii_rows(pages.page_request_id[page_index]),
    }


def _linked_action(hour: _Hour, n: int) -> dict[str, pl.Series]:
    actions = hour.actions
    columns = _page_event_columns(hour, actions.page_index, actions.send_ms, hour.rng("linked:action"))
    del columns["pageTime"], columns["loginUserId"]
    return {**columns, "actionRequestId": _ascii_rows(actions.action_request_id)}


def _linked_action_tag(hour: _Hour, n: int) -> dict[str, pl.Series]:
    actions = hour.actions
    chosen = hour.rng("linked:action_tag").integers(0, len(actions.send_ms), n)
    return {
        "sendTime": _ms_text(actions.send_ms[chosen]),
        "actionRequestId": _ascii_rows(actions.action_request_id[chosen]),
    }


def _registry_columns(event_type: str, columns: dict[str, pl.Series]) -> dict[str, pl.Series]:
    """The columns that ``event_type`` documents (shared builders make a few more)."""
    documented = {column.vendor_name for column in EVENT_TYPES[event_type].columns}
    return {name: values for name, values in columns.items() if name in documented}


def _linked_page_event(event_type: str) -> Callable[[_Hour, int], dict[str, pl.Series]]:
    def linked(hour: _Hour, n: int) -> dict[str, pl.Series]:
        rng = hour.rng(f"linked:{event_type}")
        pages = hour.pages
        page_index = np.sort(rng.integers(0, len(pages.send_ms), n))  # a page's events sit together
        send_ms = np.minimum(pages.send_ms[page_index] + rng.integers(0, 60_000, n), hour.end_ms - 1)
        return _registry_columns(event_type, _page_event_columns(hour, page_index, send_ms, rng))

    return linked


def _linked_session_event(event_type: str) -> Callable[[_Hour, int], dict[str, pl.Series]]:
    def linked(hour: _Hour, n: int) -> dict[str, pl.Series]:
        rng = hour.rng(f"linked:{event_type}")
        sessions = hour.sessions.take(rng.integers(0, hour.sessions.count, n))
        send_ms = hour.window(rng, sessions.start_ms)
        columns = {
            **_session_columns(sessions),
            "domain": _domain(sessions.platform),
            "sendTime": _ms_text(send_ms),
            "time": _ms_text(hour.client_time(rng, send_ms)),
        }
        return _registry_columns(event_type, columns)

    return linked


def _device_columns(hour: _Hour, keys: np.ndarray, purpose: str, rng: np.random.Generator) -> dict[str, pl.Series]:
    """Device ids and IP unique per key (each id null for about half the devices): matches are never by chance."""
    salt = hour.salt(purpose)
    mixed = _splitmix64(keys ^ np.uint64(salt))
    octets = [
        pl.Series(((mixed >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.int64)).cast(pl.Utf8)
        for shift in (0, 8, 16, 24)
    ]
    ids = {
        "idfa": _uuids(keys, salt ^ 1),
        "imei": "86" + pl.Series((mixed % np.uint64(10**13)).astype(np.int64)).cast(pl.Utf8).str.zfill(13),
        "android_id": _ascii_rows(
            _HEX_PAIRS[_random_bytes(keys, salt ^ 2)[:, :8]].view(np.uint8).reshape(len(keys), 16)
        ),
        "oaid": _uuids(keys, salt ^ 3),
    }
    columns = {
        name: pl.select(pl.when(pl.Series(rng.random(len(keys)) < 0.5)).then(None).otherwise(values)).to_series()
        for name, values in ids.items()
    }
    columns["ip"] = pl.select(pl.concat_str([pl.lit(f"{10 + salt % 200}"), *octets[:3]], separator=".")).to_series()
    return columns


def _by_vendor_name(event_type: str, columns: dict[str, pl.Series]) -> dict[str, pl.Series]:
    """Columns keyed by registry (snake_case) name, renamed to ``event_type``'s vendor names."""
    vendor = {column.name: column.vendor_name for column in EVENT_TYPES[event_type].columns}
    return {vendor[name]: values for name, values in columns.items()}


def _linked_ads_click(hour: _Hour, n: int) -> dict[str, pl.Series]:
    rng = hour.rng("linked:ads_track_click")
    columns = _device_columns(hour, hour.row_keys(n), "click-device", rng)
    columns["event_time"] = _ms_text(hour.window(rng, np.full(n, hour.start_ms, dtype=np.int64)))
    return _by_vendor_name("ads_track_click", columns)


def _earlier_clicks(hour: _Hour, lag_h: int) -> pl.DataFrame:
    """The click rows ``lag_h`` hours before ``hour``, with registry (snake_case) column names."""
    earlier = (parse_export_date(hour.export_date) - timedelta(hours=lag_h)).strftime(HOUR_FORMAT)
    frame = generate_hour(
        "ads_track_click", earlier, project_id=hour.project_id, seed=hour.seed, rows_per_hour=hour.rows_per_hour
    )
    return frame.rename({column.vendor_name: column.name for column in EVENT_TYPES["ads_track_click"].columns})


def _linked_ads_activation(hour: _Hour, n: int) -> dict[str, pl.Series]:
    rng = hour.rng("linked:ads_track_activation")
    sessions = hour.sessions.take(rng.integers(0, hour.sessions.count, n))
    columns = _device_columns(hour, hour.row_keys(n), "activation-device", rng)
    columns["user_agent"] = _USER_AGENT(rng, n)
    columns.update({name: _RECIPES[name](rng, n) for name in _AD_CAMPAIGN_COLUMNS})
    draw, lags = rng.random(n), rng.choice(_CLICK_LAGS_H, n)
    by_device = draw < _ACTIVATION_MATCH_SHARES[0]
    by_ip = ~by_device & (draw < sum(_ACTIVATION_MATCH_SHARES))
    frame = pl.DataFrame(columns)
    for lag_h in _CLICK_LAGS_H:
        clicks = _earlier_clicks(hour, lag_h)
        rows = np.flatnonzero((by_device | by_ip) & (lags == lag_h))
        if clicks.height == 0 or len(rows) == 0:
            continue  # a quiet hour had no clicks: these activations match none
        click = clicks[rng.integers(0, clicks.height, len(rows))]
        copied = ["ip", "user_agent", *_AD_CAMPAIGN_COLUMNS]
        matched = click.select(
            copied + [pl.when(pl.Series(by_device[rows])).then(pl.col(name)).alias(name) for name in _AD_DEVICE_COLUMNS]
        )
        frame = (
            frame.with_columns(pl.Series("_row", np.arange(n)))
            .update(matched.with_columns(pl.Series("_row", rows)), on="_row", include_nulls=True)
            .drop("_row")
        )
    columns = {name: frame.get_column(name) for name in frame.columns}
    columns["visit_user_id"] = _ascii_rows(sessions.visit_user_id)
    columns["send_time"] = _ms_text(hour.window(rng, sessions.start_ms))
    return _by_vendor_name("ads_track_activation", columns)


def _linked_by_default(spec: EventType) -> Callable[[_Hour, int], dict[str, pl.Series]]:
    """A type only the registry knows: events of random sessions, its bucketing time inside the hour."""
    session_event = _linked_session_event(spec.name)

    def linked(hour: _Hour, n: int) -> dict[str, pl.Series]:
        columns = session_event(hour, n)
        if spec.bucket_column not in columns:
            rng = hour.rng(f"bucket:{spec.name}")
            columns[spec.bucket_column] = _ms_text(hour.window(rng, np.full(n, hour.start_ms, dtype=np.int64)))
        return columns

    return linked


_LINKED: dict[str, Callable[[_Hour, int], dict[str, pl.Series]]] = {
    "visit": _linked_visit,
    "page": _linked_page,
    "action": _linked_action,
    "action_tag": _linked_action_tag,
    "custom_event": _linked_page_event("custom_event"),
    "pvar": _linked_page_event("pvar"),
    "evar": _linked_session_event("evar"),
    "vstr": _linked_session_event("vstr"),
    "ads_track_click": _linked_ads_click,
    "ads_track_activation": _linked_ads_activation,
}


# --- value recipes for the other columns, keyed by snake_case column name ------------------------

_LONG_URL = "https://www.example-shop.cn/landing?" + "&".join(
    f"utm_param{i}=%E4%B8%AD%E6%96%87{i:04d}" for i in range(150)
)
_AWKWARD_TEXT: tuple[str | None, ...] = (
    "首页 - 春季新品",
    "商品详情：羽绒服，加厚款",
    'He said "buy now"',
    "price, with comma",
    "C:\\Users\\客户\\下载",
    "ends with backslash \\",
    '\\"already escaped\\"',
    "first line\nsecond line",
    "windows line\r\nbreak",
    "   spaces around   ",
    "emoji 🎉 and tab\there",
    "",
    None,
)


def _pick(values: Sequence[str | None], weights: Sequence[float] | None = None) -> Recipe:
    """Draw from ``values`` (optionally weighted); None in values becomes NULL."""
    pool = _enum_pool(values)
    # A lookup table turns weighted draws into one uniform integer draw (much faster than rng.choice(p=...)).
    shares = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=float)
    slots = np.maximum(1, np.round(shares / shares.sum() * _PICK_TABLE_SIZE)).astype(np.int64)
    table = np.repeat(np.arange(len(values), dtype=np.uint32), slots)

    def recipe(rng: np.random.Generator, n: int) -> pl.Series:
        return _gather(pool, table[rng.integers(0, len(table), n)])

    return recipe


def _with_nulls(base: Recipe, *, null_share: float, empty_share: float = 0.0) -> Recipe:
    """``base`` with some values replaced by NULL and some by the empty string."""

    def recipe(rng: np.random.Generator, n: int) -> pl.Series:
        draw = pl.Series(rng.random(n))
        values = base(rng, n)
        chosen = pl.when(draw < empty_share).then(pl.lit("")).when(draw < empty_share + null_share).then(None)
        return pl.select(chosen.otherwise(values)).to_series()

    return recipe


def _integers(low: int, high: int) -> Recipe:
    def recipe(rng: np.random.Generator, n: int) -> pl.Series:
        return pl.Series(rng.integers(low, high, n)).cast(pl.Utf8)

    return recipe


def _decimals(low: float, high: float, digits: int) -> Recipe:
    def recipe(rng: np.random.Generator, n: int) -> pl.Series:
        return pl.Series(np.round(rng.uniform(low, high, n), digits)).cast(pl.Utf8)

    return recipe


def _uuid_recipe(purpose: str) -> Recipe:
    def recipe(rng: np.random.Generator, n: int) -> pl.Series:
        return _uuids(rng.integers(0, 1 << 62, n, dtype=np.int64).astype(np.uint64), _salt(purpose))

    return recipe


def _json_texts(*maps: dict[str, str]) -> list[str]:
    return [json.dumps(one, ensure_ascii=False, separators=(",", ":")) for one in maps]


def _json_maps(*maps: dict[str, str]) -> Recipe:
    return _pick(_json_texts(*maps))


_URL_VALUES = (
    "https://www.example-shop.cn/",
    "https://www.baidu.com/s?wd=羽绒服,女",
    "https://m.example-shop.cn/cart?from=a%2Cb",
    _LONG_URL,
    "",
    None,
)
_URLS = _pick(_URL_VALUES, [40, 20, 20, 0.05, 5, 15])
_REFERRERS = _pick(_URL_VALUES, [20, 10, 10, 0.05, 5, 55])  # direct visits have none
_QUERY = _pick(
    ["", "id=101", "q=羽绒服&page=2", "utm_source=wechat&utm_medium=share", _LONG_URL[36:], None],
    [30, 20, 15, 15, 0.05, 20],
)
_TEXT = _pick(_AWKWARD_TEXT)
_ATTRIBUTE = _pick(  # customer and page attributes are mostly unset
    ["VIP", "普通会员", "北京", "上海,浦东", 'size "L"', "a\\b", "", None], [4, 3, 3, 2, 1, 1, 2, 84]
)
_DEVICE_ID = _with_nulls(_uuid_recipe("device"), null_share=0.5, empty_share=0.1)
_IP = _pick(["114.114.114.114", "223.5.5.5", "180.76.76.76", "2408:8207:1851::1", "", None], [30, 30, 20, 10, 5, 5])
_USER_AGENT = _pick(
    [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 MicroMessenger/8.0.47",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "Dalvik/2.1.0 (Linux; U; Android 14; V2307A Build/UP1A.231005.007)",
        None,
    ],
    [30, 40, 25, 5],
)
_OS_VERSION = _pick(["17.4", "16.7.2", "14", "13", "10.0", "", None])

_RECIPES: dict[str, Recipe] = {
    "account_version": _pick(["1", "2", None]),
    "query_parameters": _QUERY,
    "referrer": _REFERRERS,
    "referrer_page": _pick([*_PAGE_PATHS, None], [*([1] * len(_PAGE_PATHS)), len(_PAGE_PATHS)]),
    "language": _pick(["zh-CN", "zh-cn", "en-US", "zh-TW", "", None]),
    "screen_height": _pick(["2532", "1920", "844", "2400", None]),
    "screen_width": _pick(["1170", "1080", "390", "1440", None]),
    "ip": _IP,
    "user_agent": _USER_AGENT,
    "operating_system": _pick(["iOS", "Android", "Windows", "Mac OS X", "Linux", None]),
    "operating_system_version": _OS_VERSION,
    "client_version": _pick(["8.3.1", "8.2.0", "1.0.0-beta", "", None]),
    "channel": _pick(["App Store", "华为应用市场", "xiaomi", "官网,直接访问", "", None]),
    "device_brand": _pick(["Apple", "HUAWEI", "Xiaomi", "vivo", "OPPO", None]),
    "device_model": _pick(["iPhone15,2", "V2307A", "Mi 13", 'Pad "Pro" 11', None]),
    "device_type": _pick(["1", "2", "0", None]),
    "device_orientation": _pick(["PORTRAIT", "LANDSCAPE", None], [80, 15, 5]),
    "latitude": _with_nulls(_decimals(18.0, 53.0, 6), null_share=0.3),
    "longitude": _with_nulls(_decimals(73.0, 135.0, 6), null_share=0.3),
    "idfa": _DEVICE_ID,
    "android_id": _pick([*(f"{i:016x}" for i in range(1000, 1010)), None]),
    "imei": _pick([*(f"86{i:013d}" for i in range(10)), "", None], [*([1] * 10), 2, 8]),
    "title": _TEXT,
    "page_group": _pick(["商品", "活动", "首页", None]),
    "app_variable": _pick(
        [
            *_json_texts(
                {"appChannel": "华为"}, {"abTest": "B", "note": 'say "hi"'}, {}, {"path": "a\\b", "multi": "l1\nl2"}
            ),
            None,
        ],
        [1, 1, 1, 1, 6],
    ),
    "request_type": _pick(["clck", "chng", "sbmt"], [80, 12, 8]),
    "href": _URLS,
    "request_value": _TEXT,
    "index": _with_nulls(_integers(0, 50), null_share=0.4),
    "info": _TEXT,
    "rule_id": _pick([f"{i:08x}" for i in range(0x5A000000, 0x5A000040)]),
    "event_name": _pick(["addToCart", "payOrder", "search", "share_wechat", "领取优惠券"]),
    "event_number": _with_nulls(_decimals(0.0, 999.0, 2), null_share=0.3),
    "event_variable": _json_maps(
        {"price": "50.0", "item": "101"}, {"keyword": "羽绒服,女款"}, {"quote": 'a "b" c', "slash": "d\\e"}, {}
    ),
    "page_variable": _json_maps({"pageType": "detail"}, {"category": "服装/女装"}, {"crlf": "x\r\ny"}),
    "conversion_variable": _json_maps({"campaign": "双十一"}, {"coupon": "NEW10", "amount": "10"}, {"source": "a,b"}),
    "visitor_variable": _json_maps({"gender": "女", "age": "25-34"}, {"vipLevel": "3"}, {"tags": '["x","y"]'}),
    "uuid": _with_nulls(_uuid_recipe("ads-uuid"), null_share=0.2),
    "platform": _pick(_PLATFORMS),
    "link_id": _pick([f"lnk{i:03d}" for i in range(20)]),
    "campaign_id": _pick([f"cmp{i:02d}" for i in range(8)]),
    "channel_id": _pick([f"ch{i:02d}" for i in range(6)]),
    "link_name": _pick(["春季大促-信息流", "brand, search", 'link "A"', None]),
    "campaign_name": _pick(["双十一预热", "New Year 2026", None]),
    "channel_name": _pick(["今日头条", "腾讯广告", "百度", "Apple Search Ads"]),
    "ads_variable": _json_maps(
        {"keyword": "羽绒服"}, {"creative": 'banner "A"', "slot": "top,left"}, {}, {"path": "C:\\ads\\1"}
    ),
    "oaid": _DEVICE_ID,
    "click_url": _URLS,
}
_RECIPE_FAMILIES: tuple[tuple[re.Pattern[str], Recipe], ...] = (
    (re.compile(r"(customer|page)_attributes\d+"), _ATTRIBUTE),
)


_KIND_RECIPES: dict[ColumnKind, Recipe] = {
    ColumnKind.STRING: _TEXT,
    ColumnKind.BIGINT: _with_nulls(_integers(0, 1000), null_share=0.2),
    ColumnKind.DOUBLE: _with_nulls(_decimals(0.0, 1000.0, 3), null_share=0.2),
    ColumnKind.TIME: _integers(1_700_000_000_000, 1_800_000_000_000),  # epoch ms, 2023-2027
    ColumnKind.MAP: _json_maps({"key": "value"}, {"quote": 'a "b"', "comma": "c,d"}, {}),
}
"""Values of a column without a recipe of its own (a column only the registry knows), by kind."""


def _recipe_for(column: Column) -> Recipe:
    """The value recipe for a registry column: its own, its family's, or its kind's."""
    if column.name in _RECIPES:
        return _RECIPES[column.name]
    for pattern, recipe in _RECIPE_FAMILIES:
        if pattern.fullmatch(column.name):
            return recipe
    return _KIND_RECIPES[column.kind]
