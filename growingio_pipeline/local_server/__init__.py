"""A faithful, deterministic local stand-in for GrowingIO's raw-data export API (v2).

It serves both export endpoints with the vendor's response shape, token auth, a 2 calls/s rate
limit, statuses derived from an injectable clock, and signed, expiring links to gzip CSV parts in
the vendor's dialect, generated deterministically from the event-type registry. Fault switches
and overrides let tests provoke every failure a real export can show; ``ground_truth`` gives the
exact rows without HTTP.
"""

from growingio_pipeline.event_types import BEIJING
from growingio_pipeline.local_server.clock import FrozenClock
from growingio_pipeline.local_server.faults import Faults
from growingio_pipeline.local_server.server import CallRecord, LocalExportServer, link_bytes_per_second

__all__ = ["BEIJING", "CallRecord", "Faults", "FrozenClock", "LocalExportServer", "link_bytes_per_second"]
