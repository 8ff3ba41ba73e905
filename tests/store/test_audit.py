"""The audit trail on SQLite and PostgreSQL: it verifies when intact, and names the first bad
entry after any edit, deletion, reordering or truncation made behind its back (raw SQL)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from inhouse.audit import trail as audit_module
from inhouse.audit.check import Verification, export, verify
from inhouse.audit.trail import AuditTrail, entry_hash, load_audit_key
from inhouse.errors import InhouseError, InvalidRequest
from inhouse.store.db import Database
from inhouse.store.tables import AuditEntry, AuditHead, User

KEY = bytes(range(32))
EVERY = 5  # a checkpoint every 5 entries
COUNT = 23  # entries 1..23: checkpoints at 5, 10, 15, 20


@pytest.fixture
def trail(db: Database) -> AuditTrail:
    audit = AuditTrail(KEY, checkpoint_every=EVERY)
    audit.ensure_head(db)
    return audit


def append(db: Database, trail: AuditTrail, n: int) -> list[AuditEntry]:
    """`n` entries, each in its own transaction, with details that must round-trip exactly."""
    entries = []
    for i in range(n):
        detail = {"i": i, "ratio": i / 3, "name": "Zoë ✓", "nested": {"b": [1, None, True]}}
        with db.write() as session:
            entries.append(
                trail.record(session, f"user:u{i}", "key.create", f"key-{i}", detail, "10.0.0.7")
            )
    return entries


@pytest.fixture
def chain(db: Database, trail: AuditTrail) -> list[AuditEntry]:
    return append(db, trail, COUNT)


def sql(db: Database, statement: str, **params: Any) -> None:
    """Tamper as an intruder with database access (but not the key) would."""
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def broken(db: Database, key: bytes = KEY) -> Verification:
    result = verify(db, key, batch=4)  # small batches: a problem may sit on a batch boundary
    assert not result.ok
    return result


def rows(db: Database) -> list[AuditEntry]:
    with db.read() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


# ----- intact trails -----------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 4, 2000])
def test_an_untouched_chain_verifies(db: Database, chain: list[AuditEntry], batch: int) -> None:
    assert verify(db, KEY, batch=batch) == Verification(True, COUNT, 4, None, "")
    assert [e.seq for e in chain] == list(range(1, COUNT + 1))


def test_each_entry_links_to_the_one_before(chain: list[AuditEntry]) -> None:
    assert chain[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))


def test_stored_rows_are_what_record_returned(db: Database, chain: list[AuditEntry]) -> None:
    stored = rows(db)
    for given, kept in zip(chain, stored, strict=True):
        assert (kept.seq, kept.ts, kept.detail, kept.hash) == (
            given.seq,
            given.ts,
            given.detail,
            given.hash,
        )


def test_a_fresh_store_verifies_empty(db: Database) -> None:
    assert verify(db, KEY).ok
    AuditTrail(KEY).ensure_head(db)
    assert verify(db, KEY) == Verification(True, 0, 0, None, "")


def test_ensure_head_is_idempotent_and_tolerates_racing_openers(db: Database) -> None:
    trail = AuditTrail(KEY)
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            trail.ensure_head(db)
        except BaseException as exc:  # the test reports it below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditHead)) == 1


def test_secrets_in_detail_are_masked(db: Database, trail: AuditTrail) -> None:
    detail = {
        "user": "bob",
        "password": "hunter2",
        "new_api_key": "ih-abc",
        "Session-Token": "s3cr3t",
        "prompt_tokens": 5,
        "key_id": "pub123",
        "has_password": True,
    }
    with db.write() as session:
        trail.record(session, "user:admin", "user.password", "bob", {"form": detail})
    kept = rows(db)[0].detail["form"]
    assert kept == {
        "user": "bob",
        "password": "[SECRET]",
        "new_api_key": "[SECRET]",
        "Session-Token": "[SECRET]",
        "prompt_tokens": 5,
        "key_id": "pub123",
        "has_password": True,
    }
    assert verify(db, KEY).ok


def test_overlong_fields_are_cut_not_refused(db: Database, trail: AuditTrail) -> None:
    with db.write() as session:
        trail.record(session, "u" * 500, "a" * 100, "t" * 1000, {}, "1" * 100)
    entry = rows(db)[0]
    assert (len(entry.actor), len(entry.action), len(entry.target)) == (128, 64, 256)
    assert verify(db, KEY).ok


def test_recording_without_a_head_is_refused(db: Database) -> None:
    with pytest.raises(InhouseError, match="no head"), db.write() as session:
        AuditTrail(KEY).record(session, "user:a", "login")


# ----- atomicity and concurrency -----------------------------------------------------------


def test_a_rolled_back_action_leaves_no_entry(db: Database, chain: list[AuditEntry]) -> None:
    with pytest.raises(RuntimeError), db.write() as session:
        session.add(User(name="eve", role="user", created_at=0.0))
        AuditTrail(KEY, EVERY).record(session, "user:admin", "user.create", "eve")
        raise RuntimeError("the action failed after its audit entry was written")
    with db.read() as session:
        assert session.scalar(select(User).where(User.name == "eve")) is None
        head = session.get(AuditHead, 1)
        assert head is not None
        assert (head.seq, head.hash) == (COUNT, chain[-1].hash)
    assert len(rows(db)) == COUNT
    assert verify(db, KEY).ok


def test_concurrent_appends_make_one_gap_free_chain(db: Database, trail: AuditTrail) -> None:
    threads_n, each = 8, 15
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(each):
                with db.write() as session:
                    trail.record(session, f"user:t{n}", "api.request", "/v1/chat", {"i": i})
        except BaseException as exc:  # the test reports it below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [e.seq for e in rows(db)] == list(range(1, threads_n * each + 1))
    assert verify(db, KEY) == Verification(
        True, threads_n * each, threads_n * each // EVERY, None, ""
    )


def test_verify_during_live_appends_sees_no_tampering(
    db: Database, chain: list[AuditEntry]
) -> None:
    trail = AuditTrail(KEY, EVERY)
    stop = threading.Event()

    def keep_appending() -> None:
        while not stop.is_set():
            with db.write() as session:
                trail.record(session, "user:busy", "api.request", "/v1/chat")

    thread = threading.Thread(target=keep_appending)
    thread.start()
    try:
        results = [verify(db, KEY, batch=3) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    assert all(result.ok for result in results), results
    assert verify(db, KEY).ok


# ----- tampering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "user:mallory"),
        ("action", "login"),
        ("target", "someone-else"),
        ("ip", None),
        ("ts", 1.5),
        ("hash", "f" * 64),
        ("prev_hash", "e" * 64),
    ],
)
@pytest.mark.parametrize("seq", [1, 7, COUNT])
def test_an_edited_entry_is_named(
    db: Database, chain: list[AuditEntry], column: str, value: Any, seq: int
) -> None:
    sql(db, f"UPDATE audit_log SET {column} = :value WHERE seq = :seq", value=value, seq=seq)
    result = broken(db)
    assert result.first_bad_seq == seq
    assert result.problem == f"entry {seq} does not match its hash (edited?)"


def test_an_edited_detail_is_named(db: Database, chain: list[AuditEntry]) -> None:
    value = "CAST(:value AS json)" if db.dialect == "postgresql" else ":value"
    sql(db, f"UPDATE audit_log SET detail = {value} WHERE seq = 9", value='{"i": 999}')
    assert broken(db).first_bad_seq == 9


def test_a_detail_made_invalid_json_is_named(db: Database, chain: list[AuditEntry]) -> None:
    if db.dialect == "postgresql":  # the json column refuses it: the trail stays intact
        with pytest.raises(DBAPIError):
            sql(db, "UPDATE audit_log SET detail = '{not json' WHERE seq = 3")
        assert verify(db, KEY).ok
        return
    sql(db, "UPDATE audit_log SET detail = '{not json' WHERE seq = 3")
    assert broken(db).first_bad_seq == 3


def rehash(db: Database, seq: int, actor: str) -> None:
    """Edit an entry and give it a correct hash for its new contents (no key needed)."""
    entry = rows(db)[seq - 1]
    digest = entry_hash(
        seq, entry.ts, actor, entry.action, entry.target, entry.detail, entry.ip, entry.prev_hash
    )
    sql(db, "UPDATE audit_log SET actor = :a, hash = :h WHERE seq = :s", a=actor, h=digest, s=seq)


def test_an_edited_and_rehashed_entry_is_named(db: Database, chain: list[AuditEntry]) -> None:
    rehash(db, 7, "user:mallory")
    result = broken(db)
    assert result.first_bad_seq == 7
    assert "entry 7 is not the entry that entry 8 follows" in result.problem


def test_a_rehashed_last_entry_is_caught_by_the_signed_head(
    db: Database, chain: list[AuditEntry]
) -> None:
    rehash(db, COUNT, "user:mallory")
    result = broken(db)
    assert result.first_bad_seq == COUNT
    assert "differs from the signed head" in result.problem


def test_a_rewritten_chain_is_caught_by_the_next_checkpoint(
    db: Database, chain: list[AuditEntry]
) -> None:
    entries = rows(db)
    prev = entries[11].hash  # rewrite from entry 13 on, relinking every later entry
    for entry in entries[12:]:
        digest = entry_hash(
            entry.seq,
            entry.ts,
            "user:mallory",
            entry.action,
            entry.target,
            entry.detail,
            entry.ip,
            prev,
        )
        sql(
            db,
            "UPDATE audit_log SET actor = 'user:mallory', prev_hash = :p, hash = :h WHERE seq = :s",
            p=prev,
            h=digest,
            s=entry.seq,
        )
        prev = digest
    result = broken(db)
    assert result.first_bad_seq == 15
    assert "entry 15 differs from its signed checkpoint" in result.problem


@pytest.mark.parametrize("seq", [1, 7, 10, 12])
def test_a_deleted_entry_is_named(db: Database, chain: list[AuditEntry], seq: int) -> None:
    sql(db, "DELETE FROM audit_log WHERE seq = :seq", seq=seq)
    result = broken(db)
    assert result.first_bad_seq == seq
    assert result.problem == f"entry {seq} is missing (deleted?)"


def test_swapped_entries_are_named(db: Database, chain: list[AuditEntry]) -> None:
    sql(db, "UPDATE audit_log SET seq = -1 WHERE seq = 6")
    sql(db, "UPDATE audit_log SET seq = 6 WHERE seq = 9")
    sql(db, "UPDATE audit_log SET seq = 9 WHERE seq = -1")
    assert broken(db).first_bad_seq == 6


def test_swapped_contents_are_named(db: Database, chain: list[AuditEntry]) -> None:
    a, b = rows(db)[11], rows(db)[12]  # entries 12 and 13
    for target, source in ((a, b), (b, a)):
        sql(
            db,
            "UPDATE audit_log SET ts = :ts, actor = :actor, target = :target, prev_hash = :p, "
            "hash = :h WHERE seq = :seq",
            ts=source.ts,
            actor=source.actor,
            target=source.target,
            p=source.prev_hash,
            h=source.hash,
            seq=target.seq,
        )
    assert broken(db).first_bad_seq == 12


def test_a_truncated_tail_is_named(db: Database, chain: list[AuditEntry]) -> None:
    sql(db, "DELETE FROM audit_log WHERE seq > 21")
    result = broken(db)
    assert result.first_bad_seq == 22
    assert result.problem == "the trail ends at entry 21 but the signed head says 23 (truncated?)"


def test_a_truncated_tail_with_its_checkpoint_gone_is_named(
    db: Database, chain: list[AuditEntry]
) -> None:
    sql(db, "DELETE FROM audit_log WHERE seq > 18")
    result = broken(db)
    assert result.first_bad_seq == 19
    assert "a signed checkpoint names entry 20 (truncated?)" in result.problem
    sql(db, "DELETE FROM audit_checkpoints WHERE seq > 18")
    assert broken(db).first_bad_seq == 19


@pytest.mark.parametrize("drop_checkpoints", [False, True])
def test_a_truncation_with_a_rewritten_head_is_named(
    db: Database, chain: list[AuditEntry], drop_checkpoints: bool
) -> None:
    sql(db, "DELETE FROM audit_log WHERE seq > 18")
    if drop_checkpoints:
        sql(db, "DELETE FROM audit_checkpoints WHERE seq > 18")
    sql(db, "UPDATE audit_head SET seq = 18, hash = :h", h=chain[17].hash)
    assert broken(db).first_bad_seq == 19


def test_a_replayed_old_head_is_caught_by_a_later_checkpoint(
    db: Database, trail: AuditTrail
) -> None:
    append(db, trail, 18)
    with db.read() as session:
        old = session.get(AuditHead, 1)
    assert old is not None
    append(db, trail, 5)
    sql(db, "DELETE FROM audit_log WHERE seq > 18")
    sql(db, "UPDATE audit_head SET seq = :s, hash = :h, mac = :m", s=old.seq, h=old.hash, m=old.mac)
    assert broken(db).first_bad_seq == 19


def test_an_emptied_trail_is_named(db: Database, chain: list[AuditEntry]) -> None:
    sql(db, "DELETE FROM audit_log")
    assert broken(db).first_bad_seq == 1


def test_a_deleted_head_is_named_and_not_recreated(db: Database, chain: list[AuditEntry]) -> None:
    sql(db, "DELETE FROM audit_head")
    AuditTrail(KEY).ensure_head(db)  # reopening the store must not paper over it
    result = broken(db)
    assert result.first_bad_seq == COUNT + 1
    assert result.problem == "the signed head is missing (deleted?)"


def test_an_entry_appended_without_the_key_is_named(db: Database, chain: list[AuditEntry]) -> None:
    last = chain[-1]
    seq, ts = COUNT + 1, last.ts + 1
    digest = entry_hash(seq, ts, "user:mallory", "login", "", {}, None, last.hash)
    sql(
        db,
        "INSERT INTO audit_log (seq, ts, actor, action, target, detail, ip, prev_hash, hash) "
        "VALUES (:seq, :ts, 'user:mallory', 'login', '', '{}', NULL, :prev, :hash)",
        seq=seq,
        ts=ts,
        prev=last.hash,
        hash=digest,
    )
    result = broken(db)
    assert result.first_bad_seq == seq
    assert result.problem == f"entry {seq} was added past the signed head (without the key?)"


def test_a_forged_checkpoint_is_named(db: Database, chain: list[AuditEntry]) -> None:
    sql(db, "UPDATE audit_checkpoints SET hash = :h WHERE seq = 10", h=chain[10].hash)
    result = broken(db)
    assert result.first_bad_seq == 10
    assert result.problem.startswith("checkpoint at entry 10 has a bad signature")


def test_an_invented_checkpoint_is_named(db: Database, chain: list[AuditEntry]) -> None:
    sql(
        db,
        "INSERT INTO audit_checkpoints (seq, hash, ts, mac) VALUES (12, :h, 0, :m)",
        h=chain[11].hash,
        m="a" * 64,
    )
    assert broken(db).first_bad_seq == 12


def test_the_wrong_key_fails(db: Database, trail: AuditTrail) -> None:
    append(db, trail, 3)
    result = broken(db, key=b"x" * 32)
    assert result.first_bad_seq == 4
    assert "head signature is invalid" in result.problem
    append(db, trail, 3)
    result = broken(db, key=b"x" * 32)
    assert result.first_bad_seq == 5
    assert "wrong audit key" in result.problem


# ----- export ------------------------------------------------------------------------------


def test_export_jsonl_round_trips(db: Database, chain: list[AuditEntry]) -> None:
    out = io.StringIO()
    assert export(db, 0.0, "jsonl", out) == COUNT
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    for line, entry in zip(lines, rows(db), strict=True):
        assert line["time"].endswith("+00:00")
        assert {k: v for k, v in line.items() if k != "time"} == {
            "seq": entry.seq,
            "ts": entry.ts,
            "actor": entry.actor,
            "action": entry.action,
            "target": entry.target,
            "detail": entry.detail,
            "ip": entry.ip,
            "prev_hash": entry.prev_hash,
            "hash": entry.hash,
        }


def test_export_csv_round_trips(db: Database, chain: list[AuditEntry]) -> None:
    out = io.StringIO()
    assert export(db, 0.0, "csv", out) == COUNT
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    for row, entry in zip(table, rows(db), strict=True):
        assert int(row["seq"]) == entry.seq
        assert float(row["ts"]) == entry.ts
        assert json.loads(row["detail"]) == entry.detail
        assert (row["actor"], row["hash"], row["prev_hash"]) == (
            entry.actor,
            entry.hash,
            entry.prev_hash,
        )


def test_export_respects_since(
    db: Database, trail: AuditTrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    for moment in (1_000.0, 2_000.0, 3_000.0):
        monkeypatch.setattr(audit_module.time, "time", lambda moment=moment: moment)
        append(db, trail, 2)
    monkeypatch.undo()
    out = io.StringIO()
    assert export(db, 2_000.0, "jsonl", out) == 4
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [3, 4, 5, 6]
    assert verify(db, KEY).ok


def test_export_refuses_other_formats(db: Database, chain: list[AuditEntry]) -> None:
    out = io.StringIO()
    with pytest.raises(InvalidRequest, match="jsonl, csv"):
        export(db, 0.0, "xml", out)
    assert out.getvalue() == ""


# ----- the key -----------------------------------------------------------------------------


def test_the_key_is_created_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "audit.key"
    key = load_audit_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_audit_key(path) == key
    assert sorted(os.listdir(path.parent)) == ["audit.key"]  # no temp file left behind


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    path.write_text("not hex\n")
    with pytest.raises(InhouseError, match="hex"):
        load_audit_key(path)
    path.write_text("abcd\n")
    with pytest.raises(InhouseError, match="shorter"):
        load_audit_key(path)
