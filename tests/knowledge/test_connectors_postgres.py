"""SQL connectors on a real PostgreSQL source: users who can write are refused, reads are
read-only even for them, the password is never stored or shown, and a source that goes away
mid-sync fails the sync cleanly."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from inhouse.audit.trail import open_trail
from inhouse.auth.directory import Directory
from inhouse.embeddings.minilm import MiniLMEmbedder
from inhouse.errors import InvalidRequest
from inhouse.knowledge import pgvector
from inhouse.knowledge.connectors import SourceConfig
from inhouse.knowledge.row_sync import Tally
from inhouse.knowledge.service import KnowledgeService
from inhouse.store.db import open_database
from inhouse.store.tables import AuditEntry, KnowledgeChunk, KnowledgeConnector
from tests.conftest import POSTGRES_URL, make_settings, need
from tests.knowledge.conftest import ACTOR, Knowledge, build

ROWS = 300
PASSWORD = "s3cret:pa/ss@word%"  # characters that must be URL-quoted


@dataclass
class Source:
    admin: Engine
    schema: str
    reader: str
    writer: str

    def url(self, role: str) -> str:
        base = make_url(POSTGRES_URL)
        return base.set(username=role, password=PASSWORD).render_as_string(hide_password=False)

    def query(self, extra: str = "") -> str:
        return f"select id, name, notes, updated_at{extra} from {self.schema}.accounts"

    def run(self, sql: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(sql))


@pytest.fixture
def source() -> Iterator[Source]:
    need(bool(POSTGRES_URL), "INHOUSE_TEST_POSTGRES_URL is not set: no PostgreSQL source")
    tag = uuid.uuid4().hex[:10]
    admin = create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    found = Source(admin, f"crm_{tag}", f"reader_{tag}", f"writer_{tag}")
    s = found.schema
    for sql in (
        f"CREATE SCHEMA {s}",
        f"CREATE TABLE {s}.accounts (id integer PRIMARY KEY, name text, notes text, "
        "updated_at timestamptz NOT NULL DEFAULT now())",
        f"CREATE SEQUENCE {s}.ticket",
        f"INSERT INTO {s}.accounts (id, name, notes) SELECT i, 'Account ' || i, "
        f"'first notes ' || i FROM generate_series(1, {ROWS}) AS i",
        f"CREATE ROLE {found.reader} LOGIN PASSWORD 'x'",
        f"CREATE ROLE {found.writer} LOGIN PASSWORD 'x'",
        f"GRANT USAGE ON SCHEMA {s} TO {found.reader}, {found.writer}",
        f"GRANT SELECT ON {s}.accounts TO {found.reader}",
        f"GRANT SELECT, UPDATE ON {s}.accounts TO {found.writer}",
        f"GRANT USAGE ON {s}.ticket TO {found.writer}",
    ):
        found.run(sql)
    try:
        yield found
    finally:
        found.run(f"DROP SCHEMA {s} CASCADE")
        found.run(f"DROP ROLE {found.reader}")
        found.run(f"DROP ROLE {found.writer}")
        admin.dispose()


def people(directory: Directory) -> None:
    directory.add_group("sales")
    directory.add_user("sam", groups=["sales"])


def connected(knowledge: Knowledge, source: Source, role: str, **options: Any) -> None:
    knowledge.people(people)
    config = SourceConfig(source.url(role), **({"query": source.query()} | options))
    knowledge.service.connect(ACTOR, "crm", config, group="sales")


def test_a_user_who_can_write_is_refused_unless_allowed(
    knowledge: Knowledge, source: Source
) -> None:
    service = knowledge.service
    knowledge.people(lambda d: d.add_group("sales"))
    for role, what in ((source.writer, f"on {source.schema}.accounts"), ("postgres", "superuser")):
        with pytest.raises(InvalidRequest, match="can write") as refused:
            service.connect(
                ACTOR, "crm", SourceConfig(source.url(role), query=source.query()), "sales"
            )
        assert what in refused.value.message and PASSWORD not in refused.value.message
    assert service.collections() == []  # nothing was created for a refused source

    service.connect(
        ACTOR, "crm", SourceConfig(source.url(source.reader), query=source.query()), "sales"
    )
    assert service.sync(ACTOR, "crm")["rows_changed"] == ROWS

    # allowed, the writer still reads in a read-only transaction: a query that writes fails
    writes = source.query(f", nextval('{source.schema}.ticket') AS ticket")
    config = SourceConfig(source.url(source.writer), query=writes, allow_writable=True)
    service.connect(ACTOR, "crm", config)
    status = service.sync(ACTOR, "crm")
    assert status["status"] == "failed" and "read-only transaction" in status["last_error"]
    assert len(service.documents("crm")) == ROWS


def test_a_source_that_goes_away_mid_sync_fails_cleanly(
    knowledge: Knowledge, source: Source
) -> None:
    connected(knowledge, source, source.reader, updated_column="updated_at")
    service = knowledge.service
    assert service.sync(ACTOR, "crm")["status"] == "ok"
    source.run(
        f"UPDATE {source.schema}.accounts SET notes = 'second notes ' || id, updated_at = now()"
    )

    def cut_off(tally: Tally) -> None:
        if tally.seen == 120:
            source.run(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE usename = '{source.reader}'"
            )

    status = service.sync(ACTOR, "crm", cut_off)
    assert status["status"] == "failed" and "terminat" in status["last_error"]
    assert 120 <= status["rows_seen"] < ROWS and status["rows_removed"] == 0
    assert_whole_index(knowledge, ROWS)
    status = service.sync(ACTOR, "crm")  # the next sync goes on where the index is
    assert (status["status"], status["last_error"], status["rows_removed"]) == ("ok", None, 0)
    assert 0 < status["rows_changed"] <= ROWS - 120
    hits = service.search(knowledge.key_principal("sam"), "second notes 299", ["crm"], top_k=1)
    assert hits and "first notes" not in " ".join(h.text for h in hits)
    assert_whole_index(knowledge, ROWS)


def assert_whole_index(knowledge: Knowledge, rows: int) -> None:
    """Every row has its document, and every chunk its vector (no half-written row)."""
    assert len(knowledge.service.documents("crm")) == rows
    with knowledge.db.read() as session:
        chunks = session.scalar(select(func.count()).select_from(KnowledgeChunk))
        vectors = pgvector.count(session)
    assert chunks == vectors == rows


def test_the_password_is_sealed_and_never_shown(
    tmp_path: Path, source: Source, embedder: MiniLMEmbedder
) -> None:
    home = tmp_path / "home"
    db = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    knowledge = build(db, home, embedder)
    source.run(f"DELETE FROM {source.schema}.accounts WHERE id > 5")
    connected(knowledge, source, source.reader, every_s=900.0)
    knowledge.service.sync(ACTOR, "crm")
    shown = knowledge.service.sync_status("crm")["sync"]["url"]
    assert ":***@" in shown and PASSWORD not in shown
    with db.read() as session:
        row = session.scalar(select(KnowledgeConnector))
        details = " ".join(str(e.detail) for e in session.scalars(select(AuditEntry)))
    assert row is not None and row.secret is not None
    assert PASSWORD not in row.url + row.secret and ":***@" in details
    db.close()
    key = make_settings(home).knowledge.connector_key_file
    assert key is not None and stat.S_IMODE(key.stat().st_mode) == 0o600
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    # the sealed password opens again (a new process, same key file): the sync still connects
    again = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    settings = make_settings(home)
    service = KnowledgeService(
        again, open_trail(settings, again), settings.knowledge, lambda: embedder
    )
    assert service.sync(ACTOR, "crm")["status"] == "ok"
    again.close()
