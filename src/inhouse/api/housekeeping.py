"""Background chores of a running server: stale reservations, old content, refused sockets."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import anyio

from inhouse.airgap import AIR_GAP
from inhouse.ledger import quota

if TYPE_CHECKING:
    from inhouse.api.deps import AppState

log = logging.getLogger("inhouse.housekeeping")
EVERY_S = 1.0
SWEEP_EVERY_S = 600.0


async def housekeeping(state: AppState) -> None:
    """Run until cancelled: audit refused connections within a second, sweep every 10 min."""
    last_sweep = 0.0
    while True:
        try:
            await anyio.to_thread.run_sync(record_refused_connections, state)
            if time.monotonic() - last_sweep > SWEEP_EVERY_S:
                last_sweep = time.monotonic()
                await anyio.to_thread.run_sync(sweep, state)
        except Exception:
            log.exception("housekeeping failed; retrying")
        await asyncio.sleep(EVERY_S)


def record_refused_connections(state: AppState) -> int:
    """Write what the air-gap refused since the last call into the audit trail."""
    refused = AIR_GAP.drain_refused()
    if not refused:
        return 0
    with state.db.write() as session:
        for attempt in refused:
            state.audit.record(
                session,
                "system:air-gap",
                "network.refused",
                f"{attempt.host}:{attempt.port}" if attempt.port else attempt.host,
                {"event": attempt.event, "at": attempt.ts},
            )
    return len(refused)


def sweep(state: AppState) -> None:
    now = time.time()
    state.governance.quotas.prune(now)
    with state.db.write() as session:
        released = quota.release_stale(session, now)
        purged = state.governance.content.purge(session, now)
    if released or purged:
        log.info("released %d stale reservations, purged %d logged contents", released, purged)
