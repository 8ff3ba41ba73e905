"""The write-behind queue: a busy store or a dropped connection is waited out; one bad item
does not take the others down; what is left at stop is spilled and replayed once."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from inhouse.store.db import Database
from inhouse.store.spill import Spill
from inhouse.store.writer import BatchWriter
from tests.conftest import POSTGRES_URL, need, postgres_schema

TABLE = "writer_items"


@pytest.fixture
def store(db_url: str) -> Iterator[Database]:
    """A store with a scratch table whose CHECK refuses negative values; on SQLite its
    writers wait 50 ms for the lock (not 15 s), so that a held lock shows quickly."""
    database = Database(db_url, busy_timeout_ms=50)
    with database.write() as session:
        session.execute(text(f"CREATE TABLE {TABLE} (v INTEGER NOT NULL CHECK (v >= 0))"))
    yield database
    database.close()


def insert(session: Session, items: list[int]) -> None:
    if session.get_bind().dialect.name == "postgresql":  # a held lock errs quickly
        session.execute(text("SET LOCAL lock_timeout = '50ms'"))
    session.execute(text(f"INSERT INTO {TABLE} (v) VALUES (:v)"), [{"v": v} for v in items])


def unwritten(session: Session, items: list[int]) -> list[int]:
    held = set(session.scalars(text(f"SELECT v FROM {TABLE}")))
    return [v for v in items if v not in held]


def spill_to(path: Path) -> Spill[int]:
    return Spill(path, lambda v: {"v": v}, lambda record: int(record["v"]), unwritten)


def rows(db: Database) -> list[int]:
    with db.read() as session:
        return sorted(session.scalars(text(f"SELECT v FROM {TABLE}")))


@contextmanager
def locked(db: Database) -> Iterator[None]:
    """Another connection holds the write lock (SQLite) or the table's lock (PostgreSQL)."""
    other = Database(db.url)
    try:
        with other.write() as session:
            if other.dialect == "postgresql":
                session.execute(text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"))
            else:
                session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is ours
            yield
    finally:
        other.close()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_busy_store_is_waited_out_and_every_item_written(store: Database, tmp_path: Path) -> None:
    writer = BatchWriter(store, insert, "test", spill_to(tmp_path / "spill.jsonl"))
    with locked(store):
        for v in range(5):
            writer.submit(v)
        wait_until(lambda: writer.retries >= 3)  # it met the lock and kept trying
        assert not writer.flush(timeout=0.1)
    assert writer.flush()
    writer.close()
    assert rows(store) == [0, 1, 2, 3, 4]
    assert not (tmp_path / "spill.jsonl").exists()


def test_a_dropped_connection_is_retried() -> None:
    """A server connection to drop: PostgreSQL only."""
    need(bool(POSTGRES_URL), "INHOUSE_TEST_POSTGRES_URL is not set: no PostgreSQL to test on")
    with postgres_schema() as url:
        _drop_and_retry(Database(url))


def _drop_and_retry(store: Database) -> None:
    with store.write() as session:
        session.execute(text(f"CREATE TABLE {TABLE} (v INTEGER NOT NULL)"))
    dropped: list[int] = []

    def insert_once_dropped(session: Session, items: list[int]) -> None:
        if not dropped:
            dropped.append(1)  # the server ends this connection mid-transaction
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        insert(session, items)

    writer = BatchWriter(store, insert_once_dropped, "test")
    writer.submit(7)
    assert writer.flush()
    writer.close()
    assert writer.retries == 1 and rows(store) == [7]
    store.close()


def test_a_bad_item_is_spilled_and_the_others_are_written(store: Database, tmp_path: Path) -> None:
    path = tmp_path / "spill.jsonl"
    writer = BatchWriter(store, insert, "test", spill_to(path))
    with locked(store):  # all three are queued before the first write: one batch
        for v in (1, -1, 2):
            writer.submit(v)
        wait_until(lambda: writer.retries >= 1)
    assert writer.flush()
    writer.close()
    assert rows(store) == [1, 2]
    assert path.read_text() == '{"v":-1}\n'  # kept, not dropped

    again = BatchWriter(store, insert, "test", spill_to(path))  # still refused: still kept
    again.close()
    assert again.replayed == 0 and path.read_text() == '{"v":-1}\n'
    assert rows(store) == [1, 2]


def test_items_left_at_stop_are_spilled_and_replayed_exactly_once(
    store: Database, tmp_path: Path
) -> None:
    path = tmp_path / "data" / "spill.jsonl"
    writer = BatchWriter(store, insert, "test", spill_to(path))
    with locked(store):
        for v in (10, 11, 12):
            writer.submit(v)
        wait_until(lambda: writer.retries >= 1)
        writer.close()  # told to stop while the store refuses: nothing may be lost
    assert rows(store) == []
    assert sorted(path.read_text().splitlines()) == ['{"v":10}', '{"v":11}', '{"v":12}']
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    restarted = BatchWriter(store, insert, "test", spill_to(path))
    assert restarted.replayed == 3 and not path.exists()
    restarted.close()
    once_more = BatchWriter(store, insert, "test", spill_to(path))
    once_more.close()
    assert once_more.replayed == 0
    assert rows(store) == [10, 11, 12]


def test_a_replay_cut_short_by_a_crash_writes_nothing_twice(
    store: Database, tmp_path: Path
) -> None:
    path = tmp_path / "spill.jsonl"
    with store.write() as session:
        insert(session, [20])  # the crashed replay had written this one already
    path.write_text('{"v":20}\n{"v":21}\n{"v":2')  # and its last line was torn
    writer = BatchWriter(store, insert, "test", spill_to(path))
    writer.close()
    assert writer.replayed == 2 and not path.exists()
    assert rows(store) == [20, 21]
