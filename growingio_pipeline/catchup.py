"""Which export partitions are due for a load attempt, read from the load ledger, the retention window and now.

Free of Dagster: the catch-up sensor, the expiry check and the freshness check all ask this module. A
partition is done once every event type has a LOADED ledger row for it. Any other partition inside the
vendor's retention window whose export should be ready is due again after a backoff that doubles with each
attempt up to a cap; ERROR (the vendor's own export failed) waits longer, since the vendor may re-run it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from growingio_pipeline.event_types import BEIJING, EVENT_TYPES, RETENTION_DAYS, get_event_type
from growingio_pipeline.export_contract import EXPORT_PERIODS, KEY_FORMATS
from growingio_pipeline.warehouse import LEDGER_TABLE, LoadStatus, ledger_columns

READY_AFTER = {"hour": timedelta(minutes=70), "day": timedelta(hours=6)}
"""When a first attempt is worth it: hourly exports are ready ~40 min after the hour (60 for 23:00-02:00);
the vendor advises daily exports after 06:00."""
RETENTION = timedelta(days=RETENTION_DAYS)
EXPIRY_WARNING = timedelta(hours=24)
"""An unloaded partition this close to leaving the retention window fails the expiry check and alerts."""
FRESHNESS_LAG = timedelta(hours=2)
"""The newest loaded partition may trail the newest ready one by this much before the assets go stale."""
DEFAULT_BACKOFF = timedelta(minutes=10)
BACKOFF_CAP_FACTOR = 24
"""Retry intervals double up to this many first intervals (4 h with the default 10 minutes)."""
ERROR_BACKOFF_FACTOR = 3
"""An ERROR export waits this many times longer (30 min first with the default), cap included."""

_UNLOADED_SEVERITY = (LoadStatus.ERROR, LoadStatus.FAILED, LoadStatus.NOT_EXISTS, LoadStatus.RUNNING)
"""When one attempt's types ended differently, the attempt counts as the first of these it holds."""


@dataclass(frozen=True)
class Attempt:
    """One run's unsuccessful attempt at a partition: its outcome and when it ended."""

    status: LoadStatus
    finished_at: datetime


@dataclass(frozen=True)
class PartitionHistory:
    """What the ledger knows of one partition: the types loaded and the attempts that loaded nothing."""

    loaded_types: frozenset[str] = frozenset()
    attempts: tuple[Attempt, ...] = ()
    """unsuccessful attempts, oldest first"""

    def missing(self, event_types: Sequence[str]) -> tuple[str, ...]:
        """Those of ``event_types`` without a LOADED row, in their order."""
        return tuple(name for name in event_types if name not in self.loaded_types)


@dataclass(frozen=True)
class CatchUpPolicy:
    """The export type, the first partition of the code location, the retry backoff and the event types kept
    loaded."""

    export_type: str
    first_start: datetime
    """start of the partitions definition's first partition (aware); nothing earlier is asked for"""
    backoff: timedelta = DEFAULT_BACKOFF
    event_types: tuple[str, ...] = tuple(EVENT_TYPES)
    """a partition is done once each of these has a LOADED row (all ten unless configured)"""

    def __post_init__(self) -> None:
        if not self.event_types:
            raise ValueError("catch-up needs at least one event type")
        for name in self.event_types:
            get_event_type(name)  # a clear ValueError naming the known types
        if self.export_type not in EXPORT_PERIODS:
            raise ValueError(f"export type must be 'hour' or 'day', not {self.export_type!r}")
        if self.backoff <= timedelta(0):
            raise ValueError(f"the retry backoff must be positive, got {self.backoff}")
        if self.first_start.tzinfo is None:
            raise ValueError("first_start must be an aware datetime")

    @property
    def period(self) -> timedelta:
        """One partition's length."""
        return EXPORT_PERIODS[self.export_type]

    def key(self, start: datetime) -> str:
        """The partition key (``export_date``) of the partition starting at ``start``."""
        return start.astimezone(BEIJING).strftime(KEY_FORMATS[self.export_type])

    def retry_delay(self, attempts: Sequence[Attempt]) -> timedelta:
        """How long after the last attempt the next one is due: doubling per attempt, capped; longer for ERROR."""
        if not attempts:
            return timedelta(0)
        factor = ERROR_BACKOFF_FACTOR if attempts[-1].status is LoadStatus.ERROR else 1
        growth = min(1 << min(len(attempts) - 1, BACKOFF_CAP_FACTOR.bit_length()), BACKOFF_CAP_FACTOR)
        return self.backoff * factor * growth


@dataclass(frozen=True)
class DuePartition:
    """A partition to request now, most urgent first."""

    key: str
    start: datetime
    expires_at: datetime
    attempts: int
    priority: int
    missing_types: tuple[str, ...]
    """the event types still to load: only these are requested"""
    """the partition's age in periods: the run queue starts higher values first, so older hours go first"""


@dataclass(frozen=True)
class WindowState:
    """Every partition of the retention window whose export should be ready, with its history."""

    policy: CatchUpPolicy
    now: datetime
    histories: Mapping[str, PartitionHistory] = field(default_factory=dict)

    def ready_starts(self) -> list[datetime]:
        """Starts of the partitions still inside the window whose export should be ready, oldest first."""
        period = self.policy.period
        oldest_kept = self.now - RETENTION
        start = max(self.policy.first_start, _period_floor(oldest_kept, self.policy.export_type))
        if start < oldest_kept:
            start += period
        starts = []
        while start + period + READY_AFTER[self.policy.export_type] <= self.now:
            starts.append(start)
            start += period
        return starts

    def history(self, start: datetime) -> PartitionHistory:
        """The ledger's history of the partition starting at ``start`` (empty if never attempted)."""
        return self.histories.get(self.policy.key(start), PartitionHistory())

    def due(self, in_flight: Iterable[str] = (), limit: int | None = None) -> list[DuePartition]:
        """Partitions to request now, nearest to expiry first, skipping those with a run in flight."""
        busy = set(in_flight)
        due = []
        for start in self.ready_starts():
            key, history = self.policy.key(start), self.history(start)
            if not history.missing(self.policy.event_types) or key in busy:
                continue
            if self.next_attempt_at(history) > self.now:
                continue
            due.append(self.partition(start))
        return due if limit is None else due[: max(limit, 0)]

    def partition(self, start: datetime) -> DuePartition:
        """The partition starting at ``start``: its key, expiry, attempts so far and queue priority."""
        age = int((self.now - start) / self.policy.period)
        history = self.history(start)
        missing = history.missing(self.policy.event_types)
        return DuePartition(self.policy.key(start), start, start + RETENTION, len(history.attempts), age, missing)

    def next_attempt_at(self, history: PartitionHistory) -> datetime:
        """When the partition's next attempt is due: at once if never tried, else after the backoff."""
        if not history.attempts:
            return self.now
        return history.attempts[-1].finished_at + self.policy.retry_delay(history.attempts)

    def at_risk(self, event_type: str | None = None) -> list[DuePartition]:
        """Partitions not loaded (for ``event_type``, or for every type kept loaded) that leave the window within
        ``EXPIRY_WARNING``, oldest first. None for a type catch-up does not keep loaded."""
        if event_type is not None and event_type not in self.policy.event_types:
            return []
        return [
            self.partition(start)
            for start in self.ready_starts()
            if not self.loaded(start, event_type) and start + RETENTION - self.now < EXPIRY_WARNING
        ]

    def loaded(self, start: datetime, event_type: str | None = None) -> bool:
        """Whether the partition starting at ``start`` is loaded for ``event_type`` (None: every type kept loaded)."""
        history = self.history(start)
        return event_type in history.loaded_types if event_type else not history.missing(self.policy.event_types)

    def unloaded_types(self, key: str) -> list[str]:
        """Event types kept loaded without a LOADED row for partition ``key``."""
        return list(self.histories.get(key, PartitionHistory()).missing(self.policy.event_types))

    def freshness_lag(self, event_type: str | None = None) -> timedelta | None:
        """How far the newest partition loaded (for ``event_type``, or for every type) trails the newest ready
        one; None when no partition is ready yet, or for a type catch-up does not keep loaded.

        With nothing loaded in the window, the lag runs from just before the window's oldest ready partition.
        """
        starts = self.ready_starts()
        if not starts or (event_type is not None and event_type not in self.policy.event_types):
            return None
        loaded = [start for start in starts if self.loaded(start, event_type)]
        newest_loaded = loaded[-1] if loaded else starts[0] - self.policy.period
        return starts[-1] - newest_loaded


def freshness_fail_window(export_type: str) -> timedelta:
    """How long without a new materialization an asset stays fresh: the allowed lag plus one period."""
    return FRESHNESS_LAG + EXPORT_PERIODS[export_type]


def _period_floor(moment: datetime, export_type: str) -> datetime:
    """The start of the Beijing hour or day holding ``moment`` (China has no daylight saving time)."""
    local = moment.astimezone(BEIJING).replace(minute=0, second=0, microsecond=0)
    return local.replace(hour=0) if export_type == "day" else local


def histories_from_rows(rows: Iterable[tuple[str, str, str, datetime, datetime]]) -> dict[str, PartitionHistory]:
    """Partition histories from ledger rows ``(event_type, partition_key, status, started_at, finished_at)``.

    Rows of one run's attempt share ``started_at``; LOADED rows count towards ``loaded_types`` only.
    """
    loaded: dict[str, set[str]] = defaultdict(set)
    outcomes: dict[str, dict[datetime, tuple[set[LoadStatus], datetime]]] = defaultdict(dict)
    for event_type, partition_key, status, started_at, finished_at in rows:
        if status == LoadStatus.LOADED.value:
            loaded[partition_key].add(event_type)
            continue
        statuses, finished = outcomes[partition_key].get(started_at, (set(), finished_at))
        statuses.add(LoadStatus(status))
        outcomes[partition_key][started_at] = (statuses, max(finished, finished_at))
    histories = {}
    for key in loaded.keys() | outcomes.keys():
        attempts = tuple(
            Attempt(next(status for status in _UNLOADED_SEVERITY if status in statuses), finished_at)
            for _, (statuses, finished_at) in sorted(outcomes[key].items())
        )
        histories[key] = PartitionHistory(frozenset(loaded[key]), attempts)
    return histories


def read_histories(conn: duckdb.DuckDBPyConnection, export_type: str, since: str = "") -> dict[str, PartitionHistory]:
    """The history of every partition of ``export_type`` from key ``since`` on (keys sort as times), from the
    ledger; empty when the lake has no ledger yet (nothing was ever loaded)."""
    if not ledger_columns(conn):
        return {}
    rows = conn.execute(
        f"SELECT event_type, partition_key, status, started_at, finished_at FROM {LEDGER_TABLE} "
        "WHERE export_type = ? AND partition_key >= ?",
        [export_type, since],
    ).fetchall()
    return histories_from_rows(rows)


def with_failed_runs(
    histories: Mapping[str, PartitionHistory], failed_runs: Iterable[tuple[str, datetime, datetime]]
) -> dict[str, PartitionHistory]:
    """``histories`` plus the failed runs ``(partition_key, started_at, ended_at)`` the ledger has no attempt for.

    A run can fail before it writes a ledger row (no credentials, the lake unreachable): it still counts as
    an attempt, so its partition backs off instead of being requested again at every tick.
    """
    merged = dict(histories)
    for key, started_at, ended_at in failed_runs:
        history = merged.get(key, PartitionHistory())
        if any(attempt.finished_at >= started_at for attempt in history.attempts):
            continue
        attempts = sorted((*history.attempts, Attempt(LoadStatus.FAILED, ended_at)), key=lambda a: a.finished_at)
        merged[key] = PartitionHistory(history.loaded_types, tuple(attempts))
    return merged
