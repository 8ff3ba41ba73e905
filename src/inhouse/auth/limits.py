"""Quota limits as given by an admin: set a value, clear it (no limit), or leave it alone."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from inhouse.errors import InvalidRequest

UNCHANGED: Any = object()  # a field not given in an update


@dataclass(frozen=True)
class LimitsUpdate:
    """None clears a limit; UNCHANGED keeps it; an integer (>= 0) sets it."""

    tokens_per_day: int | None = UNCHANGED
    tokens_per_month: int | None = UNCHANGED
    requests_per_minute: int | None = UNCHANGED

    def apply(self, row: Any) -> dict[str, int | None]:
        """Write the given fields onto a key, user or group row; returns what changed."""
        changed: dict[str, int | None] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is UNCHANGED:
                continue
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidRequest(f"{field.name} must be a whole number >= 0", param=field.name)
            setattr(row, field.name, value)
            changed[field.name] = value
        return changed


def limits_of(row: Any) -> dict[str, int | None]:
    return {name: getattr(row, name) for name in LIMIT_FIELDS}


LIMIT_FIELDS = ("tokens_per_day", "tokens_per_month", "requests_per_minute")


@dataclass(frozen=True)
class SubjectLimits:
    """The limits one key, user or group puts on each request it takes part in."""

    scope: str  # "key" | "user" | "group"
    subject_id: int
    tokens_per_day: int | None
    tokens_per_month: int | None
    requests_per_minute: int | None

    @classmethod
    def of(cls, scope: str, row: Any) -> SubjectLimits:
        return cls(scope, row.id, **limits_of(row))

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (self.tokens_per_day, self.tokens_per_month, self.requests_per_minute)
        )
