"""Reading the audit trail back: `verify` proves it intact or names the first bad entry;
`export` writes it out for a SIEM."""

from __future__ import annotations

import csv
import hmac
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import Row, Text, cast, select
from sqlalchemy.orm import Session

from inhouse.audit.trail import ENTRIES, GENESIS, HEAD_ID, checkpoint_mac, entry_hash, head_mac
from inhouse.errors import InvalidRequest
from inhouse.store.db import Database
from inhouse.store.tables import AuditCheckpoint, AuditEntry, AuditHead

FORMATS = ("jsonl", "csv")
AnyRow = Row[*tuple[Any, ...]]
STORED = ("seq", "ts", "actor", "action", "target", "detail", "ip", "prev_hash", "hash")
# detail is read as text so that a row tampered into invalid JSON is reported, not a crash
ENTRY_COLUMNS = [
    cast(ENTRIES.c.detail, Text).label("detail") if name == "detail" else ENTRIES.c[name]
    for name in STORED
]
EXPORT_FIELDS = (*STORED[:2], "time", *STORED[2:])
BATCH = 2000


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


def trail_is_empty(db: Database) -> bool:
    """Nothing was ever recorded: no entry and no head (so no key has signed anything)."""
    with db.read() as session:
        entry = session.scalar(select(AuditEntry.seq).limit(1))
        head = session.scalar(select(AuditHead.id).limit(1))
    return entry is None and head is None


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
