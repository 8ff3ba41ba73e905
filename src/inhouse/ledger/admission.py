"""Where quota counters live while requests run: in the database (PostgreSQL, shared by
several gateways) or in this process's memory (SQLite, one server process).

Both books reserve a request's worst case atomically before it reaches the engine and
settle it to the real count at its end, so concurrent requests never overshoot. The memory
book does it under one lock in microseconds; the database book with conditional UPDATEs.
The memory book keeps no reservations on disk: after a crash nothing is left held, and its
counters are seeded again from the usage ledger.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.orm import Session

from inhouse.auth.limits import SubjectLimits
from inhouse.ledger import quota
from inhouse.ledger.quota import Claim, claims_for, exceeded, used_so_far
from inhouse.store.db import Database

Counter = tuple[str, int, str]  # (scope, subject id, window)


class WouldBlock(Exception):
    """`reserve(..., may_block=False)` needs the database: call it again from a thread."""


class QuotaBook(Protocol):
    def reserve(
        self, limits: tuple[SubjectLimits, ...], tokens: int, *, may_block: bool = True
    ) -> str | None:
        """Hold the request's worst case on every limit, or raise QuotaExceeded. With
        `may_block` False it answers only from memory, or raises WouldBlock (nothing held)."""

    def release(self, reservation: str | None, tokens: int) -> None:
        """At the request's end: what it really used replaces what it held."""

    def settle_in(self, session: Session, settlements: list[tuple[str | None, int]]) -> None:
        """The same, as part of a database transaction (the write-behind batch)."""

    def prune(self, now: float) -> None:
        """Forget counters of windows that have ended."""


class DatabaseBook:
    """Counters and reservations in the database: every gateway sees the same budget."""

    def __init__(self, db: Database, flush: Callable[[], object]) -> None:
        self.db = db
        self.flush = flush
        self._known: set[Counter] = set()

    def reserve(
        self, limits: tuple[SubjectLimits, ...], tokens: int, *, may_block: bool = True
    ) -> str | None:
        if not limits:
            return None
        if not may_block:
            raise WouldBlock
        counters = {c.counter for c in claims_for(limits, tokens, time.time())}
        if not counters <= self._known:
            self.flush()  # a new counter is seeded from the ledger: let it be complete
        with self.db.write() as session:
            reservation = quota.reserve(session, limits, tokens)
        self._known |= counters
        return reservation

    def release(self, reservation: str | None, tokens: int) -> None:
        """Nothing now: the write-behind batch settles it (`settle_in`)."""

    def settle_in(self, session: Session, settlements: list[tuple[str | None, int]]) -> None:
        quota.settle_many(session, settlements)

    def prune(self, now: float) -> None:
        self._known.clear()  # only decides when to flush before a counter may be created


class MemoryBook:
    """Counters in memory under one lock, for a single server process on SQLite."""

    def __init__(self, db: Database, flush: Callable[[], object]) -> None:
        self.db = db
        self.flush = flush
        self._lock = threading.Lock()
        self._totals: dict[Counter, list[int]] = {}  # counter -> [used, reserved]
        self._ends: dict[Counter, float] = {}
        self._held: dict[str, tuple[tuple[Counter, ...], int]] = {}

    def reserve(
        self, limits: tuple[SubjectLimits, ...], tokens: int, *, may_block: bool = True
    ) -> str | None:
        if not limits:
            return None
        now = time.time()
        claims = claims_for(limits, tokens, now)
        for claim in claims:
            if claim.amount > claim.limit:
                raise exceeded(claim, 0, now)
        missing = [c for c in claims if c.counter not in self._totals]
        if missing:
            if not may_block:  # a new counter is seeded from the ledger (a flush, a read)
                raise WouldBlock
            self._seed(missing)
        with self._lock:
            for claim in claims:
                used, reserved = self._totals[claim.counter]
                if used + reserved + claim.amount > claim.limit:
                    raise exceeded(claim, used + reserved, now)
            for claim in claims:
                slot = 1 if claim.column == "reserved" else 0  # [used, reserved]
                self._totals[claim.counter][slot] += claim.amount
            reservation = uuid.uuid4().hex
            held = tuple(c.counter for c in claims if c.column == "reserved")
            self._held[reservation] = (held, tokens)
        return reservation

    def _seed(self, claims: list[Claim]) -> None:
        """Start new counters from the usage ledger (complete once the writer has flushed)."""
        self.flush()
        seeds: dict[Counter, int] = {}
        with self.db.read() as session:
            for claim in claims:
                if claim.column == "reserved":
                    seeds[claim.counter] = used_so_far(session, claim.subject, claim.window)
        with self._lock:
            for claim in claims:
                if claim.counter not in self._totals:
                    self._totals[claim.counter] = [seeds.get(claim.counter, 0), 0]
                    self._ends[claim.counter] = claim.window.ends_at

    def release(self, reservation: str | None, tokens: int) -> None:
        if reservation is None:
            return
        with self._lock:
            counters, held = self._held.pop(reservation, ((), 0))
            for counter in counters:
                totals = self._totals.get(counter)
                if totals is not None:
                    totals[0] += tokens
                    totals[1] -= held

    def settle_in(self, session: Session, settlements: list[tuple[str | None, int]]) -> None:
        """Nothing to write: the usage rows are the durable record."""

    def prune(self, now: float) -> None:
        with self._lock:
            for counter in [c for c, end in self._ends.items() if end < now]:
                held = any(counter in counters for counters, _ in self._held.values())
                if not held:
                    del self._totals[counter], self._ends[counter]


def quota_book(db: Database, flush: Callable[[], object]) -> QuotaBook:
    """The memory book on SQLite (one server process), the database book on PostgreSQL."""
    if db.dialect == "sqlite":
        return MemoryBook(db, flush)
    return DatabaseBook(db, flush)
