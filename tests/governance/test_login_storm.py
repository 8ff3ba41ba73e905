"""A storm of wrong-password sign-ins while chats run: sign-ins are throttled (429 with
Retry-After) rather than failing, no request gets a 5xx, and every answered chat has its
usage row and its audit entry."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import Served, serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import admin, audit_entries, new_user_key, openai_client

LOGINS = 60
CHATS = 48
PER_ADDRESS = 30
USERS = [f"storm{i}" for i in range(6)]


def wrong_login(served: Served, i: int) -> httpx.Response:
    body = {"name": USERS[i % len(USERS)], "password": f"not the password {i}"}
    return httpx.post(served.base_url + "/admin/login", json=body, timeout=120)


def chat(served: Served, key: str, i: int) -> int:
    """The HTTP status of one chat completion through the official client."""
    client = openai_client(served, key).with_options(timeout=120)
    reply = client.chat.completions.with_raw_response.create(
        model="fake", messages=[{"role": "user", "content": f"hi {i}"}], max_tokens=8
    )
    return reply.http_response.status_code


def test_a_sign_in_storm_is_throttled_and_loses_no_usage(db_url: str, tmp_path: Path) -> None:
    overrides = {
        "auth": {
            "secure_cookies": False,
            "login_failures_per_address": PER_ADDRESS,
            "login_failures_per_user": 1000,
        }
    }
    runner = FakeRunner()
    with serve_fake(
        tmp_path / "home",
        runner,
        store_url=db_url,
        overrides=overrides,
        max_running=8,
        max_queue=CHATS,
    ) as served:
        with admin(served) as client:
            for name in USERS:
                made = client.post("/admin/users", json={"name": name, "password": "x" * 12})
                assert made.status_code == 201, made.text
        key = new_user_key(served, "chatter")
        with ThreadPoolExecutor(LOGINS + CHATS) as pool:
            logins = [pool.submit(wrong_login, served, i) for i in range(LOGINS)]
            chats = [pool.submit(chat, served, key, i) for i in range(CHATS)]
            login_replies = [f.result() for f in logins]
            chat_statuses = [f.result() for f in chats]

        statuses = Counter(reply.status_code for reply in login_replies)
        assert statuses == {401: PER_ADDRESS, 429: LOGINS - PER_ADDRESS}, statuses
        for reply in login_replies:
            if reply.status_code == 429:
                assert int(reply.headers["Retry-After"]) >= 1
                assert reply.json()["error"]["code"] == "too_many_sign_in_attempts"
        assert chat_statuses == [200] * CHATS

        entries = audit_entries(served)  # flushes the write-behind first
        requests = [e for e in entries if e["action"] == "api.request"]
        failures = [e for e in entries if e["action"] == "auth.login_failed"]
        assert len(failures) == PER_ADDRESS  # every refused password is on the trail
        ids = [e["detail"]["request_id"] for e in requests]
        assert len(ids) == CHATS and len(set(ids)) == CHATS
        assert sorted(usage_request_ids(served)) == sorted(ids)


def usage_request_ids(served: Served) -> list[str]:
    from sqlalchemy import select

    from inhouse.store.tables import UsageRecord

    state = served.app.state.inhouse
    state.governance.writer.flush()
    with state.db.read() as session:
        return list(session.scalars(select(UsageRecord.request_id)))
