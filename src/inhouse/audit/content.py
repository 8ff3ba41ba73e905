"""Prompt and response text, kept only when an admin turns content logging on: redacted first,
deleted after the retention period."""

from __future__ import annotations

import time
from typing import Any, cast

from sqlalchemy import CursorResult, delete
from sqlalchemy.orm import Session

from inhouse.audit.redact import Redactor
from inhouse.config import LedgerSettings
from inhouse.store.tables import ContentRecord

DAY = 86400.0


class ContentLog:
    """Writes redacted content in the caller's transaction; off unless `log_content` is set."""

    def __init__(self, settings: LedgerSettings) -> None:
        self.enabled = settings.log_content
        self._retention = settings.content_retention_days * DAY
        # built even when off, so a bad redactor setting fails at start, not when turned on
        self._redactor = Redactor(settings.redactors, settings.redact_patterns)

    def record(
        self,
        session: Session,
        request_id: str,
        user_id: int | None,
        model: str,
        prompt: str,
        response: str,
    ) -> bool:
        """Store the redacted texts; False (nothing written) when content logging is off."""
        if not self.enabled:
            return False
        session.add(
            ContentRecord(
                ts=time.time(),
                request_id=request_id,
                user_id=user_id,
                model=model,
                prompt=self._redactor.redact(prompt),
                response=self._redactor.redact(response),
            )
        )
        return True

    def redact(self, text: str) -> str:
        """`text` as this log would keep it (what may be written anywhere on disk)."""
        return self._redactor.redact(text)

    def purge(self, session: Session, now: float) -> int:
        """Delete content older than the retention period (even when logging is now off)."""
        old = delete(ContentRecord).where(ContentRecord.ts < now - self._retention)
        result = cast(CursorResult[Any], session.execute(old))
        return result.rowcount
