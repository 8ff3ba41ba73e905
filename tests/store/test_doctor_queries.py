"""What `inhouse doctor` asks the database, answered by the packages that own the rows, on
SQLite and PostgreSQL: the schema's revision, whether the audit trail holds anything, which
keys authenticate and which admins exist."""

from __future__ import annotations

import time
from pathlib import Path

from alembic.script import ScriptDirectory

from inhouse.audit.check import trail_is_empty
from inhouse.audit.trail import AuditTrail
from inhouse.auth.inventory import ActiveKey, Admin, active_keys, enabled_admins
from inhouse.config import load_settings
from inhouse.doctor import run_checks
from inhouse.store.db import Database
from inhouse.store.migrate import alembic_config
from inhouse.store.tables import ApiKey, User

KEY = bytes(range(32))


def test_revision_is_the_newest_migration_once_migrated(db: Database) -> None:
    head = ScriptDirectory.from_config(alembic_config(db.engine)).get_current_head()
    assert head is not None
    assert db.revision() == head


def test_revision_is_none_before_any_migration(db_url: str) -> None:
    bare = Database(db_url)
    try:
        assert bare.revision() is None
    finally:
        bare.close()


def test_the_trail_is_empty_until_its_head_or_an_entry_is_written(db: Database) -> None:
    assert trail_is_empty(db)
    trail = AuditTrail(KEY)
    trail.ensure_head(db)
    assert not trail_is_empty(db)
    with db.write() as session:
        trail.record(session, "user:root", "key.create", "k1", {}, None)
    assert not trail_is_empty(db)


def test_doctor_fails_the_chain_when_a_written_trail_has_lost_its_key(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    settings = load_settings(None, home=tmp_path / "home", store={"url": db_url})

    def chain() -> tuple[str, str]:
        (check,) = [c for c in run_checks(settings, install=False) if c.area == "audit"]
        return check.status, check.detail

    assert chain()[0] == "ok"  # nothing written yet: the key is made on first start
    AuditTrail(KEY).ensure_head(db)
    status, detail = chain()
    assert status == "fail" and "audit.key is missing" in detail


def test_active_keys_leave_out_revoked_expired_and_disabled_users_keys(db: Database) -> None:
    now = time.time()
    with db.write() as session:
        alice = User(name="alice", role="member", created_at=now)
        bob = User(name="bob", role="member", created_at=now, disabled=True)
        session.add_all([alice, bob])
        session.flush()
        for public_id, user, expires_at, revoked_at in (
            ("forever", alice, None, None),
            ("later", alice, now + 3600, None),
            ("expired", alice, now - 1, None),
            ("revoked", alice, None, now - 1),
            ("bobs", bob, None, None),
        ):
            session.add(
                ApiKey(
                    public_id=public_id,
                    key_hash=public_id.ljust(64, "0"),
                    user_id=user.id,
                    created_at=now,
                    expires_at=expires_at,
                    revoked_at=revoked_at,
                )
            )
        alice_id = alice.id
    keys = sorted(active_keys(db, now), key=lambda key: key.public_id)
    assert keys == [ActiveKey("forever", alice_id, None), ActiveKey("later", alice_id, now + 3600)]


def test_enabled_admins_are_the_admin_accounts_not_disabled(db: Database) -> None:
    now = time.time()
    with db.write() as session:
        users = [
            User(name="root", role="admin", created_at=now, password_hash="$argon2id$x"),
            User(name="ops", role="admin", created_at=now),
            User(name="gone", role="admin", created_at=now, disabled=True),
            User(name="alice", role="member", created_at=now, password_hash="$argon2id$y"),
        ]
        session.add_all(users)
        session.flush()
        root_id, ops_id = users[0].id, users[1].id
    admins = sorted(enabled_admins(db), key=lambda admin: admin.user_id)
    assert admins == sorted(
        [Admin(root_id, has_password=True), Admin(ops_id, has_password=False)],
        key=lambda admin: admin.user_id,
    )
