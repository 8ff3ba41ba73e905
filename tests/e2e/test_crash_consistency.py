"""kill -9 while admin actions commit: each action and its audit entry exist together or not."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from inhouse.audit.check import verify
from inhouse.audit.trail import load_audit_key
from inhouse.store.db import open_database
from inhouse.store.tables import AuditEntry, User
from tests.e2e.test_cli import start_server


def test_kill_9_between_action_and_commit_leaves_no_half(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("INHOUSE_STORE__URL", db_url)
    server = start_server(home)
    headers = {"Authorization": f"Bearer {server.key}"}
    created: list[str] = []
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            for i in range(10_000):
                if stop.is_set():
                    return
                name = f"w{worker}-{i}"
                try:
                    reply = client.post("/admin/users", json={"name": name})
                except httpx.TransportError:
                    return
                if reply.status_code == 201:
                    created.append(name)

    workers = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 30
    while len(created) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.proc.kill()  # SIGKILL: no shutdown code runs, transactions in flight are cut
    server.proc.wait()
    stop.set()
    for w in workers:
        w.join()
    assert len(created) >= 40

    db = open_database(db_url)
    try:
        with db.read() as session:
            users = set(session.scalars(select(User.name).where(User.name.like("w%"))))
            audited = set(
                session.scalars(
                    select(AuditEntry.target).where(
                        AuditEntry.action == "user.create", AuditEntry.target.like("w%")
                    )
                )
            )
        assert users == audited  # no user without its audit entry, no entry without its user
        assert set(created) <= users  # what the server confirmed was durable
        result = verify(db, load_audit_key(home / "audit.key"))
        assert result.ok, result.problem
    finally:
        db.close()
