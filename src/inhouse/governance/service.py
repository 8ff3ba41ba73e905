"""Governance: admission and settlement of model requests against the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session

from inhouse.audit.content import ContentLog
from inhouse.audit.trail import AuditEvent, AuditTrail
from inhouse.auth.authenticate import mark_keys_used
from inhouse.auth.policy import Principal, require_model
from inhouse.governance.admission import Admission
from inhouse.governance.budget import Budget
from inhouse.governance.settlement import Settlement, unsettled
from inhouse.ledger.admission import WouldBlock, quota_book
from inhouse.ledger.usage import Outcome, write_usage
from inhouse.store.db import Database
from inhouse.store.spill import Spill
from inhouse.store.writer import BatchWriter


class Governance:
    """Who may use which model, what they may spend, and the record of what they spent."""

    def __init__(
        self,
        db: Database,
        audit: AuditTrail,
        content: ContentLog,
        *,
        enabled: bool = True,
        spill_path: Path | None = None,
    ) -> None:
        """With `spill_path`, settlements the store cannot take at shutdown are kept there,
        and those a previous run kept are written now, before any new request settles."""
        self.db = db
        self.audit = audit
        self.content = content
        self.enabled = enabled  # off only to measure what governance costs (benchmarks)
        # before the writer: replaying a spill file settles reservations through the book
        self.quotas = quota_book(db, lambda: self.writer.flush())
        spill = None
        if spill_path is not None:
            spill = Spill(spill_path, self._spilled, Settlement.from_record, unsettled)
        self.writer: BatchWriter[Settlement] = BatchWriter(
            db, self.write_settlements, "settlements", spill
        )

    @staticmethod
    def check_model(principal: Principal, model: str) -> None:
        """Refuse a model outside the key's scope before anything is loaded for it."""
        require_model(principal, model)

    async def admit(
        self, principal: Principal, ip: str | None, endpoint: str, model: str, budget: Budget
    ) -> Admission:
        """Reserve the budget against every quota that limits `principal`, or raise
        QuotaExceeded (429). A reservation that needs the database runs in a worker thread:
        a slow database never stalls the event loop and the streams it serves."""
        reservation = None
        if self.enabled:
            limits, tokens = principal.limits, budget.tokens
            try:
                reservation = self.quotas.reserve(limits, tokens, may_block=False)
            except WouldBlock:
                reservation = await anyio.to_thread.run_sync(self.quotas.reserve, limits, tokens)
        return Admission(
            principal,
            ip,
            endpoint,
            model,
            budget,
            reservation,
            self.settle,
            keep_text=self.content.enabled,
        )

    def settle(self, admission: Admission, outcome: Outcome) -> None:
        """Queue the settlement: it is written right after the response, not before it."""
        if self.enabled:
            self.quotas.release(admission.reservation, outcome.total_tokens)
            self.writer.submit(admission.settlement(outcome))

    def close(self) -> None:
        """Write what is queued, then stop the writer (server shutdown)."""
        self.writer.close()

    def write_settlements(self, session: Session, batch: list[Settlement]) -> None:
        """Settle each reservation to its real count; write the usage rows and audit entries.
        A batch shares one transaction: every statement touches each row once."""
        self.quotas.settle_in(session, [(s.reservation, s.tokens) for s in batch])
        write_usage(session, [s.usage for s in batch])
        mark_keys_used(session, {s.usage["key_id"] for s in batch if s.usage["key_id"]})
        for s in batch:
            usage = s.usage
            self.content.record(
                session,
                usage["request_id"],
                usage["user_id"],
                usage["model"],
                s.prompt_text,
                s.response_text,
            )
        self.audit.record_many(
            session,
            [
                AuditEvent(s.actor, "api.request", s.usage["endpoint"], s.detail, s.ip)
                for s in batch
            ],
        )

    def _spilled(self, settlement: Settlement) -> dict[str, Any]:
        """The spill file's record: content redacted, as the store would keep it."""
        record = settlement.to_record()
        record["prompt_text"] = self.content.redact(settlement.prompt_text)
        record["response_text"] = self.content.redact(settlement.response_text)
        return record
