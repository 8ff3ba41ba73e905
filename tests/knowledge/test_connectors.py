"""SQL connectors on an SQLite source (the store: SQLite and PostgreSQL): each row a document,
incremental syncs that re-embed only changed rows, deleted rows removed, bad input refused."""

from __future__ import annotations

import sqlite3
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from inhouse.auth.directory import Directory
from inhouse.errors import Conflict, InhouseError, InvalidRequest, NotFound
from inhouse.knowledge import pgvector
from inhouse.knowledge.connectors import STALE_S, SourceConfig, parse_interval
from inhouse.knowledge.row_sync import Tally
from inhouse.knowledge.service import KnowledgeService
from inhouse.knowledge.sql_source import check_select, read_only, source_engine
from inhouse.knowledge.vault import Vault, scrub
from inhouse.store.db import Database
from inhouse.store.tables import KnowledgeChunk, KnowledgeConnector
from tests.conftest import make_settings
from tests.knowledge.conftest import ACTOR, Knowledge

QUERY = "select id, name, notes, updated_at from accounts"


class CountingEmbedder:
    """The real embedder, counting the texts it embeds (how many chunks were re-embedded)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.dimensions = inner.name, inner.dimensions
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.embedded += len(texts)
        result: npt.NDArray[np.float32] = self.inner.embed(texts)
        return result

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        counts: list[int] = self.inner.count_tokens(texts)
        return counts


def make_source(path: Path, rows: int) -> Path:
    with sqlite3.connect(path) as c:
        c.execute(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT, notes TEXT, updated_at TEXT)"
        )
        c.executemany(
            "INSERT INTO accounts VALUES (?, ?, ?, ?)",
            [
                (i, f"Account {i}", f"Plain notes {i}", f"2026-01-01 {i // 60:02d}:{i % 60:02d}")
                for i in range(1, rows + 1)
            ],
        )
    return path


def execute(path: Path, sql: str, *params: Any) -> None:
    with sqlite3.connect(path) as c:
        c.execute(sql, params)
    c.close()


def counting(knowledge: Knowledge) -> tuple[KnowledgeService, CountingEmbedder]:
    embedder = CountingEmbedder(knowledge.service._embedder())
    settings = make_settings(knowledge.home).knowledge
    return KnowledgeService(knowledge.db, knowledge.audit, settings, lambda: embedder), embedder


def people(directory: Directory) -> None:
    directory.add_group("sales")
    directory.add_user("sam", groups=["sales"])


def connect(knowledge: Knowledge, source: Path, **options: Any) -> KnowledgeService:
    knowledge.people(people)
    service, _ = counting(knowledge)
    config = SourceConfig(f"sqlite:///{source}", **({"query": QUERY} | options))
    service.connect(ACTOR, "crm", config, group="sales")
    return service


def sources(service: KnowledgeService) -> dict[str, dict[str, Any]]:
    return {d["source"]: d for d in service.documents("crm")}


def test_rows_become_documents_cited_by_row_id(knowledge: Knowledge, tmp_path: Path) -> None:
    source = make_source(tmp_path / "crm.db", 5)
    execute(source, "UPDATE accounts SET notes = 'Renewal talks with the tapir farm' WHERE id = 3")
    service = connect(knowledge, source)
    status = service.sync(ACTOR, "crm")
    assert (status["status"], status["rows_seen"], status["rows_changed"]) == ("ok", 5, 5)
    assert sorted(sources(service)) == [f"sql:query/{i}" for i in range(1, 6)]
    (hit, *_) = service.search(
        knowledge.key_principal("sam"), "tapir farm renewal", ["crm"], top_k=1
    )
    assert hit.source == "sql:query/3" and hit.location == {"row": "3"}
    assert "notes: Renewal talks with the tapir farm" in hit.text and "name: Account 3" in hit.text


def test_updated_column_syncs_only_changed_rows_and_removes_deleted(
    knowledge: Knowledge, tmp_path: Path
) -> None:
    source = make_source(tmp_path / "crm.db", 40)
    service = connect(knowledge, source, updated_column="updated_at")
    counted, embedder = counting(knowledge)
    assert counted.sync(ACTOR, "crm")["rows_changed"] == 40
    first = embedder.embedded

    execute(
        source,
        "UPDATE accounts SET notes = 'moved to Oslo', updated_at = '2026-02-01' WHERE id = 7",
    )
    execute(source, "DELETE FROM accounts WHERE id = 9")
    execute(source, "INSERT INTO accounts VALUES (41, 'Account 41', 'new', '2026-02-02')")
    # a row inserted late with an old timestamp is still found: the index lacks its id
    execute(source, "INSERT INTO accounts VALUES (42, 'Account 42', 'late', '2025-01-01')")
    embedder.embedded = 0
    status = counted.sync(ACTOR, "crm")
    assert (status["rows_changed"], status["rows_removed"], status["status"]) == (3, 1, "ok")
    assert status["rows_seen"] < 10  # not the whole table: only rows past the mark
    assert 0 < embedder.embedded <= 3 < first
    documents = sources(service)
    assert "sql:query/9" not in documents and len(documents) == 41
    assert {"sql:query/41", "sql:query/42"} <= set(documents)
    assert service.sync(ACTOR, "crm")["rows_changed"] == 0
    assert service.show("crm")["sync"]["status"] == "ok"


def test_without_updated_column_the_row_hash_decides(knowledge: Knowledge, tmp_path: Path) -> None:
    source = make_source(tmp_path / "crm.db", 20)
    connect(knowledge, source)
    counted, embedder = counting(knowledge)
    counted.sync(ACTOR, "crm")
    execute(source, "UPDATE accounts SET notes = 'changed' WHERE id = 2")
    execute(source, "DELETE FROM accounts WHERE id IN (3, 4)")
    embedder.embedded = 0
    status = counted.sync(ACTOR, "crm")
    assert (status["rows_seen"], status["rows_changed"], status["rows_removed"]) == (18, 1, 2)
    assert embedder.embedded == 1
    with knowledge.db.read() as session:  # no orphan chunk or vector of the removed rows
        chunks = session.scalar(select(func.count()).select_from(KnowledgeChunk))
        vectors = pgvector.count(session)
    assert chunks == vectors == 18


def test_tables_instead_of_a_query(knowledge: Knowledge, tmp_path: Path) -> None:
    source = make_source(tmp_path / "crm.db", 3)
    execute(source, "CREATE TABLE contacts (contact_id INTEGER PRIMARY KEY, email TEXT)")
    execute(source, "INSERT INTO contacts VALUES (1, 'ana@example.org')")
    service = connect(knowledge, source, query=None, tables=("accounts",))
    assert service.sync(ACTOR, "crm")["rows_changed"] == 3
    with pytest.raises(InvalidRequest, match="no column 'id'"):
        config = SourceConfig(f"sqlite:///{source}", tables=("contacts",))
        service.connect(ACTOR, "crm", config)
    config = SourceConfig(f"sqlite:///{source}", tables=("accounts", "contacts"), id_column="rowid")
    with pytest.raises(InvalidRequest, match="no column 'rowid'"):
        service.connect(ACTOR, "crm", config)


def test_a_vanished_source_fails_cleanly_and_the_next_sync_goes_on(
    knowledge: Knowledge, tmp_path: Path
) -> None:
    source = make_source(tmp_path / "crm.db", 10)
    service = connect(knowledge, source)
    service.sync(ACTOR, "crm")
    moved = source.rename(tmp_path / "elsewhere.db")
    status = service.sync(ACTOR, "crm")
    assert status["status"] == "failed" and "unable to open" in status["last_error"]
    assert len(sources(service)) == 10  # the index kept its last good state
    assert service.search(knowledge.key_principal("sam"), "Account 4", ["crm"])
    moved.rename(source)
    execute(source, "DELETE FROM accounts WHERE id = 1")
    status = service.sync(ACTOR, "crm")
    assert (status["status"], status["last_error"], status["rows_removed"]) == ("ok", None, 1)


def test_queries_that_are_not_one_select_are_refused() -> None:
    for query in (
        "select 1; drop table x",
        "with x as (delete from accounts returning *) select * from x",
        "insert into accounts select * from accounts",
        "update accounts set notes = ''",
        "select * into copy from accounts",
        "select * from accounts for update",
        "vacuum",
        "drop table accounts",
        "select from where (",
        "",
    ):
        with pytest.raises(InvalidRequest):
            check_select(query, "postgresql")
    for query in (
        "select id, notes from accounts where notes like '%;drop%'",
        "with recent as (select * from accounts) select * from recent",
        "select id from a union select id from b",
        "select 1;",
    ):
        assert check_select(query, "postgresql")


def test_connect_refuses_bad_input(knowledge: Knowledge, tmp_path: Path) -> None:
    source = make_source(tmp_path / "crm.db", 1)
    service = connect(knowledge, source)
    url = f"sqlite:///{source}"
    refused = {
        "not a database URL": SourceConfig("nonsense", query=QUERY),
        "not supported": SourceConfig("mysql://u:p@h/db", query=QUERY),
        "user:password part": SourceConfig("postgresql://u@h/db?password=p", query=QUERY),
        "either a query or": SourceConfig(url),
        "either a query or ": SourceConfig(url, query=QUERY, tables=("accounts",)),
        "no column 'key'": SourceConfig(url, query=QUERY, id_column="key"),
        "no column 'changed'": SourceConfig(url, query=QUERY, updated_column="changed"),
        "cannot read the source": SourceConfig(url, query="select * from nowhere"),
        "at least": SourceConfig(url, query=QUERY, every_s=0.1),
        "is a file": SourceConfig("sqlite://", query=QUERY),
    }
    for message, config in refused.items():
        with pytest.raises(InvalidRequest, match=message.strip()):
            service.connect(ACTOR, "crm", config)
    with pytest.raises(NotFound, match="--group"):
        service.connect(ACTOR, "other", SourceConfig(url, query=QUERY))
    service.create(ACTOR, "plain", "sales")
    assert service.sync_status("plain")["sync"] is None
    with pytest.raises(NotFound, match="no connector"):
        service.sync(ACTOR, "plain")
    for text in ("15", "0.5h", "-1m", "1w", "m"):
        if text in ("15", "0.5h"):
            assert parse_interval(text) in (15.0, 1800.0)
        else:
            with pytest.raises(InvalidRequest):
                parse_interval(text)


def test_an_sqlite_source_is_opened_read_only(tmp_path: Path) -> None:
    source = make_source(tmp_path / "crm.db", 1)
    engine = source_engine(make_url(f"sqlite:///{source}"))
    with read_only(engine) as connection, pytest.raises(Exception, match=r"readonly|read-only"):
        connection.exec_driver_sql("DELETE FROM accounts")
    engine.dispose()
    with sqlite3.connect(source) as c:
        assert c.execute("SELECT count(*) FROM accounts").fetchone() == (1,)
    c.close()


def test_removing_the_collection_removes_its_connector(
    knowledge: Knowledge, db: Database, tmp_path: Path
) -> None:
    service = connect(knowledge, make_source(tmp_path / "crm.db", 2))
    service.sync(ACTOR, "crm")
    service.remove(ACTOR, "crm")
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(KnowledgeConnector)) == 0


def test_the_vault_seals_with_an_owner_only_key_and_scrub_masks_secrets(tmp_path: Path) -> None:
    key = tmp_path / "home" / "connectors.key"
    sealed = Vault(key).seal("hunter2:/@%")
    assert "hunter2" not in sealed and Vault(key).open(sealed) == "hunter2:/@%"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(InhouseError, match="does not open"):
        Vault(tmp_path / "other.key").open(sealed)
    with pytest.raises(InhouseError, match="connector_key_file"):
        Vault(None).seal("x")
    message = (
        "(OperationalError) connecting to postgresql+psycopg://ro:hunter2%3A%2F%40%25@db/crm "
        "failed for password hunter2:/@% (sqlite://u:other@h)"
    )
    cleaned = scrub(message, ["hunter2:/@%"])
    assert "hunter2" not in cleaned and "other" not in cleaned
    assert "postgresql+psycopg://ro:***@db/crm" in cleaned


def test_one_sync_at_a_time_and_a_dead_one_does_not_block(
    knowledge: Knowledge, tmp_path: Path
) -> None:
    service = connect(knowledge, make_source(tmp_path / "crm.db", 3))
    refusals: list[str] = []

    def meanwhile(_: Tally) -> None:
        try:
            service.sync(ACTOR, "crm")
        except Conflict as exc:
            refusals.append(exc.message)

    assert service.sync(ACTOR, "crm", meanwhile)["status"] == "ok"
    assert refusals == ["a sync of 'crm' is running already"] * 3
    # a process that died mid-sync left "running" behind: once stale, it no longer blocks
    with knowledge.db.write() as session:
        connector = session.scalar(select(KnowledgeConnector))
        assert connector is not None
        connector.status, connector.progress_at = "running", time.time() - STALE_S - 1
    assert service.sync(ACTOR, "crm")["status"] == "ok"
