"""What admin commands share: the settings, the opened store, and who is acting."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

from inhouse.audit.trail import AuditTrail, open_trail
from inhouse.config import Settings
from inhouse.store.db import Database, open_database
from inhouse.store.private import private_dir


@contextmanager
def opened_store(settings: Settings) -> Iterator[Database]:
    """The migrated database the server uses, closed when the command ends."""
    private_dir(settings.home)
    db = open_database(settings.database_url())
    try:
        yield db
    finally:
        db.close()


@contextmanager
def audited_store(settings: Settings) -> Iterator[tuple[Database, AuditTrail]]:
    """The opened store and its audit trail, for commands that change something."""
    with opened_store(settings) as db:
        yield db, open_trail(settings, db)


def cli_actor() -> str:
    """The audit trail's actor for a command run on the server's machine."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"
