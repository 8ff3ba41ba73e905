"""The schema the migrations build is the schema the code declares, on every database."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from inhouse.store.db import Database, open_database
from inhouse.store.migrate import alembic_config
from inhouse.store.tables import KNOWLEDGE_FTS, Base, Group


def _declared(name: str | None, type_: str, _parent: object) -> bool:
    """Every table but the full-text index, which only raw DDL can create (see tables.py)."""
    return not (type_ == "table" and name is not None and name.startswith(KNOWLEDGE_FTS))


def test_migrated_schema_matches_the_tables(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": _declared})
        assert compare_metadata(context, Base.metadata) == []


def test_migrating_twice_changes_nothing(db_url: str) -> None:
    open_database(db_url).close()
    again = open_database(db_url)
    with again.engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(again.engine)).get_current_head()
        assert head is not None and head >= "0009"
        assert MigrationContext.configure(conn).get_current_revision() == head
    again.close()


def test_concurrent_writers_queue_instead_of_failing(db: Database) -> None:
    """Read-then-write transactions from many threads all commit (SQLite: BEGIN IMMEDIATE)."""
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            with db.write() as session:
                count = session.scalar(select(func.count()).select_from(Group)) or 0
                session.add(Group(name=f"g{i}-{count}", created_at=0.0))
        except BaseException as exc:  # any failure is the bug under test
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Group)) == 16
