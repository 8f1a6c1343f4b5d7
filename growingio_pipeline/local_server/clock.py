"""Beijing time, export dates and an injectable clock for tests."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from growingio_pipeline.event_types import BEIJING
from growingio_pipeline.export_contract import DAY_FORMAT, HOUR_FORMAT


def utc_now() -> datetime:
    """The real time, aware, in UTC."""
    return datetime.now(timezone.utc)


def parse_export_date(export_date: str) -> datetime:
    """``yyyyMMdd`` (a day) or ``yyyyMMddHH`` (an hour) as the aware Beijing start of that period."""
    if not export_date.isdigit() or len(export_date) not in (8, 10):
        raise ValueError(f"export_date must be yyyyMMdd or yyyyMMddHH digits, got {export_date!r}")
    layout = DAY_FORMAT if len(export_date) == 8 else HOUR_FORMAT
    try:
        return datetime.strptime(export_date, layout).replace(tzinfo=BEIJING)
    except ValueError:
        raise ValueError(f"export_date {export_date!r} is not a real date/hour") from None


def hours_of(export_date: str) -> list[str]:
    """The hourly export dates an export covers: itself for an hour, its 24 hours for a day."""
    start = parse_export_date(export_date)
    if len(export_date) == 10:
        return [export_date]
    return [(start + timedelta(hours=hour)).strftime(HOUR_FORMAT) for hour in range(24)]


class FrozenClock:
    """A clock that stands still until told to move: pass it as a server's ``clock``."""

    def __init__(self, start: datetime) -> None:
        self._now = _require_aware(start)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward (or back, with a negative delta)."""
        with self._lock:
            self._now = self._now + delta

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (aware)."""
        with self._lock:
            self._now = _require_aware(moment)


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the clock needs an aware datetime, got naive {moment.isoformat()}")
    return moment
