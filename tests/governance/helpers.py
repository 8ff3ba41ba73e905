"""Shared steps of the governance tests: an admin client, users with keys, store queries."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.conftest import Served


def admin(served: Served) -> httpx.Client:
    return httpx.Client(
        base_url=served.base_url, headers={"Authorization": f"Bearer {served.key}"}, timeout=30
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_user_key(served: Served, name: str, role: str = "member", **key: Any) -> str:
    """Create a user (if needed) and a key for them; the key's secret."""
    with admin(served) as client:
        client.post("/admin/users", json={"name": name, "role": role})
        reply = client.post("/admin/keys", json={"user": name, **key})
        assert reply.status_code == 201, reply.text
        secret: str = reply.json()["key"]
        return secret


def openai_client(served: Served, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.v1, api_key=key, max_retries=0)


def usage_rows(served: Served) -> list[dict[str, Any]]:
    """Every usage row, straight from the store the server writes to."""
    from sqlalchemy import select

    from inhouse.store.tables import UsageRecord

    state = served.app.state.inhouse
    state.governance.writer.flush()  # usage is written right after each response
    with state.db.read() as session:
        rows = session.scalars(select(UsageRecord).order_by(UsageRecord.id))
        return [
            {
                "user_id": r.user_id,
                "model": r.model,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "status": r.status,
            }
            for r in rows
        ]


def open_reservations(served: Served) -> int:
    from sqlalchemy import func, select

    from inhouse.store.tables import Reservation

    served.app.state.inhouse.governance.writer.flush()
    with served.app.state.inhouse.db.read() as session:
        return session.scalar(select(func.count()).select_from(Reservation)) or 0


# ----- store snapshots and text dumps (credentials, access matrix, secrets) ---------------

AUDIT_TABLES = frozenset({"audit_log", "audit_head", "audit_checkpoints"})


def store_rows(served: Served, *, skip: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Every row of every table (but `skip`), as text, in primary-key order."""
    from sqlalchemy import select

    from inhouse.store.tables import Base

    rows: dict[str, list[str]] = {}
    served.app.state.inhouse.governance.writer.flush()  # usage and settlements come behind
    with served.app.state.inhouse.db.read() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in skip:
                continue
            query = select(table).order_by(*table.primary_key.columns)
            rows[table.name] = [repr(tuple(row)) for row in session.execute(query)]
    return rows


def store_snapshot(served: Served) -> dict[str, list[str]]:
    """The whole store but the audit trail: what a refused request must leave as it was."""
    return store_rows(served, skip=AUDIT_TABLES)


def audit_entries(served: Served, after_seq: int = 0) -> list[dict[str, Any]]:
    """The audit trail's entries after `after_seq`, oldest first."""
    from sqlalchemy import select

    from inhouse.store.tables import AuditEntry

    served.app.state.inhouse.governance.writer.flush()
    with served.app.state.inhouse.db.read() as session:
        query = select(AuditEntry).where(AuditEntry.seq > after_seq).order_by(AuditEntry.seq)
        return [
            {
                "seq": e.seq,
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
                "ip": e.ip,
            }
            for e in session.scalars(query)
        ]


def last_audit_seq(served: Served) -> int:
    entries = audit_entries(served)
    return entries[-1]["seq"] if entries else 0


def wait_for_usage_rows(served: Served, count: int, timeout: float = 15.0) -> None:
    """Wait until the store holds `count` usage rows (they are written as a response ends)."""
    import time

    deadline = time.monotonic() + timeout
    while len(usage_rows(served)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} usage rows after {timeout} s")
        time.sleep(0.02)


def store_url(kind: str, tmp: Any) -> Any:
    """A context manager giving what the `db_url` fixture gives ("sqlite" or "postgresql"),
    for servers shared by a module's tests."""
    from contextlib import nullcontext

    from tests.conftest import POSTGRES_URL, need, postgres_schema

    if kind == "sqlite":
        return nullcontext(f"sqlite:///{tmp / 'store.db'}")
    need(bool(POSTGRES_URL), "INHOUSE_TEST_POSTGRES_URL is not set: no PostgreSQL to test on")
    return postgres_schema()
