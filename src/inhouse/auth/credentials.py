"""Credentials checked against the store, each in its own transaction; a refused credential
is written to the audit trail (what was sent never is).

Blocking. A store in this process's own file (SQLite) answers an indexed read in a fraction
of a millisecond, less than a hop to a worker thread and back, and never waits on the
network: `inline` says so, and the caller may check there. A database server (PostgreSQL)
can be slow or far: check from a worker thread."""

from __future__ import annotations

import time

from inhouse.audit.trail import AuditTrail
from inhouse.auth.authenticate import principal_for_key, principal_for_session
from inhouse.auth.policy import Principal
from inhouse.store.db import Database


class Credentials:
    def __init__(self, db: Database, audit: AuditTrail) -> None:
        self.db = db
        self.audit = audit
        self.inline = db.dialect == "sqlite"

    def by_key(self, secret: str) -> Principal:
        """The principal of an API key, or Unauthorized."""
        with self.db.read() as session:
            return principal_for_key(session, secret, time.time())

    def by_session(self, token: str) -> tuple[Principal, str]:
        """The principal of a web session token and the hash of its CSRF token, or
        Unauthorized."""
        with self.db.read() as session:
            return principal_for_session(session, token, time.time())

    def refused(self, reason: str, path: str, method: str, ip: str | None) -> None:
        """Record a refused credential as a security event."""
        with self.db.write() as session:
            detail = {"reason": reason, "method": method}
            self.audit.record(session, "anonymous", "auth.failed", path, detail, ip)
