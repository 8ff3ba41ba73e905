"""Content logging: off by default; when on, only redacted text is kept, and not for long."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, update

from inhouse.audit.content import ContentLog
from inhouse.config import LedgerSettings
from inhouse.errors import InvalidRequest
from inhouse.store.db import Database
from inhouse.store.tables import ContentRecord

PROMPT = "I am jane@example.com, card 4111 1111 1111 1111, call me on +44 20 7946 0958"


def stored(db: Database) -> list[ContentRecord]:
    with db.read() as session:
        return list(session.scalars(select(ContentRecord).order_by(ContentRecord.id)))


def test_nothing_is_written_by_default(db: Database) -> None:
    log = ContentLog(LedgerSettings())
    assert not log.enabled
    with db.write() as session:
        assert log.record(session, "req-1", 1, "smollm2", PROMPT, "hello") is False
    assert stored(db) == []


def test_when_on_only_redacted_text_is_kept(db: Database) -> None:
    log = ContentLog(LedgerSettings(log_content=True, redact_patterns=[r"Project \w+"]))
    with db.write() as session:
        assert log.record(session, "req-1", 7, "smollm2", PROMPT, "Project Falcon, jane@x.org")
    [row] = stored(db)
    assert (row.request_id, row.user_id, row.model) == ("req-1", 7, "smollm2")
    assert row.prompt == "I am [EMAIL], card [CARD], call me on [PHONE]"
    assert row.response == "[REDACTED], [EMAIL]"


def test_content_commits_and_rolls_back_with_its_transaction(db: Database) -> None:
    log = ContentLog(LedgerSettings(log_content=True))
    with pytest.raises(RuntimeError), db.write() as session:
        log.record(session, "req-1", None, "m", "hi", "there")
        raise RuntimeError("the request's bookkeeping failed")
    assert stored(db) == []


def test_purge_removes_only_rows_past_retention(db: Database) -> None:
    log = ContentLog(LedgerSettings(log_content=True, content_retention_days=30))
    now = time.time()
    with db.write() as session:
        for request_id, age_days in (("old", 31), ("older", 400), ("recent", 29), ("new", 0)):
            log.record(session, request_id, None, "m", "p", "r")
            session.flush()
            session.execute(
                update(ContentRecord)
                .where(ContentRecord.request_id == request_id)
                .values(ts=now - age_days * 86400)
            )
    with db.write() as session:
        assert log.purge(session, now) == 2
    assert [row.request_id for row in stored(db)] == ["recent", "new"]


def test_purge_still_runs_after_logging_is_turned_off(db: Database) -> None:
    with db.write() as session:
        ContentLog(LedgerSettings(log_content=True)).record(session, "r", None, "m", "p", "r")
    later = time.time() + 31 * 86400
    with db.write() as session:
        assert ContentLog(LedgerSettings(log_content=False)).purge(session, later) == 1
    assert stored(db) == []


def test_a_bad_redactor_setting_fails_at_start_even_when_off() -> None:
    with pytest.raises(InvalidRequest, match="not a valid regular expression"):
        ContentLog(LedgerSettings(redact_patterns=["[unclosed"]))
