"""The data directory and the SQLite store are owner-only: they hold key hashes, usage and
(when enabled) content."""

from __future__ import annotations

import stat
from pathlib import Path

from inhouse.cli.context import opened_store
from inhouse.config import load_settings
from tests.conftest import serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import admin, new_user_key, openai_client


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_server_creates_its_data_directory_and_store_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    with serve_fake(home, FakeRunner()) as served:
        key = new_user_key(served, "mo")
        openai_client(served, key).chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        with admin(served) as client:
            assert client.get("/admin/usage").status_code == 200
        files = {p.name: mode(p) for p in home.iterdir() if p.name.startswith("inhouse.db")}
    assert mode(home) == 0o700
    assert files["inhouse.db"] == 0o600 and files["inhouse.db-wal"] == 0o600
    assert set(files.values()) == {0o600}
    assert mode(home / "audit.key") == 0o600


def test_an_existing_store_is_made_owner_only_and_an_existing_directory_kept(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o750)
    home.chmod(0o750)  # the operator's choice: kept
    (home / "inhouse.db").touch(mode=0o644)
    (home / "inhouse.db").chmod(0o644)  # what earlier versions left
    with opened_store(load_settings(None, home=home)) as db, db.write() as session:
        session.connection()
    assert mode(home) == 0o750
    assert mode(home / "inhouse.db") == 0o600
