"""Settlements the store cannot take when the server stops are kept in the spill file
(owner-only, content redacted) and written by the next start, exactly once."""

from __future__ import annotations

import stat
from pathlib import Path

import sqlean

from tests.conftest import serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import audit_entries, new_user_key, openai_client

EMAIL = "sam.spill@example.com"


def test_settlements_refused_at_shutdown_are_written_at_the_next_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    overrides = {"ledger": {"log_content": True}}
    with serve_fake(home, FakeRunner(), overrides=overrides) as served:
        key = new_user_key(served, "sam")
        writer = served.app.state.inhouse.governance.writer
        lock = sqlean.connect(str(home / "inhouse.db"), isolation_level=None, timeout=60)
        lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock from now on
        client = openai_client(served, key)
        for i in range(3):
            client.chat.completions.create(
                model="fake",
                messages=[{"role": "user", "content": f"write to {EMAIL} ({i})"}],
                max_tokens=4,
            )
        assert writer.flush(timeout=0.5) is False  # the writer waits for the lock
    # the server stopped with the lock still held: the writer gave up only then
    lock.execute("ROLLBACK")
    lock.close()

    spill = home / "settlements.spill.jsonl"
    assert len(spill.read_text().splitlines()) == 3
    assert stat.S_IMODE(spill.stat().st_mode) == 0o600
    assert EMAIL not in spill.read_text()  # redacted, as the store would keep it

    with serve_fake(home, FakeRunner(), overrides=overrides) as again:
        requests = [e for e in audit_entries(again) if e["action"] == "api.request"]
        assert len(requests) == 3
        assert len({e["detail"]["request_id"] for e in requests}) == 3
        state = again.app.state.inhouse
        with state.db.read() as session:
            from sqlalchemy import func, select

            from inhouse.store.tables import ContentRecord, UsageRecord

            assert session.scalar(select(func.count()).select_from(UsageRecord)) == 3
            prompts = list(session.scalars(select(ContentRecord.prompt)))
        assert len(prompts) == 3 and not any(EMAIL in p for p in prompts)
    assert not spill.exists()
