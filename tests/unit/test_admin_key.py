import stat
from pathlib import Path

from inhouse.auth.admin_key import AdminKeyStore


def test_key_is_created_once_stored_hashed_and_private(tmp_path: Path) -> None:
    store = AdminKeyStore(tmp_path)
    key = store.ensure()
    assert key is not None and key.startswith("ih-")
    assert store.ensure() is None
    stored = store.path.read_text()
    assert key not in stored
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.verifier().check(key)
    assert not store.verifier().check(key + "x")


def test_rotating_the_key_invalidates_the_old_one(tmp_path: Path) -> None:
    store = AdminKeyStore(tmp_path)
    old = store.create()
    new = store.create()
    assert store.verifier().check(new) and not store.verifier().check(old)
