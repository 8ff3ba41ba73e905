"""What admin commands share: the settings, the opened store, and who is acting."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager

from inhouse.config import Settings
from inhouse.store.db import Database, open_database


@contextmanager
def opened_store(settings: Settings) -> Iterator[Database]:
    """The migrated database the server uses, closed when the command ends."""
    settings.home.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.database_url())
    try:
        yield db
    finally:
        db.close()


def cli_actor() -> str:
    """The audit trail's actor for a command run on the server's machine."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"
