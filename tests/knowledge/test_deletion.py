"""Deleting a document or a collection leaves no trace of its text in the store or its files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from inhouse.auth.authenticate import local_operator
from tests.knowledge.conftest import ACTOR, Knowledge, write

CANARY = "Quentaro Vilkisham signed the Zephyrinex accord at midnight."
# stemmed and lowercased as the full-text index stores them
TRACES = (b"quentaro", b"vilkisham", b"zephyrinex")


def table_traces(k: Knowledge) -> list[str]:
    """Every table of the database, every row, as text: where a canary word still is."""
    metadata = MetaData()
    metadata.reflect(k.db.engine)
    found = []
    with k.db.read() as session:
        for table in metadata.sorted_tables:
            for row in session.execute(select(table)):
                text = repr(tuple(row)).lower().encode()
                found += [f"{table.name}: {t!r}" for t in TRACES if t in text]
    return found


def file_traces(root: Path, skip: Path) -> list[str]:
    """Every file under `root` (but `skip`, the source folder) holding a canary word."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_relative_to(skip):
            data = path.read_bytes().lower()
            found += [f"{path.name}: {t!r}" for t in TRACES if t in data]
    return found


@pytest.fixture
def loaded(knowledge: Knowledge, tmp_path: Path) -> tuple[Knowledge, Path]:
    knowledge.people(lambda d: d.add_group("legal"))
    knowledge.service.create(ACTOR, "contracts", "legal")
    source = write(
        tmp_path / "drive",
        {"secret.md": f"# Accord\n\n{CANARY}", "other.md": "# Other\n\nA dull memo about lunch."},
    )
    knowledge.service.add(ACTOR, "contracts", source)
    return knowledge, source


def check_erased(k: Knowledge, source: Path, tmp_path: Path, delete: Callable[[], None]) -> None:
    hits = k.service.search(local_operator(), CANARY, ["contracts"], 5)
    assert hits and hits[0].text.endswith(CANARY)
    assert table_traces(k)  # the checks can see the canary while it is there
    if k.db.dialect == "sqlite":
        with k.db.engine.connect() as connection:  # so the main file holds it, too
            connection.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        assert file_traces(tmp_path, source)
    delete()
    assert table_traces(k) == []
    assert file_traces(tmp_path, source) == []  # database, its -wal and -shm, the home dir


def test_removing_a_document_erases_its_text(
    loaded: tuple[Knowledge, Path], tmp_path: Path
) -> None:
    k, source = loaded
    check_erased(
        k,
        source,
        tmp_path,
        lambda: k.service.remove_document(ACTOR, "contracts", str(source / "secret.md")),
    )
    hits = k.service.search(local_operator(), "memo about lunch", ["contracts"], 5)
    assert "lunch" in hits[0].text  # the other document is still there


def test_removing_a_collection_erases_everything_in_it(
    loaded: tuple[Knowledge, Path], tmp_path: Path
) -> None:
    k, source = loaded
    check_erased(k, source, tmp_path, lambda: k.service.remove(ACTOR, "contracts"))
    assert k.service.collections() == []
