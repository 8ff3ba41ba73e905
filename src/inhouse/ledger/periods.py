"""Time windows as people write them: `30d`, `12h`, `2w`, `90m`, or an ISO date."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from inhouse.errors import InvalidRequest

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
FORMS = "a duration (30d, 12h, 2w, 90m) or a date (2026-11-01)"


def parse_since(value: str, now: float) -> float:
    """The UNIX time a `since` value names: a duration back from `now`, or a date/time (UTC);
    InvalidRequest unless that time lies between 1970-01-01 and `now`."""
    match = DURATION.match(value)
    start = now - float(match.group(1)) * UNITS[match.group(2)] if match else _moment(value)
    # float("9" * 400) is inf: a window must start at a real time, not before the epoch
    if not math.isfinite(start) or start < 0:
        raise InvalidRequest(
            f"since: {_shown(value)} reaches back before 1970-01-01; give {FORMS}", param="since"
        )
    if start > now:
        raise InvalidRequest(
            f"since: {_shown(value)} is in the future; give {FORMS}", param="since"
        )
    return start


def parse_until(value: str, now: float) -> float:
    """The UNIX time an `until` value names, in the forms `since` takes; it may lie ahead."""
    match = DURATION.match(value)
    end = now - float(match.group(1)) * UNITS[match.group(2)] if match else _moment(value, "until")
    if not math.isfinite(end) or end < 0:
        raise InvalidRequest(
            f"until: {_shown(value)} reaches back before 1970-01-01; give {FORMS}", param="until"
        )
    return end


def _moment(value: str, field: str = "since") -> float:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(
            f"{field}: {_shown(value)} is neither a duration (30d, 12h, 2w, 90m) nor a date "
            "(2026-11-01)",
            param=field,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _shown(value: str) -> str:
    """The value as the message quotes it: long input cut short, so errors stay readable."""
    return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
