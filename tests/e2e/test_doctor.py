"""`inhouse doctor` as an admin runs it: a child process (it installs the air-gap hook)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from inhouse.store.db import open_database
from inhouse.store.tables import ApiKey, User

DOCTOR = [sys.executable, "-c", "from inhouse.cli.doctor import doctor_app; doctor_app()"]


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def status(self, area: str, name: str) -> tuple[str, str]:
        """(status, detail) of one check in the --json report."""
        report = json.loads(self.stdout)
        (check,) = [c for c in report["checks"] if c["area"] == area and c["name"] == name]
        return check["status"], check["detail"]


def doctor(home: Path, *args: str, **env: str) -> Outcome:
    done = subprocess.run(
        [*DOCTOR, "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def test_doctor_proves_the_air_gap_on_a_fresh_home(tmp_path: Path) -> None:
    run = doctor(tmp_path / "home", "--json")
    assert run.code == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] is True
    for name in ("allow-list", "dns lookup", "connect", "loopback", "offline switches"):
        assert run.status("air-gap", name)[0] == "ok", name
    assert "example.com" in run.status("air-gap", "dns lookup")[1]
    assert "1.1.1.1:443 refused" in run.status("air-gap", "connect")[1]
    assert run.status("storage", "database")[0] == "ok"
    assert run.status("models", "served model")[0] == "ok"
    assert not [c for c in report["checks"] if c["status"] == "fail"]


def test_doctor_prints_a_table_by_default(tmp_path: Path) -> None:
    run = doctor(tmp_path / "home")
    assert run.code == 0, run.stdout + run.stderr
    header, *rows = run.stdout.splitlines()
    assert header.split() == ["area", "check", "status", "detail"]
    assert any(row.split()[:4] == ["air-gap", "dns", "lookup", "ok"] for row in rows)


def test_doctor_lists_the_allow_list_and_still_proves_the_gap(tmp_path: Path) -> None:
    run = doctor(tmp_path / "home", "--json", INHOUSE_NETWORK__ALLOW_HOSTS='["example.com"]')
    assert run.code == 0, run.stdout + run.stderr
    assert run.status("air-gap", "allow-list") == ("ok", "loopback and example.com")
    status, detail = run.status("air-gap", "dns lookup")
    assert status == "ok" and "example.net" in detail  # an allowed probe name is not used


def test_doctor_fails_when_the_database_cannot_open(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.db"
    garbage.write_bytes(b"this is not a database" * 100)
    run = doctor(tmp_path / "home", "--json", INHOUSE_STORE__URL=f"sqlite:///{garbage}")
    assert run.code == 1
    status, detail = run.status("storage", "database")
    assert status == "fail" and "not a database" in detail
    assert run.status("air-gap", "connect")[0] == "ok"  # the other areas are still reported
    assert run.status("models", "served model")[0] == "ok"


def test_doctor_never_prints_the_database_password(tmp_path: Path) -> None:
    url = "postgresql://inhouse:hunter2@127.0.0.1:1/inhouse"  # nothing listens on port 1
    run = doctor(tmp_path / "home", "--json", INHOUSE_STORE__URL=url)
    assert run.code == 1
    status, detail = run.status("storage", "database")
    assert status == "fail" and "127.0.0.1" in detail
    assert "hunter2" not in run.stdout + run.stderr


def test_doctor_fails_on_a_corrupted_model_manifest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "manifest.json").write_text("{not json")
    run = doctor(home, "--json")
    assert run.code == 1
    status, detail = run.status("models", "store")
    assert status == "fail" and "manifest" in detail
    assert "fail" in doctor(home).stdout  # the table shows it too


def test_doctor_warns_about_keys_expiring_soon_and_loose_key_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    now = time.time()
    db = open_database(f"sqlite:///{home / 'inhouse.db'}")
    with db.write() as session:
        admin = User(name="root", role="admin", created_at=now)
        session.add(admin)
        session.flush()
        for public_id, expires_at in (("soon", now + 3600), ("later", now + 90 * 86400)):
            session.add(
                ApiKey(
                    public_id=public_id,
                    key_hash=public_id * 8,
                    user_id=admin.id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        session.add(
            ApiKey(public_id="forever", key_hash="f" * 64, user_id=admin.id, created_at=now)
        )
    db.close()
    key_file = home / "audit.key"
    key_file.write_text("ab" * 32 + "\n")
    key_file.chmod(0o644)

    run = doctor(home, "--json")
    assert run.code == 0, run.stdout + run.stderr  # warnings do not fail the doctor
    assert run.status("keys", "api keys") == ("ok", "3 active, 1 of them without expiry")
    assert run.status("keys", "expiring") == ("warn", "1 expire within 7 days: soon")
    assert run.status("keys", "admins")[0] == "ok"
    status, detail = run.status("keys", "key files")
    assert status == "warn" and "audit.key" in detail and "chmod 600" in detail
    assert run.status("audit", "chain")[0] == "ok"
