"""Open the database, migrate it, and hand out transactions.

SQLite goes through `sqlean` (a drop-in `sqlite3` whose bundled SQLite can load extensions,
which the knowledge store needs); PostgreSQL through psycopg 3. Every write transaction on
SQLite starts with BEGIN IMMEDIATE, so two writers queue on the lock instead of failing
halfway (a deferred transaction that read first cannot always upgrade to a writer in WAL).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from inhouse.store.private import private_sqlite_file

READ_ONLY = "inhouse_read_only"
BUSY_TIMEOUT_MS = 15_000


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3; SQLite URLs are kept as given."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    """`busy_timeout_ms`: how long a SQLite transaction waits for the write lock."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    import sqlean

    database = make_url(url).database
    if database and database != ":memory:":
        private_sqlite_file(Path(database))
    engine = create_engine(
        url,
        module=sqlean,
        connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        pool_size=10,
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",  # WAL + NORMAL: a crashed process loses nothing committed
            "foreign_keys=ON",
            f"busy_timeout={busy_timeout_ms}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


class Database:
    """One engine and its sessions; `write()` and `read()` are whole transactions."""

    def __init__(self, url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, busy_timeout_ms)
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits when the block ends and rolls back if it raises."""
        with self._write.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A transaction for reading (on SQLite it takes no write lock)."""
        with self._read.begin() as session:
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is there)."""
        from inhouse.store.migrate import upgrade

        upgrade(self.engine)

    def revision(self) -> str | None:
        """The migration the schema is at; None when no migration has run."""
        from inhouse.store.migrate import current_revision

        with self.read() as session:
            return current_revision(session.connection())

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str) -> Database:
    """Open and migrate: what the server and the CLI do before touching data."""
    db = Database(url)
    db.migrate()
    return db
