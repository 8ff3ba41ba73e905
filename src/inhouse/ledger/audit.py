"""The tamper-evident audit trail: a hash chain of entries, a signed head, signed checkpoints.

Each entry's hash covers its fields and the previous entry's hash, so editing, deleting or
reordering an entry breaks the chain at that entry. The head row (the newest seq and hash)
and every `checkpoint_every`-th entry are signed with an HMAC key kept outside the database,
so cutting entries off the end, or rewriting the chain from some entry on, is caught too.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Row, Text, cast, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inhouse.errors import InhouseError, InvalidRequest
from inhouse.store.db import Database
from inhouse.store.tables import AuditCheckpoint, AuditEntry, AuditHead

GENESIS = "0" * 64
HEAD_ID = 1
KEY_BYTES = 32
MIN_KEY_BYTES = 16
FORMATS = ("jsonl", "csv")
# columns are bounded on PostgreSQL; an over-long value must not fail the audited action
LIMITS = {"actor": 128, "action": 64, "target": 256, "ip": 64}
SECRET_WORDS = frozenset(
    {"password", "passwd", "secret", "token", "cookie", "authorization", "apikey", "csrf"}
)
WORD_SPLIT = re.compile(r"[^a-z0-9]+")
ENTRIES = AuditEntry.metadata.tables["audit_log"]
HEADS = AuditEntry.metadata.tables["audit_head"]
CHECKPOINTS = AuditEntry.metadata.tables["audit_checkpoints"]
# built once: constructing statements costs more than running them, and record() runs per request
LOCK_HEAD = select(HEADS.c.seq, HEADS.c.hash).where(HEADS.c.id == HEAD_ID).with_for_update()
MOVE_HEAD = update(HEADS).where(HEADS.c.id == HEAD_ID)
INSERT_ENTRY = insert(ENTRIES)
INSERT_CHECKPOINT = insert(CHECKPOINTS)
AnyRow = Row[*tuple[Any, ...]]
STORED = ("seq", "ts", "actor", "action", "target", "detail", "ip", "prev_hash", "hash")
# detail is read as text so that a row tampered into invalid JSON is reported, not a crash
ENTRY_COLUMNS = [
    cast(ENTRIES.c.detail, Text).label("detail") if name == "detail" else ENTRIES.c[name]
    for name in STORED
]
EXPORT_FIELDS = (*STORED[:2], "time", *STORED[2:])
BATCH = 2000


def load_audit_key(path: Path) -> bytes:
    """The HMAC key in `path` (hex); created once (32 random bytes, mode 0600) if missing."""
    if not path.exists():
        _create_key(path)
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise InhouseError(f"the audit key file {path} does not hold a hex key") from None
    if len(key) < MIN_KEY_BYTES:
        raise InhouseError(f"the audit key in {path} is shorter than {MIN_KEY_BYTES} bytes")
    return key


def _create_key(path: Path) -> None:
    """Write a new key without ever replacing one another process wrote first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit-key-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        # link() fails if the name exists: a key another process created first wins
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def head_mac(key: bytes, seq: int, digest: str) -> str:
    return _mac(key, f"{seq}:{digest}")


def checkpoint_mac(key: bytes, seq: int, digest: str, ts: float) -> str:
    # a prefix keeps a checkpoint's MAC from ever being valid as a head's, and vice versa
    return _mac(key, f"checkpoint:{seq}:{digest}:{float(ts)!r}")


def entry_hash(
    seq: int,
    ts: float,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any],
    ip: str | None,
    prev_hash: str,
) -> str:
    """SHA-256 of a canonical JSON form of the fields; identical for a row read back from
    SQLite or PostgreSQL (floats as repr, object keys sorted, no whitespace)."""
    body = json.dumps(
        [seq, float(ts), actor, action, target, detail, ip, prev_hash],
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _is_secret(name: str, value: Any) -> bool:
    """A text value under a name like password, session_token, api_key (not key_id, has_password:
    only strings can be secrets, and ids name keys without being them)."""
    if not isinstance(value, str | bytes) or not value:
        return False
    words = WORD_SPLIT.split(name.lower())
    return not SECRET_WORDS.isdisjoint(words) or (words[-1] == "key" and words[:-1] != ["public"])


def scrub(value: Any) -> Any:
    """`value` with every secret-looking field (see `_is_secret`) masked, at any depth."""
    if isinstance(value, dict):
        return {k: "[SECRET]" if _is_secret(str(k), v) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


class AuditTrail:
    """Appends entries in the caller's transaction, so an action and its entry commit together."""

    def __init__(self, key: bytes, checkpoint_every: int = 100) -> None:
        self._key = key
        self._every = checkpoint_every

    def ensure_head(self, db: Database) -> None:
        """Create the genesis head on an empty trail; a trail whose head was deleted keeps
        no head, so `verify` reports it instead of a fresh start hiding it."""
        try:
            with db.write() as session:
                if session.get(AuditHead, HEAD_ID) is not None:
                    return
                if session.scalar(select(func.count()).select_from(AuditEntry)):
                    return
                session.add(
                    AuditHead(id=HEAD_ID, seq=0, hash=GENESIS, mac=head_mac(self._key, 0, GENESIS))
                )
        except IntegrityError:
            pass  # another process created it between our check and our insert

    def record(
        self,
        session: Session,
        actor: str,
        action: str,
        target: str = "",
        detail: dict[str, Any] | None = None,
        ip: str | None = None,
    ) -> AuditEntry:
        """Append one entry in `session`'s transaction and return it (already inserted; do not
        add it to a session). Call it after the action's own writes: it holds the head's lock
        until commit, and every audited transaction queues on that lock."""
        return self.record_many(session, [AuditEvent(actor, action, target, detail, ip)])[0]

    def record_many(self, session: Session, events: Sequence[AuditEvent]) -> list[AuditEntry]:
        """Append `events` in order, in `session`'s transaction, with one lock of the head,
        one multi-row insert and one move of the signed head."""
        head = session.execute(LOCK_HEAD).one_or_none()
        if head is None:
            raise InhouseError("the audit trail has no head: the store was not opened properly")
        seq, previous = head.seq, head.hash
        rows: list[dict[str, Any]] = []
        for event in events:
            seq += 1
            fields: dict[str, Any] = {
                "seq": seq,
                "ts": round(time.time(), 6),
                "actor": event.actor[: LIMITS["actor"]],
                "action": event.action[: LIMITS["action"]],
                "target": event.target[: LIMITS["target"]],
                "detail": scrub(event.detail) if event.detail else {},
                "ip": event.ip[: LIMITS["ip"]] if event.ip is not None else None,
                "prev_hash": previous,
            }
            fields["hash"] = previous = entry_hash(**fields)
            rows.append(fields)
        if rows:
            self._write(session, rows)
        return [AuditEntry(**fields) for fields in rows]

    def _write(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Insert the entries, move the signed head to the last, and sign due checkpoints."""
        session.execute(INSERT_ENTRY, rows)
        seq, digest = rows[-1]["seq"], rows[-1]["hash"]
        session.execute(
            MOVE_HEAD, {"seq": seq, "hash": digest, "mac": head_mac(self._key, seq, digest)}
        )
        for fields in rows:
            if fields["seq"] % self._every == 0:
                seq, digest, ts = fields["seq"], fields["hash"], fields["ts"]
                mac = checkpoint_mac(self._key, seq, digest, ts)
                session.execute(
                    INSERT_CHECKPOINT, {"seq": seq, "hash": digest, "ts": ts, "mac": mac}
                )


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before it is chained: who did what to what, from where."""

    actor: str
    action: str
    target: str = ""
    detail: dict[str, Any] | None = None
    ip: str | None = None


@dataclass(frozen=True)
class Verification:
    """What `verify` found: `ok`, or the first entry that cannot be trusted and why."""

    ok: bool
    entries: int
    checkpoints: int
    first_bad_seq: int | None
    problem: str


class _Broken(Exception):
    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(problem)
        self.seq = seq
        self.problem = problem


def _parse_detail(text: str | None) -> Any:
    """The stored JSON, or the raw text when it is not JSON (a tampered row must not crash)."""
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return text


def _row_hash(row: AnyRow) -> str | None:
    """The hash `row`'s fields should have, or None when they cannot be hashed (tampered)."""
    try:
        return entry_hash(
            row.seq,
            row.ts,
            row.actor,
            row.action,
            row.target,
            _parse_detail(row.detail),
            row.ip,
            row.prev_hash,
        )
    except (TypeError, ValueError):
        return None


class _Walk:
    """Checks entries in seq order: each against its hash, its predecessor and its checkpoint."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.entries = 0
        self.checkpoints = 0
        self.last_seq = 0
        self.last_hash = GENESIS

    def entry(self, row: AnyRow, checkpoint: AnyRow | None) -> None:
        seq = self.last_seq + 1
        if row.seq != seq:
            raise _Broken(seq, f"entry {seq} is missing (deleted?)")
        if _row_hash(row) != row.hash:
            raise _Broken(seq, f"entry {seq} does not match its hash (edited?)")
        if row.prev_hash != self.last_hash:
            if seq == 1:
                raise _Broken(1, "entry 1 does not start from the genesis hash (rewritten?)")
            # this entry is intact, so the hash it recorded for its predecessor is the true one
            raise _Broken(
                seq - 1,
                f"entry {seq - 1} is not the entry that entry {seq} follows "
                "(edited and rehashed, or reordered?)",
            )
        if checkpoint is not None:
            self.checkpoint(checkpoint)
            if checkpoint.hash != row.hash:
                raise _Broken(seq, f"entry {seq} differs from its signed checkpoint (rewritten?)")
        self.entries += 1
        self.last_seq, self.last_hash = seq, row.hash

    def checkpoint(self, cp: AnyRow) -> None:
        expected = checkpoint_mac(self.key, cp.seq, cp.hash, cp.ts)
        if not hmac.compare_digest(expected, cp.mac):
            raise _Broken(
                cp.seq,
                f"checkpoint at entry {cp.seq} has a bad signature "
                "(forged, or the wrong audit key?)",
            )
        self.checkpoints += 1

    def past_end(self, cp: AnyRow) -> None:
        """A checkpoint beyond the last entry: forged, or proof that entries were cut off."""
        self.checkpoint(cp)
        raise _Broken(
            self.last_seq + 1,
            f"the trail ends at entry {self.last_seq} but a signed checkpoint names entry "
            f"{cp.seq} (truncated?)",
        )

    def head(self, head: AuditHead | None) -> None:
        last, after = self.last_seq, self.last_seq + 1
        if head is None:
            if last or self.checkpoints:
                raise _Broken(after, "the signed head is missing (deleted?)")
            return
        if not hmac.compare_digest(head_mac(self.key, head.seq, head.hash), head.mac):
            raise _Broken(
                after,
                f"head signature is invalid, so entries after {last} may have been removed "
                "(rewritten head, or the wrong audit key?)",
            )
        if head.seq > last:
            raise _Broken(
                after,
                f"the trail ends at entry {last} but the signed head says {head.seq} (truncated?)",
            )
        if head.seq < last:
            first = head.seq + 1
            added = f"entry {last} was" if last == first else f"entries {first}-{last} were"
            raise _Broken(first, f"{added} added past the signed head (without the key?)")
        if head.hash != self.last_hash:
            raise _Broken(last, f"entry {last} differs from the signed head (rewritten?)")


def _entry_batches(
    session: Session, batch: int, since: float | None = None
) -> Iterator[Sequence[AnyRow]]:
    """Entries in seq order, `batch` rows per query (detail as text), from ts >= `since`."""
    after = 0
    while True:
        query = select(*ENTRY_COLUMNS).where(AuditEntry.seq > after)
        if since is not None:
            query = query.where(AuditEntry.ts >= since)
        rows = session.execute(query.order_by(AuditEntry.seq).limit(batch)).all()
        if not rows:
            return
        yield rows
        after = rows[-1].seq


def _checkpoints(session: Session, above: int, upto: int | None) -> dict[int, AnyRow]:
    query = select(
        AuditCheckpoint.seq, AuditCheckpoint.hash, AuditCheckpoint.ts, AuditCheckpoint.mac
    ).where(AuditCheckpoint.seq > above)
    if upto is not None:
        query = query.where(AuditCheckpoint.seq <= upto)
    return {row.seq: row for row in session.execute(query.order_by(AuditCheckpoint.seq))}


def verify(db: Database, key: bytes, batch: int = BATCH) -> Verification:
    """Check the whole trail in one consistent snapshot, streaming `batch` entries per query;
    names the first entry that was edited, deleted, reordered or cut off."""
    walk = _Walk(key)
    with db.read() as session:
        if db.dialect == "postgresql":
            # one snapshot for every batch: appends made meanwhile must not look like tampering
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            for rows in _entry_batches(session, batch):
                points = _checkpoints(session, walk.last_seq, rows[-1].seq)
                for row in rows:
                    walk.entry(row, points.get(row.seq))
            for cp in _checkpoints(session, walk.last_seq, None).values():
                walk.past_end(cp)
            walk.head(session.get(AuditHead, HEAD_ID))
        except _Broken as broken:
            return Verification(False, walk.entries, walk.checkpoints, broken.seq, broken.problem)
    return Verification(True, walk.entries, walk.checkpoints, None, "")


def check_format(fmt: str) -> None:
    """Refuse an export format other than jsonl and csv."""
    if fmt not in FORMATS:
        raise InvalidRequest(
            f"format must be one of: {', '.join(FORMATS)} (not {fmt!r})", param="format"
        )


def export(db: Database, since: float, fmt: str, out: TextIO) -> int:
    """Write the entries with ts >= `since`, in seq order, as JSON Lines or CSV; the count."""
    check_format(fmt)
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_FIELDS)
    count = 0
    with db.read() as session:
        for rows in _entry_batches(session, BATCH, since):
            for row in rows:
                record = _export_record(row)
                if writer is None:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                else:
                    record["detail"] = json.dumps(record["detail"], sort_keys=True)
                    writer.writerow(record.values())
                count += 1
    return count


def _export_record(row: AnyRow) -> dict[str, Any]:
    """One entry as a SIEM reads it: every stored field, plus the time in ISO 8601 (UTC)."""
    ts = float(row.ts)
    return {
        "seq": row.seq,
        "ts": ts,
        "time": datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds"),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "detail": _parse_detail(row.detail),
        "ip": row.ip,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }
