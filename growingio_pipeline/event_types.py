"""The ten GrowingIO event types and their columns: the single source of truth.

Assets, DuckDB tables, checks, the local export server and the docs are all
generated from ``EVENT_TYPES``. Column names are the vendor's (camelCase, as in
the CSV header); ``Column.name`` is the snake_case name used in DuckDB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")
"""Export dates are Beijing time (UTC+8, no DST); file times are UTC epoch milliseconds."""

RETENTION_DAYS = 15
"""Only the most recent 15 days can be exported."""


class ColumnKind(str, Enum):
    """How a column's text is typed when loaded."""

    STRING = "string"
    BIGINT = "bigint"
    DOUBLE = "double"
    MAP = "map"  # JSON object text, string -> string
    TIME = "time"  # UTC epoch milliseconds, loaded as TIMESTAMP WITH TIME ZONE


def snake_case(vendor_name: str) -> str:
    """Normalise a vendor column name: ``visitUserId`` -> ``visit_user_id``, ``IMEI`` -> ``imei``.

    Case variants the vendor uses for the same column (``channelID``/``channelId``,
    ``IMEI``/``imei``) map to one name.
    """
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", vendor_name.strip()).lower()


@dataclass(frozen=True)
class Column:
    """One documented column of an event type."""

    vendor_name: str
    kind: ColumnKind = ColumnKind.STRING

    @property
    def name(self) -> str:
        """The snake_case column name in DuckDB."""
        return snake_case(self.vendor_name)


@dataclass(frozen=True)
class EventType:
    """One GrowingIO event type: its export name, meaning and documented columns."""

    name: str
    title: str
    description: str
    columns: tuple[Column, ...]
    bucket_column: str
    """The vendor column whose UTC time places a row in its export hour."""

    @property
    def table_name(self) -> str:
        """The DuckDB table, schema-qualified."""
        return f"growingio.{self.name}"

    @property
    def bucket_column_name(self) -> str:
        """The snake_case name of ``bucket_column``."""
        return snake_case(self.bucket_column)

    @property
    def column_names(self) -> tuple[str, ...]:
        """snake_case names, in documented order."""
        return tuple(column.name for column in self.columns)

    def column_for_header(self, header_name: str) -> Column | None:
        """The documented column a CSV header name refers to, whatever its case; None if unknown."""
        return self._columns_by_name.get(snake_case(header_name))

    @cached_property
    def _columns_by_name(self) -> dict[str, Column]:
        return {column.name: column for column in self.columns}


def _columns(spec: str) -> tuple[Column, ...]:
    """Parse ``"visitUserId, time:time, latitude:double"`` into columns."""
    columns = []
    for item in spec.split(","):
        vendor_name, _, kind = item.strip().partition(":")
        columns.append(Column(vendor_name, ColumnKind(kind) if kind else ColumnKind.STRING))
    return tuple(columns)


def _numbered(prefix: str, first: int, last: int) -> str:
    return ", ".join(f"{prefix}{i}" for i in range(first, last + 1))


_EVENT_TYPE_LIST = (
    EventType(
        name="visit",
        title="Visits",
        description="A session start (访问): device, location, channel and client of each visit.",
        columns=_columns(
            "visitUserId, sessionId, accountVersion, platform, domain, page, queryParameters, "
            "referrer, language, screenHeight, screenWidth, time:time, sendTime:time, ip, userAgent, "
            "operatingSystem, operatingSystemVersion, clientVersion, channel, deviceBrand, "
            "deviceModel, deviceType, deviceOrientation, latitude:double, longitude:double, "
            "vstRequestId, idfa, androidId, IMEI"
        ),
        bucket_column="sendTime",
    ),
    EventType(
        name="page",
        title="Page views",
        description="A page view, with page-level and visitor attributes.",
        columns=_columns(
            "visitUserId, sessionId, platform, domain, page, queryParameters, referrer, "
            "referrerPage, title, time:time, sendTime:time, deviceOrientation, loginUserId, "
            f"pageGroup, appVariable:map, {_numbered('customerAttributes', 2, 10)}, "
            f"{_numbered('pageAttributes', 1, 10)}, pageRequestId, vstRequestId"
        ),
        bucket_column="sendTime",
    ),
    EventType(
        name="action",
        title="Actions",
        description="A click (clck), change (chng) or submit (sbmt) on a page.",
        columns=_columns(
            "visitUserId, sessionId, requestType, domain, page, sendTime:time, time:time, href, "
            "requestValue, index:bigint, info, pageRequestId, actionRequestId"
        ),
        bucket_column="sendTime",
    ),
    EventType(
        name="action_tag",
        title="Action tags",
        description="Links an action to the tagging rule (圈选规则) it matched.",
        columns=_columns("sendTime:time, actionRequestId, ruleId"),
        bucket_column="sendTime",
    ),
    EventType(
        name="custom_event",
        title="Custom events",
        description="A tracked custom event with its event variables.",
        columns=_columns(
            "visitUserId, sessionId, time:time, sendTime:time, pageTime:time, domain, page, "
            "queryParameters, eventName, eventNumber:double, eventVariable:map, loginUserId, "
            "pageRequestId"
        ),
        bucket_column="sendTime",
    ),
    EventType(
        name="pvar",
        title="Page variables",
        description="Page-level variables set on a page view.",
        columns=_columns(
            "visitUserId, sessionId, time:time, sendTime:time, pageTime:time, domain, page, "
            "pageVariable:map, pageRequestId"
        ),
        bucket_column="sendTime",
    ),
    EventType(
        name="evar",
        title="Conversion variables",
        description="Conversion variables set in a session.",
        columns=_columns("visitUserId, sessionId, time:time, sendTime:time, domain, conversionVariable:map"),
        bucket_column="sendTime",
    ),
    EventType(
        name="vstr",
        title="Visitor variables",
        description="Visitor-level variables set in a session.",
        columns=_columns("visitUserId, sessionId, time:time, sendTime:time, visitorVariable:map"),
        bucket_column="sendTime",
    ),
    EventType(
        name="ads_track_click",
        title="Ad clicks",
        description="A click on an ad tracking link, with the device that clicked.",
        columns=_columns(
            "idfa, IMEI, uuid, androidId, ip, userAgent, platform, operatingSystemVersion, "
            "eventTime:time, linkId, campaignId, channelId, linkName, campaignName, channelName, "
            "adsVariable:map, OAID, clickUrl"
        ),
        bucket_column="eventTime",
    ),
    EventType(
        name="ads_track_activation",
        title="Ad activations",
        description="An app activation attributed to an ad click.",
        columns=_columns(
            "visitUserId, idfa, imei, uuid, androidId, ip, userAgent, platform, "
            "operatingSystemVersion, sendTime:time, linkId, campaignId, channelID, linkName, "
            "campaignName, channelName, adsVariable:map, OAID"
        ),
        bucket_column="sendTime",
    ),
)

EVENT_TYPES: dict[str, EventType] = {event_type.name: event_type for event_type in _EVENT_TYPE_LIST}
"""The ten event types by export name, in the vendor's documented order."""


def get_event_type(name: str) -> EventType:
    """The event type called ``name``; a clear error for any other name."""
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown GrowingIO event type {name!r}; expected one of {', '.join(EVENT_TYPES)}") from None
