"""Around every model request: model permission, quota reservation, then (however the request
ends) settlement, a usage row and an audit entry in one transaction."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from fastapi import Request
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from inhouse.api.guard import client_ip, principal_of
from inhouse.api.openai.serving import Prepared
from inhouse.api.watch import RequestWatch, Watches
from inhouse.audit.content import ContentLog
from inhouse.audit.trail import AuditEvent, AuditTrail
from inhouse.auth.policy import Principal, require_model
from inhouse.engine.request import TokenEvent
from inhouse.ledger.admission import quota_book
from inhouse.ledger.usage import Outcome, usage_row, write_usage
from inhouse.store.db import Database
from inhouse.store.spill import Spill
from inhouse.store.tables import ApiKey, UsageRecord
from inhouse.store.writer import BatchWriter

log = logging.getLogger("inhouse.governance")
KEYS = cast(Table, ApiKey.__table__)
TOUCH_KEY = (
    update(KEYS).where(KEYS.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))
)


class Governance:
    """Admission and settlement of model requests against the store."""

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
            spill = Spill(spill_path, self._spilled, Settlement.from_record, _unsettled)
        self.writer: BatchWriter[Settlement] = BatchWriter(
            db, self.write_settlements, "settlements", spill
        )

    @staticmethod
    def check_model(request: Request, model: str) -> None:
        """Refuse a model outside the key's scope before anything is loaded for it."""
        require_model(principal_of(request), model)

    async def admit(
        self,
        request: Request,
        endpoint: str,
        model: str,
        prompt_tokens: int,
        max_new_tokens: int,
        metrics: RequestWatch,
        prompt_text: str = "",
        choices: int = 1,
    ) -> Admission:
        """Reserve prompt + max_new_tokens against every quota, or raise QuotaExceeded (429)."""
        principal = principal_of(request)
        reserved = prompt_tokens + max_new_tokens

        # inline: a few indexed single-row UPDATEs cost less than a hop to a worker thread
        reservation = self.quotas.reserve(principal.limits, reserved) if self.enabled else None
        return Admission(
            self,
            principal,
            model,
            endpoint,
            client_ip(request),
            reservation,
            prompt_tokens,
            metrics,
            prompt_text,
            choices,
        )

    async def admit_generation(
        self, request: Request, endpoint: str, model: str, prepared: Prepared, metrics: RequestWatch
    ) -> Watches:
        """Admit a prepared generation; the watch its events and its end must go through."""
        admission = await self.admit(
            request,
            endpoint,
            model,
            prepared.prompt_tokens,
            sum(choice.params.max_tokens for choice in prepared.choices),
            metrics,
            "\n\n".join(prepared.prompt_texts) if self.content.enabled else "",
            len(prepared.choices),
        )
        return admission.watch()

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
        keys = sorted({s.usage["key_id"] for s in batch if s.usage["key_id"]})
        now = time.time()
        for key_id in keys:
            session.connection().execute(TOUCH_KEY, {"key_id": key_id, "now": now})
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


def _unsettled(session: Session, batch: list[Settlement]) -> list[Settlement]:
    """The settlements whose usage row is not in the store yet (a replay may be repeated)."""
    ids = [s.usage["request_id"] for s in batch]
    query = select(UsageRecord.request_id).where(UsageRecord.request_id.in_(ids))
    written = set(session.scalars(query))
    return [s for s in batch if s.usage["request_id"] not in written]


@dataclass(frozen=True)
class Settlement:
    """A finished request as the write-behind writes it: plain data, so it can be spilled."""

    reservation: str | None
    usage: dict[str, Any]  # the usage row (ledger.usage.usage_row)
    actor: str
    ip: str | None
    prompt_text: str = ""
    response_text: str = ""

    @property
    def detail(self) -> dict[str, Any]:
        """The api.request audit entry's detail: the usage row's facts of the request."""
        u = self.usage
        return {
            "request_id": u["request_id"],
            "model": u["model"],
            "status": u["status"],
            "prompt_tokens": u["prompt_tokens"],
            "completion_tokens": u["completion_tokens"],
            "latency_ms": round(u["latency_ms"], 2),
        }

    @property
    def tokens(self) -> int:
        return int(self.usage["prompt_tokens"]) + int(self.usage["completion_tokens"])

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Settlement:
        return cls(**record)


def token_bound(texts: list[str]) -> int:
    """At least as many tokens as the texts can make: none is shorter than one byte."""
    return sum(len(text.encode("utf-8", "surrogatepass")) + 2 for text in texts)


@dataclass
class Admission:
    """One admitted request: counts tokens as they stream and settles once, at its end."""

    governance: Governance
    principal: Principal
    model: str
    endpoint: str
    ip: str | None
    reservation: str | None
    prompt_tokens: int
    metrics: RequestWatch
    prompt_text: str = ""
    choices: int = 1  # engine requests whose end is expected (0: no token stream)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    generated: dict[str, int] = field(default_factory=dict)  # engine request id -> tokens
    finished: set[str] = field(default_factory=set)
    cached_tokens: int = 0
    response: list[str] = field(default_factory=list)
    settled: bool = False

    def set_prompt_tokens(self, tokens: int) -> None:
        """The real count, once known (embeddings are counted by their model)."""
        self.prompt_tokens = tokens

    def watch(self) -> Watches:
        return Watches(self.metrics, self)

    def settlement(self, outcome: Outcome) -> Settlement:
        """What the write-behind writes for this request, ended with `outcome`."""
        return Settlement(
            self.reservation,
            usage_row(self.principal, self.request_id, self.model, self.endpoint, outcome),
            self.principal.actor,
            self.ip,
            self.prompt_text,
            "".join(self.response),
        )

    def on_event(self, event: TokenEvent) -> None:
        rid = event.request_id
        if event.finish_reason is None:
            self.generated[rid] = self.generated.get(rid, 0) + 1
        else:
            self.generated[rid] = event.completion_tokens
            self.finished.add(rid)
            self.cached_tokens = max(self.cached_tokens, event.cached_tokens)
        if self.governance.content.enabled and event.text:
            self.response.append(event.text)

    def done(self, status: int) -> None:
        if self.settled:
            return
        self.settled = True
        if status != 200:
            label = f"error_{status}"
        else:
            label = "ok" if len(self.finished) >= self.choices else "aborted"
        outcome = Outcome(
            self.prompt_tokens,
            sum(self.generated.values()),
            self.cached_tokens,
            (time.perf_counter() - self.started) * 1000,
            label,
        )
        self.governance.settle(self, outcome)
