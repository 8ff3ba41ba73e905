"""Knowledge fixtures: the real embedder (loaded once), and a service over each database."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inhouse.audit.trail import AuditTrail, open_trail
from inhouse.auth.authenticate import principal_for_key
from inhouse.auth.directory import Directory
from inhouse.auth.policy import Principal
from inhouse.config import Settings
from inhouse.embeddings.minilm import EmbedderUnavailable, MiniLMEmbedder
from inhouse.knowledge.service import KnowledgeService
from inhouse.store.db import Database
from tests.conftest import make_settings, need

ACTOR = "cli:test"


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    try:
        return MiniLMEmbedder(threads=1, batch_size=16)
    except EmbedderUnavailable as exc:
        need(False, f"the embedding model is not installed: {exc.message}")
        raise


@dataclass
class Knowledge:
    """A service over a migrated store, plus what tests need to set up people."""

    service: KnowledgeService
    db: Database
    audit: AuditTrail
    settings: Settings
    home: Path

    def people(self, setup: Callable[[Directory], object]) -> None:
        """Run `setup` on the identity directory in one audited transaction."""
        with self.db.write() as session:
            setup(Directory(session, self.audit, ACTOR))

    def key_principal(self, user: str, collections: list[str] | None = None) -> Principal:
        """The principal of a fresh API key of `user`, as the server would authenticate it."""
        with self.db.write() as session:
            _, secret = Directory(session, self.audit, ACTOR).create_key(
                user, collections=collections
            )
        with self.db.read() as session:
            return principal_for_key(session, secret, time.time())


def build(db: Database, home: Path, embedder: MiniLMEmbedder, **knowledge: Any) -> Knowledge:
    settings = make_settings(home, knowledge=knowledge) if knowledge else make_settings(home)
    audit = open_trail(settings, db)
    service = KnowledgeService(db, audit, settings.knowledge, lambda: embedder)
    return Knowledge(service, db, audit, settings, home)


@pytest.fixture
def knowledge(db: Database, tmp_path: Path, embedder: MiniLMEmbedder) -> Iterator[Knowledge]:
    yield build(db, tmp_path / "home", embedder)


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    """Create `files` (relative name -> text or bytes) under `folder`; returns `folder`."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return folder
