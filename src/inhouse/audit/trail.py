"""The tamper-evident audit trail: a hash chain of entries, a signed head, signed checkpoints.

Each entry's hash covers its fields and the previous entry's hash, so editing, deleting or
reordering an entry breaks the chain at that entry. The head row (the newest seq and hash)
and every `checkpoint_every`-th entry are signed with an HMAC key kept outside the database,
so cutting entries off the end, or rewriting the chain from some entry on, is caught too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inhouse.config import Settings
from inhouse.errors import InhouseError
from inhouse.store.db import Database
from inhouse.store.private import secret_key
from inhouse.store.tables import AuditEntry, AuditHead

GENESIS = "0" * 64
HEAD_ID = 1
KEY_BYTES = 32
MIN_KEY_BYTES = 16
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


def load_audit_key(path: Path) -> bytes:
    """The HMAC key in `path` (hex); created once (32 random bytes, mode 0600) if missing."""
    try:
        return secret_key(path, KEY_BYTES, "the audit key", at_least=MIN_KEY_BYTES)
    except ValueError as exc:
        raise InhouseError(str(exc)) from None


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

    @property
    def key(self) -> bytes:
        return self._key

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


def open_trail(settings: Settings, db: Database) -> AuditTrail:
    """The configured trail over `db`, its head ensured: what every writer of the store uses."""
    trail = AuditTrail(load_audit_key(settings.audit_key_path()), settings.ledger.checkpoint_every)
    trail.ensure_head(db)
    return trail
