"""The catch-up planner alone: window, backoff, priority, in-flight partitions, expiry and freshness."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from growingio_pipeline.catchup import (
    Attempt,
    CatchUpPolicy,
    PartitionHistory,
    WindowState,
    histories_from_rows,
    read_histories,
    with_failed_runs,
)
from growingio_pipeline.event_types import BEIJING, EVENT_TYPES
from growingio_pipeline.warehouse import LoadAttempt, LoadStatus, record_attempt

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=BEIJING)
FIRST_START = datetime(2026, 11, 1, tzinfo=BEIJING)
POLICY = CatchUpPolicy("hour", FIRST_START)
ALL_TYPES = frozenset(EVENT_TYPES)


def hour(key: str) -> datetime:
    return datetime.strptime(key, "%Y%m%d%H%M").replace(tzinfo=BEIJING)


def done(*keys: str) -> dict[str, PartitionHistory]:
    return {key: PartitionHistory(ALL_TYPES) for key in keys}


def failed(status: LoadStatus, *minutes_ago: float) -> PartitionHistory:
    return PartitionHistory(attempts=tuple(Attempt(status, NOW - timedelta(minutes=m)) for m in minutes_ago))


def all_loaded_but(*keys: str, now: datetime = NOW) -> dict[str, PartitionHistory]:
    """Every ready partition of the window loaded except ``keys``."""
    starts = WindowState(POLICY, now).ready_starts()
    return done(*(POLICY.key(start) for start in starts if POLICY.key(start) not in keys))


def test_window_holds_the_last_15_days_of_ready_hours_and_nothing_before_the_first_partition():
    starts = WindowState(POLICY, NOW).ready_starts()
    # 12:30 now: 11:00-12:00 is ready at 13:10, so the newest ready hour is 10:00; the oldest is 15 days back.
    assert starts[-1] == hour("202611291000")
    assert starts[0] == hour("202611141300")
    assert len(starts) == 15 * 24 - 2  # 360 hours back from 12:30, less 11:00 and 12:00
    late_start = CatchUpPolicy("hour", hour("202611290500"))
    assert WindowState(late_start, NOW).ready_starts()[0] == hour("202611290500")


def test_every_hour_without_all_ten_types_loaded_is_due_and_done_hours_are_not():
    histories = all_loaded_but("202611281500", "202611290900")
    histories["202611290900"] = PartitionHistory(ALL_TYPES - {"page"})  # one type missing: not done
    assert [partition.key for partition in WindowState(POLICY, NOW, histories).due()] == [
        "202611281500",
        "202611290900",
    ]


def test_backoff_doubles_from_the_configured_interval_up_to_a_cap_and_error_waits_longer():
    policy = CatchUpPolicy("hour", FIRST_START, backoff=timedelta(minutes=10))
    delays = [policy.retry_delay(failed(LoadStatus.NOT_EXISTS, *range(n)).attempts) for n in range(1, 9)]
    assert [delay / timedelta(minutes=1) for delay in delays] == [10, 20, 40, 80, 160, 240, 240, 240]
    error_delays = [policy.retry_delay(failed(LoadStatus.ERROR, *range(n)).attempts) for n in (1, 2, 7)]
    assert [delay / timedelta(minutes=1) for delay in error_delays] == [30, 60, 720]
    assert policy.retry_delay(()) == timedelta(0)


@pytest.mark.parametrize(
    ("status", "minutes_ago", "is_due"),
    [
        (LoadStatus.NOT_EXISTS, 9, False),
        (LoadStatus.NOT_EXISTS, 11, True),
        (LoadStatus.FAILED, 11, True),
        (LoadStatus.ERROR, 11, False),  # the vendor may re-run the export: 30 minutes first
        (LoadStatus.ERROR, 31, True),
        (LoadStatus.RUNNING, 11, True),
    ],
)
def test_an_unloaded_hour_is_due_again_once_its_backoff_has_passed(status, minutes_ago, is_due):
    histories = all_loaded_but("202611290600")
    histories["202611290600"] = failed(status, minutes_ago)
    due = WindowState(POLICY, NOW, histories).due()
    assert [partition.key for partition in due] == (["202611290600"] if is_due else [])


def test_the_backoff_interval_comes_from_the_policy():
    histories = all_loaded_but("202611290600")
    histories["202611290600"] = failed(LoadStatus.NOT_EXISTS, 2)
    quick = CatchUpPolicy("hour", FIRST_START, backoff=timedelta(minutes=1))
    assert [partition.key for partition in WindowState(quick, NOW, histories).due()] == ["202611290600"]
    assert WindowState(POLICY, NOW, histories).due() == []


def test_not_exists_is_retried_until_the_hour_leaves_the_window():
    histories = {"202611141300": failed(LoadStatus.NOT_EXISTS, 60, 50)}  # 20 min after the last: due 30 min ago
    assert "202611141300" in [p.key for p in WindowState(POLICY, NOW, histories).due()]
    # It started on 2026-11-14 13:00 Beijing: from 2026-11-29 13:00 the vendor no longer has it.
    later = NOW + timedelta(minutes=31)
    assert "202611141300" not in [p.key for p in WindowState(POLICY, later, histories).due()]


def test_nearest_to_expiry_goes_first_with_queue_priority_by_age_and_a_limit():
    histories = all_loaded_but("202611290200", "202611151000", "202611220700")
    due = WindowState(POLICY, NOW, histories).due(limit=2)
    assert [partition.key for partition in due] == ["202611151000", "202611220700"]
    assert due[0].priority > due[1].priority
    assert due[0].expires_at == hour("202611151000") + timedelta(days=15)
    assert WindowState(POLICY, NOW, histories).due(limit=0) == []


def test_a_partition_with_a_run_in_flight_is_never_requested_twice():
    histories = all_loaded_but("202611290200", "202611290300")
    due = WindowState(POLICY, NOW, histories).due(in_flight={"202611290200"})
    assert [partition.key for partition in due] == ["202611290300"]


def test_daily_exports_follow_the_same_rules():
    policy = CatchUpPolicy("day", datetime(2026, 11, 1, tzinfo=BEIJING))
    # 2026-11-29 05:00 Beijing: yesterday's export is not worth asking for before 06:00.
    early = datetime(2026, 11, 29, 5, tzinfo=BEIJING)
    late = datetime(2026, 11, 29, 7, tzinfo=BEIJING)
    assert WindowState(policy, early).ready_starts()[-1] == datetime(2026, 11, 27, tzinfo=BEIJING)
    histories = {
        "20261127": PartitionHistory(ALL_TYPES),
        "20261128": PartitionHistory(attempts=(Attempt(LoadStatus.NOT_EXISTS, late - timedelta(minutes=5)),)),
    }
    due = WindowState(policy, late, histories).due()
    assert [partition.key for partition in due][:1] == ["20261115"]
    assert "20261128" not in [partition.key for partition in due]
    assert "20261128" in [p.key for p in WindowState(policy, late + timedelta(minutes=6), histories).due()]


def test_expiry_risk_names_unloaded_hours_less_than_24_hours_from_leaving_the_window():
    histories = all_loaded_but("202611141500", "202611151300", "202611161300")
    histories["202611141500"] = PartitionHistory(ALL_TYPES - {"vstr"})
    window = WindowState(POLICY, NOW, histories)
    assert [partition.key for partition in window.at_risk()] == ["202611141500"]
    assert [partition.key for partition in window.at_risk("vstr")] == ["202611141500"]
    assert window.at_risk("page") == []
    assert window.unloaded_types("202611141500") == ["vstr"]


def test_freshness_lag_is_the_distance_from_the_newest_loaded_to_the_newest_ready_hour():
    histories = all_loaded_but("202611290900", "202611291000")
    window = WindowState(POLICY, NOW, histories)
    assert window.freshness_lag() == timedelta(hours=2)
    histories = all_loaded_but("202611290800", "202611290900", "202611291000")
    assert WindowState(POLICY, NOW, histories).freshness_lag() == timedelta(hours=3)
    assert WindowState(POLICY, NOW, all_loaded_but()).freshness_lag() == timedelta(0)


def test_ledger_rows_become_histories_one_attempt_per_run_worst_outcome_first():
    t0 = datetime(2026, 11, 29, 3, tzinfo=timezone.utc)
    rows = [
        ("page", "202611290300", "NOT_EXISTS", t0, t0 + timedelta(seconds=1)),
        ("visit", "202611290300", "NOT_EXISTS", t0, t0 + timedelta(seconds=2)),
        ("page", "202611290300", "LOADED", t0 + timedelta(hours=1), t0 + timedelta(hours=1, seconds=3)),
        ("visit", "202611290300", "FAILED", t0 + timedelta(hours=1), t0 + timedelta(hours=1, seconds=4)),
        ("visit", "202611290300", "ERROR", t0 + timedelta(hours=1), t0 + timedelta(hours=1, seconds=1)),
    ]
    history = histories_from_rows(rows)["202611290300"]
    assert history.loaded_types == {"page"}
    assert history.attempts == (
        Attempt(LoadStatus.NOT_EXISTS, t0 + timedelta(seconds=2)),
        Attempt(LoadStatus.ERROR, t0 + timedelta(hours=1, seconds=4)),
    )
    assert history.missing(list(EVENT_TYPES)) == tuple(name for name in EVENT_TYPES if name != "page")


def test_a_failed_run_without_ledger_rows_counts_as_an_attempt_once():
    run_start, run_end = NOW - timedelta(minutes=3), NOW - timedelta(minutes=2)
    merged = with_failed_runs({}, [("202611290600", run_start, run_end)])
    assert merged["202611290600"].attempts == (Attempt(LoadStatus.FAILED, run_end),)
    # The run recorded its own attempt: the ledger row already counts it.
    recorded = {"202611290600": failed(LoadStatus.ERROR, 2.5)}
    assert with_failed_runs(recorded, [("202611290600", run_start, run_end)]) == recorded


def test_histories_are_read_from_the_ledger_of_one_export_type(conn):
    started = datetime(2026, 11, 29, 3, tzinfo=timezone.utc)
    for export_type, status in (("hour", "LOADED"), ("day", "NOT_EXISTS")):
        record_attempt(
            conn,
            LoadAttempt.unloaded(
                event_type="page",
                partition_key="202611290300",
                export_type=export_type,
                status=status,
                error_msg=None,
                started_at=started,
            ),
        )
    assert read_histories(conn, "hour") == {"202611290300": PartitionHistory(frozenset({"page"}))}
    assert read_histories(conn, "day")["202611290300"].attempts[0].status is LoadStatus.NOT_EXISTS


def test_a_policy_refuses_bad_settings():
    with pytest.raises(ValueError, match="export type"):
        CatchUpPolicy("week", FIRST_START)
    with pytest.raises(ValueError, match="backoff must be positive"):
        CatchUpPolicy("hour", FIRST_START, backoff=timedelta(0))
    with pytest.raises(ValueError, match="aware"):
        CatchUpPolicy("hour", datetime(2026, 11, 1))
