"""Scheduled syncs: due connectors sync by themselves in a worker thread, one at a time, and
stopping ends a running sync at its next row without harm to the index."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from inhouse.knowledge.schedule import SCHEDULER_ACTOR, run_scheduled_syncs
from inhouse.knowledge.service import KnowledgeService
from inhouse.store.tables import AuditEntry
from tests.knowledge.conftest import Knowledge
from tests.knowledge.test_connectors import connect, execute, make_source

GUARD_S = 120.0  # against a hang only


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD_S):
        while not check():
            await asyncio.sleep(0.05)


def status(service: KnowledgeService) -> dict[str, Any]:
    found: dict[str, Any] = service.sync_status("crm")["sync"]
    return found


async def test_due_connectors_sync_on_their_interval(knowledge: Knowledge, tmp_path: Path) -> None:
    source = make_source(tmp_path / "crm.db", 10)
    service = connect(knowledge, source, every_s=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduled_syncs(service, stop, max_sleep_s=0.2))
    await until(lambda: status(service)["status"] == "ok")
    assert len(service.documents("crm")) == 10
    first = status(service)["finished_at"]
    execute(source, "DELETE FROM accounts WHERE id = 3")
    await until(
        lambda: status(service)["finished_at"] != first and status(service)["status"] == "ok"
    )
    await until(lambda: len(service.documents("crm")) == 9)
    stop.set()
    async with asyncio.timeout(GUARD_S):
        await task
    with knowledge.db.read() as session:
        actors = set(
            session.scalars(select(AuditEntry.actor).where(AuditEntry.action == "knowledge.sync"))
        )
    assert actors == {SCHEDULER_ACTOR}


async def test_stopping_ends_a_running_sync_cleanly(knowledge: Knowledge, tmp_path: Path) -> None:
    source = make_source(tmp_path / "crm.db", 300)
    service = connect(knowledge, source, every_s=3600.0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduled_syncs(service, stop))
    # seen from the event loop while the sync runs: it runs in a worker thread
    await until(lambda: status(service)["status"] == "running" and status(service)["rows_seen"] > 0)
    stop.set()
    async with asyncio.timeout(GUARD_S):
        await task
    ended = status(service)
    assert ended["status"] == "failed" and "shutting down" in ended["last_error"]
    kept = len(service.documents("crm"))
    assert 0 < kept < 300 and ended["rows_removed"] == 0
    assert service.sync("cli:test", "crm")["status"] == "ok"  # the next sync goes on
    assert len(service.documents("crm")) == 300
