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
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from inhouse.auth.limits import SubjectLimits
from inhouse.errors import QuotaExceeded
from inhouse.store.tables import QuotaCounter, Reservation, UsageRecord

COUNTER_TABLE = cast(Table, QuotaCounter.__table__)
RESERVATIONS = cast(Table, Reservation.__table__)
COUNTERS = COUNTER_TABLE.c
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


@dataclass(frozen=True)
class Claim:
    """One counter a request must fit in: `amount` more of `column`, within `limit`."""

    subject: SubjectLimits
    window: Window
    column: str  # "reserved" (tokens) | "used" (requests per minute)
    amount: int
    limit: int

    @property
    def counter(self) -> tuple[str, int, str]:
        return (self.subject.scope, self.subject.subject_id, self.window.name)


def claims_for(limits: tuple[SubjectLimits, ...], tokens: int, now: float) -> list[Claim]:
    day, month, minute = windows(now)
    claims: list[Claim] = []
    for subject in limits:
        for window, limit in ((day, subject.tokens_per_day), (month, subject.tokens_per_month)):
            if limit is not None:
                claims.append(Claim(subject, window, "reserved", tokens, limit))
        if subject.requests_per_minute is not None:
            claims.append(Claim(subject, minute, "used", 1, subject.requests_per_minute))
    return claims


def _take_statement(column: str) -> Any:
    """UPDATE one counter if the claim still fits; RETURNING its id (Core, compiled once)."""
    return (
        update(COUNTER_TABLE)
        .where(
            COUNTERS.id == bindparam("counter_id"),
            COUNTERS.used + COUNTERS.reserved + bindparam("amount") <= bindparam("limit"),
        )
        .values({column: COUNTERS[column] + bindparam("amount")})
        .returning(COUNTERS.id)
    )


TAKE = {column: _take_statement(column) for column in ("reserved", "used")}
SETTLE = (
    update(COUNTER_TABLE)
    .where(COUNTERS.id == bindparam("counter_id"))
    .values(
        reserved=COUNTERS.reserved - bindparam("held"),
        used=COUNTERS.used + bindparam("spent"),
    )
)


def reserve(session: Session, limits: tuple[SubjectLimits, ...], tokens: int) -> str | None:
    """Hold `tokens` (and one request) against every limit; the reservation id, or None when
    nothing limits this principal. Raises QuotaExceeded (with Retry-After) when one is full;
    the caller's transaction must then roll back, releasing what was taken before.

    Counters are locked in ascending id order, here and when settling, so two transactions
    never wait on each other in a cycle (PostgreSQL would abort one as a deadlock)."""
    if not limits:
        return None
    now = time.time()
    claims = claims_for(limits, tokens, now)
    for claim in claims:
        if claim.amount > claim.limit:
            raise _exceeded(session, claim, now)
    ids = _counter_ids(session, claims)
    connection = session.connection()
    for claim in sorted(claims, key=lambda c: ids[c.counter]):
        params = {"counter_id": ids[claim.counter], "amount": claim.amount, "limit": claim.limit}
        if connection.execute(TAKE[claim.column], params).scalar() is None:
            raise _exceeded(session, claim, now)
    reservation_id = uuid.uuid4().hex
    held = sorted(ids[c.counter] for c in claims if c.column == "reserved")
    connection.execute(
        insert(RESERVATIONS).values(
            id=reservation_id, tokens=tokens, counter_ids=held, created_at=now
        )
    )
    return reservation_id


def _counter_ids(session: Session, claims: list[Claim]) -> dict[tuple[str, int, str], int]:
    """Each claim's counter id, creating missing counters first."""
    ids = _existing(session, [c.counter for c in claims])
    missing = [c for c in claims if c.counter not in ids]
    if missing:
        for claim in missing:
            _create_counter(session, claim)
        ids.update(_existing(session, [c.counter for c in missing]))
    return ids


def _existing(
    session: Session, counters: list[tuple[str, int, str]]
) -> dict[tuple[str, int, str], int]:
    rows = session.connection().execute(
        select(COUNTERS.id, COUNTERS.scope, COUNTERS.subject_id, COUNTERS.window).where(
            tuple_(COUNTERS.scope, COUNTERS.subject_id, COUNTERS.window).in_(counters)
        )
    )
    return {(row.scope, row.subject_id, row.window): row.id for row in rows}


def _create_counter(session: Session, claim: Claim) -> None:
    """A new counter; one for tokens starts from what the usage ledger already holds for its
    window, so a limit set at noon counts the morning."""
    subject, window = claim.subject, claim.window
    dialect = session.get_bind().dialect.name
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    used = used_so_far(session, subject, window) if claim.column == "reserved" else 0
    session.execute(
        upsert(QuotaCounter)
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


def used_so_far(session: Session, subject: SubjectLimits, window: Window) -> int:
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


def _exceeded(session: Session, claim: Claim, now: float) -> QuotaExceeded:
    subject, window = claim.subject, claim.window
    taken = session.execute(
        select(COUNTERS.used + COUNTERS.reserved).where(
            COUNTERS.scope == subject.scope,
            COUNTERS.subject_id == subject.subject_id,
            COUNTERS.window == window.name,
        )
    ).scalar_one_or_none()
    return exceeded(claim, int(taken or 0), now)


def exceeded(claim: Claim, taken: int, now: float) -> QuotaExceeded:
    """The 429 for a claim that does not fit, with Retry-After at the window's end."""
    subject, window, limit = claim.subject, claim.window, claim.limit
    retry_after = max(1, math.ceil(window.ends_at - now))
    if claim.column == "used":
        message = f"Rate limit reached: this {subject.scope} may send {limit} requests per minute."
        return QuotaExceeded(message, retry_after=retry_after, code="rate_limit_exceeded")
    message = (
        f"Token quota exceeded: this {subject.scope} has used or reserved {taken} of its "
        f"{limit} tokens {window.label}, and this request may need {claim.amount} "
        f"(prompt + max_tokens). It resets in {_duration(retry_after)}."
    )
    return QuotaExceeded(message, retry_after=retry_after, code="insufficient_quota")


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{max(1, math.ceil(rest / 60))} min"


def settle_many(session: Session, settlements: list[tuple[str | None, int]]) -> None:
    """Replace reservations by the tokens really used, with one UPDATE per counter;
    settling one twice changes nothing."""
    spent_by_id = {rid: tokens for rid, tokens in settlements if rid is not None}
    if not spent_by_id:
        return
    connection = session.connection()
    found = connection.execute(
        select(RESERVATIONS.c.id, RESERVATIONS.c.tokens, RESERVATIONS.c.counter_ids).where(
            RESERVATIONS.c.id.in_(list(spent_by_id))
        )
    ).all()
    held: dict[int, int] = {}
    spent: dict[int, int] = {}
    for rid, tokens, counter_ids in found:
        for counter_id in counter_ids:
            held[counter_id] = held.get(counter_id, 0) + tokens
            spent[counter_id] = spent.get(counter_id, 0) + spent_by_id[rid]
    for counter_id in sorted(held):  # ascending ids: the one lock order
        connection.execute(
            SETTLE, {"counter_id": counter_id, "held": held[counter_id], "spent": spent[counter_id]}
        )
    connection.execute(delete(RESERVATIONS).where(RESERVATIONS.c.id.in_([r[0] for r in found])))


def release_stale(session: Session, now: float, older_than: float = STALE_AFTER_S) -> int:
    """Give back what crashed servers reserved, and drop counters of past windows."""
    stale = list(
        session.scalars(select(Reservation.id).where(Reservation.created_at < now - older_than))
    )
    settle_many(session, [(reservation_id, 0) for reservation_id in stale])
    session.execute(delete(QuotaCounter).where(QuotaCounter.expires_at < now - 86400))
    return len(stale)
