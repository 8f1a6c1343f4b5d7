"""The re-issue check: reloads a loaded partition when the vendor has produced it again.

A few loaded partitions per tick, in turn (the cursor is the last partition checked), at a low rate: each check
is one API call, throttled by the client like every call, and a HEAD per part of the types loaded. A partition
whose parts changed is requested again for those types only; the reload replaces its rows, and records the new
fingerprint, so the next check finds nothing to do. No run key: a reload that failed is requested again at the
partition's next check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import dagster as dg

from growingio_pipeline.catchup import CatchUpPolicy
from growingio_pipeline.catchup_sensor import (
    credentials_missing,
    load_request,
    read_ledger,
    runs_in_flight,
    utc_now,
    window_start_key,
)
from growingio_pipeline.export_api import ExportApiError
from growingio_pipeline.reissue import changed_types, loaded_fingerprints
from growingio_pipeline.resources import GrowingIOExportResource, WarehouseResource

REISSUE_TAG = "growingio/reissued"
CHECKS_PER_TICK = 4
"""Partitions re-checked per tick: 4 API calls every 5 minutes, so the 15-day window comes round in 7.5 hours."""
TICK_INTERVAL_S = 300


def next_batch(keys: Sequence[str], cursor: str | None, size: int) -> list[str]:
    """Up to ``size`` of the sorted ``keys`` after ``cursor``, wrapping round to the start."""
    after = [key for key in keys if cursor is None or key > cursor]
    before = [key for key in keys if cursor is not None and key <= cursor]
    return (after + before)[:size]


def build_reissue_sensor(
    job: dg.UnresolvedAssetJobDefinition,
    policy: CatchUpPolicy,
    *,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    clock: Callable[[], datetime] = utc_now,
) -> dg.SensorDefinition:
    """The ``growingio_reissue_check`` sensor for ``job``'s partitions under ``policy``."""

    @dg.sensor(
        name="growingio_reissue_check",
        job=job,
        minimum_interval_seconds=TICK_INTERVAL_S,
        default_status=default_status,
        description="Re-checks loaded partitions of the 15-day window, a few per tick, and reloads the event "
        "types whose parts GrowingIO has produced again (another size, ETag or Last-Modified).",
    )
    def growingio_reissue_check(
        context: dg.SensorEvaluationContext, growingio: GrowingIOExportResource, warehouse: WarehouseResource
    ) -> dg.SensorResult:
        missing = credentials_missing(growingio)
        if missing:
            return dg.SensorResult(skip_reason=missing)
        since = window_start_key(policy, clock())
        loaded = read_ledger(warehouse, lambda conn: loaded_fingerprints(conn, policy.export_type, since)) or {}
        in_flight, _ = runs_in_flight(context.instance)
        batch = next_batch(sorted(loaded.keys() - in_flight), context.cursor, CHECKS_PER_TICK)
        requests = []
        with growingio.open_client() as client:
            for key in batch:
                try:
                    changed = changed_types(client, policy.export_type, key, loaded[key])
                except ExportApiError as error:  # its message is redacted by the client
                    context.log.warning(f"could not re-check partition {key}: {error}")
                    continue
                if changed:
                    context.log.info(f"partition {key} was produced again for {', '.join(changed)}: reloading")
                    requests.append(load_request(key, list(changed), {REISSUE_TAG: ",".join(changed)}))
        return dg.SensorResult(
            run_requests=requests,
            cursor=batch[-1] if batch else context.cursor,
            skip_reason=None if requests else f"{len(batch)} loaded partitions re-checked: none produced again",
        )

    return growingio_reissue_check
