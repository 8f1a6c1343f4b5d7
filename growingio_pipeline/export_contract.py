"""The export API's fixed terms: export types, date layouts and limits.

One home for what the client, the partitions and the local export server must agree on.
"""

from __future__ import annotations

from datetime import timedelta

EXPORT_TYPES = ("hour", "day")
"""Hourly exports and daily exports."""
EXPORT_PERIODS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
"""The span of time one export of each type covers."""

MAX_EXPIRE_MINUTES = 10080
"""The longest link lifetime the API grants (``expire``), 7 days."""

DAY_FORMAT = "%Y%m%d"
HOUR_FORMAT = "%Y%m%d%H"
MINUTE_FORMAT = "%Y%m%d%H%M"
EXPORT_DATE_FORMATS = {8: DAY_FORMAT, 10: HOUR_FORMAT, 12: MINUTE_FORMAT}
"""The ``export_date`` layouts the API accepts (Beijing time), by their number of digits."""
KEY_FORMATS = {"hour": MINUTE_FORMAT, "day": DAY_FORMAT}
"""Partition key format per export type: exactly the API's ``export_date``."""
