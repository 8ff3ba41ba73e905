"""Both quota books (memory on SQLite, database on PostgreSQL) hold budgets under threads."""

from __future__ import annotations

import threading
import time

import pytest

from inhouse.auth.limits import SubjectLimits
from inhouse.errors import QuotaExceeded
from inhouse.ledger.admission import WouldBlock, quota_book
from inhouse.store.db import Database
from inhouse.store.tables import UsageRecord

KEY = SubjectLimits("key", 7, tokens_per_day=1000, tokens_per_month=None, requests_per_minute=None)


def test_threads_never_overshoot_and_release_gives_back(db: Database) -> None:
    book = quota_book(db, flush=lambda: None)
    admitted: list[str] = []
    refused: list[QuotaExceeded] = []
    gate = threading.Barrier(20)

    def take() -> None:
        gate.wait()
        try:
            reservation = book.reserve((KEY,), 300)
            assert reservation is not None
            admitted.append(reservation)
        except QuotaExceeded as exc:
            refused.append(exc)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 3 and len(refused) == 17
    assert all(exc.retry_after > 0 for exc in refused)
    for reservation in admitted:  # each really used 100 of its 300
        book.release(reservation, 100)
        if db.dialect == "postgresql":
            with db.write() as session:
                book.settle_in(session, [(reservation, 100)])
    # 300 used, 700 left: two more of 300 fit, a third does not
    book.reserve((KEY,), 300)
    book.reserve((KEY,), 300)
    with pytest.raises(QuotaExceeded):
        book.reserve((KEY,), 300)


def test_a_new_counter_starts_from_the_usage_ledger(db: Database) -> None:
    with db.write() as session:
        session.add(
            UsageRecord(
                ts=time.time(),
                request_id="r",
                user_id=1,
                key_id=7,
                group_id=None,
                model="m",
                endpoint="chat",
                prompt_tokens=500,
                completion_tokens=400,
                cached_tokens=0,
                latency_ms=1.0,
                status="ok",
            )
        )
    book = quota_book(db, flush=lambda: None)
    with pytest.raises(QuotaExceeded) as info:
        book.reserve((KEY,), 200)  # 900 already used today
    assert "900 of its 1000 tokens today" in info.value.message
    assert book.reserve((KEY,), 100) is not None


def test_a_reservation_that_needs_the_database_is_left_to_a_thread(db: Database) -> None:
    """The event loop asks with may_block=False: it gets WouldBlock (nothing held) whenever
    the book would read or write the database, and an answer from memory otherwise."""
    seeds: list[int] = []
    book = quota_book(db, flush=lambda: seeds.append(1))
    with pytest.raises(WouldBlock):
        book.reserve((KEY,), 300, may_block=False)  # a new counter: seeded from the ledger
    assert seeds == []
    assert book.reserve((KEY,), 300) is not None
    if db.dialect == "postgresql":  # every reservation is a transaction
        with pytest.raises(WouldBlock):
            book.reserve((KEY,), 300, may_block=False)
    else:  # seeded: in memory from now on
        assert book.reserve((KEY,), 300, may_block=False) is not None
        assert book.reserve((KEY,), 300, may_block=False) is not None
        with pytest.raises(QuotaExceeded):
            book.reserve((KEY,), 300, may_block=False)
    assert book.reserve((), 300, may_block=False) is None  # no limits: nothing to hold
