"""Time windows as people write them: `30d`, `12h`, `2w`, `90m`, or an ISO date."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from inhouse.errors import InvalidRequest

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_since(value: str, now: float) -> float:
    """The UNIX time a `since` value names: a duration back from `now`, or a date/time (UTC)."""
    match = DURATION.match(value)
    if match:
        return now - float(match.group(1)) * UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(
            f"since: {value!r} is neither a duration (30d, 12h, 2w, 90m) nor a date (2026-11-01)",
            param="since",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
