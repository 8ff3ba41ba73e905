"""Quotas with atomic reservation: a request holds its worst case before it runs.

Admission adds prompt tokens + max_tokens to `reserved` of every counter that limits the
request (key, user, each group; per day and per month) with one conditional UPDATE each:
the row changes only if used + reserved + this request still fits. The database serializes
those statements (row locks on PostgreSQL, the write lock on SQLite), so concurrent requests
can never overshoot a budget. Settling replaces the reservation by the real count.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from inhouse.auth.limits import SubjectLimits
from inhouse.errors import QuotaExceeded
from inhouse.store.tables import QuotaCounter, Reservation, UsageRecord

COUNTERS = QuotaCounter.__table__.c
STALE_AFTER_S = 3600.0  # a reservation this old outlived any request: its server crashed


@dataclass(frozen=True)
class Window:
    name: str  # the counter's window key, e.g. "d:2026-11-29"
    label: str  # for messages: "today", "this month", "this minute"
    starts_at: float
    ends_at: float


def windows(now: float) -> tuple[Window, Window, Window]:
    """The current day, month (UTC) and minute."""
    moment = datetime.fromtimestamp(now, UTC)
    day_start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    next_month = month_start.replace(
        year=month_start.year + month_start.month // 12, month=month_start.month % 12 + 1
    )
    minute = math.floor(now / 60)
    return (
        Window(
            f"d:{day_start:%Y-%m-%d}", "today", day_start.timestamp(), day_start.timestamp() + 86400
        ),
        Window(
            f"m:{month_start:%Y-%m}", "this month", month_start.timestamp(), next_month.timestamp()
        ),
        Window(f"r:{minute}", "this minute", minute * 60.0, (minute + 1) * 60.0),
    )


def reserve(session: Session, limits: tuple[SubjectLimits, ...], tokens: int) -> str | None:
    """Hold `tokens` (and one request) against every limit; the reservation id, or None when
    nothing limits this principal. Raises QuotaExceeded (with Retry-After) when one is full;
    the caller's transaction must then roll back, releasing what was taken before."""
    if not limits:
        return None
    now = time.time()
    day, month, minute = windows(now)
    held: list[int] = []
    for subject in limits:
        for window, limit in ((day, subject.tokens_per_day), (month, subject.tokens_per_month)):
            if limit is not None:
                held.append(_take(session, subject, window, "reserved", tokens, limit, now))
        if subject.requests_per_minute is not None:
            _take(session, subject, minute, "used", 1, subject.requests_per_minute, now)
    reservation_id = uuid.uuid4().hex
    session.add(Reservation(id=reservation_id, tokens=tokens, counter_ids=held, created_at=now))
    return reservation_id


def _take(
    session: Session,
    subject: SubjectLimits,
    window: Window,
    column: str,
    amount: int,
    limit: int,
    now: float,
) -> int:
    """Add `amount` to the counter's `column` if the total stays within `limit`; its id."""
    if amount > limit:
        raise _exceeded(session, subject, window, column, amount, limit, now)
    counter_id = _counter(session, subject, window, seed=column == "reserved")
    taken: int | None = session.scalar(
        update(QuotaCounter)
        .where(
            QuotaCounter.id == counter_id,
            QuotaCounter.used + QuotaCounter.reserved + amount <= limit,
        )
        .values({column: COUNTERS[column] + amount})
        .returning(QuotaCounter.id)
    )
    if taken is None:
        raise _exceeded(session, subject, window, column, amount, limit, now)
    return counter_id


def _counter(session: Session, subject: SubjectLimits, window: Window, *, seed: bool) -> int:
    """The counter's id, creating it on first use; a token counter starts from what the
    usage ledger already holds for the window, so a limit set at noon counts the morning."""
    where = (
        QuotaCounter.scope == subject.scope,
        QuotaCounter.subject_id == subject.subject_id,
        QuotaCounter.window == window.name,
    )
    found: int | None = session.scalar(select(QuotaCounter.id).where(*where))
    if found is not None:
        return found
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    used = _used_so_far(session, subject, window) if seed else 0
    session.execute(
        insert(QuotaCounter)
        .values(
            scope=subject.scope,
            subject_id=subject.subject_id,
            window=window.name,
            used=used,
            reserved=0,
            expires_at=window.ends_at,
        )
        .on_conflict_do_nothing(index_elements=["scope", "subject_id", "window"])
    )
    return session.execute(select(QuotaCounter.id).where(*where)).scalar_one()


def _used_so_far(session: Session, subject: SubjectLimits, window: Window) -> int:
    column = {
        "key": UsageRecord.key_id,
        "user": UsageRecord.user_id,
        "group": UsageRecord.group_id,
    }[subject.scope]
    total = session.scalar(
        select(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens)).where(
            column == subject.subject_id, UsageRecord.ts >= window.starts_at
        )
    )
    return int(total or 0)


def _exceeded(
    session: Session,
    subject: SubjectLimits,
    window: Window,
    column: str,
    amount: int,
    limit: int,
    now: float,
) -> QuotaExceeded:
    taken = session.execute(
        select(COUNTERS.used + COUNTERS.reserved).where(
            COUNTERS.scope == subject.scope,
            COUNTERS.subject_id == subject.subject_id,
            COUNTERS.window == window.name,
        )
    ).scalar_one_or_none()
    retry_after = max(1, math.ceil(window.ends_at - now))
    if column == "used":
        message = f"Rate limit reached: this {subject.scope} may send {limit} requests per minute."
        return QuotaExceeded(message, retry_after=retry_after, code="rate_limit_exceeded")
    message = (
        f"Token quota exceeded: this {subject.scope} has used or reserved {taken or 0} of its "
        f"{limit} tokens {window.label}, and this request may need {amount} "
        f"(prompt + max_tokens). It resets in {_duration(retry_after)}."
    )
    return QuotaExceeded(message, retry_after=retry_after, code="insufficient_quota")


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{max(1, math.ceil(rest / 60))} min"


def settle(session: Session, reservation_id: str | None, tokens: int) -> None:
    """Replace the reservation by the real token count; settling twice changes nothing."""
    if reservation_id is None:
        return
    reservation = session.get(Reservation, reservation_id)
    if reservation is None:
        return
    if reservation.counter_ids:
        session.execute(
            update(QuotaCounter)
            .where(QuotaCounter.id.in_(reservation.counter_ids))
            .values(
                reserved=QuotaCounter.reserved - reservation.tokens,
                used=QuotaCounter.used + tokens,
            )
        )
    session.delete(reservation)


def release_stale(session: Session, now: float, older_than: float = STALE_AFTER_S) -> int:
    """Give back what crashed servers reserved, and drop counters of past windows."""
    stale = list(
        session.scalars(select(Reservation).where(Reservation.created_at < now - older_than))
    )
    for reservation in stale:
        settle(session, reservation.id, 0)
    session.execute(delete(QuotaCounter).where(QuotaCounter.expires_at < now - 86400))
    return len(stale)
