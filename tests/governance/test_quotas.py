"""Quotas hold under concurrency, settle to real counts, and every request leaves a usage row."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import (
    admin,
    bearer,
    new_user_key,
    open_reservations,
    openai_client,
    usage_rows,
)

HI = [{"role": "user", "content": "Hi"}]
MAX_TOKENS = 8


def wait_until(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_fifty_requests_at_once_against_a_budget_for_three(tmp_path: Path, db_url: str) -> None:
    runner = FakeRunner(step_delay=0.01)
    with serve_fake(
        tmp_path / "home", runner, store_url=db_url, max_running=8, max_queue=64
    ) as served:
        probe = openai_client(served, served.key).chat.completions.create(
            model="fake",
            messages=HI,
            max_tokens=MAX_TOKENS,  # type: ignore[arg-type]
        )
        assert probe.usage is not None and probe.usage.completion_tokens == MAX_TOKENS
        per_request = probe.usage.prompt_tokens + MAX_TOKENS
        key = new_user_key(served, "alice", tokens_per_day=3 * per_request + per_request // 2)

        statuses: list[int] = []
        retry_after: list[str] = []
        gate = threading.Barrier(50)

        def call() -> None:
            gate.wait()
            reply = httpx.post(
                served.v1 + "/chat/completions",
                headers=bearer(key),
                json={"model": "fake", "messages": HI, "max_tokens": MAX_TOKENS},
                timeout=60,
            )
            statuses.append(reply.status_code)
            if reply.status_code == 429:
                retry_after.append(reply.headers.get("retry-after", ""))
                assert reply.json()["error"]["code"] == "insufficient_quota"

        threads = [threading.Thread(target=call) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses.count(200) == 3
        assert statuses.count(429) == 47
        assert all(int(value) > 0 for value in retry_after)
        wait_until(lambda: open_reservations(served) == 0)
        alice = [row for row in usage_rows(served) if row["user_id"] != 1]
        assert len(alice) == 3 and all(row["status"] == "ok" for row in alice)


def test_a_client_that_disconnects_mid_stream_is_still_billed(tmp_path: Path, db_url: str) -> None:
    runner = FakeRunner(step_delay=0.02)
    with serve_fake(tmp_path / "home", runner, store_url=db_url) as served:
        key = new_user_key(served, "bob", tokens_per_day=100_000)
        client = openai_client(served, key)
        stream = client.chat.completions.create(
            model="fake",
            messages=HI,
            max_tokens=400,
            stream=True,  # type: ignore[arg-type]
        )
        chunks = iter(stream)
        content = [next(chunks) for _ in range(6)]  # the role chunk, then 5 tokens
        assert all(c.choices for c in content)
        stream.close()

        wait_until(lambda: any(r["user_id"] != 1 for r in usage_rows(served)))
        (row,) = [r for r in usage_rows(served) if r["user_id"] != 1]
        assert row["status"] == "aborted"
        assert 5 <= row["completion_tokens"] < 400
        assert open_reservations(served) == 0
        # the settled count, not the 400-token reservation, is what the budget remembers
        with admin(served) as client_:
            used = client_.get("/admin/usage", params={"by": "user"}).json()["rows"]
        bob = next(r for r in used if r["label"] == "bob")
        assert bob["completion_tokens"] == row["completion_tokens"]


def test_requests_per_minute(tmp_path: Path, db_url: str) -> None:
    with serve_fake(tmp_path / "home", FakeRunner(), store_url=db_url) as served:
        key = new_user_key(served, "carol", requests_per_minute=2)
        client = openai_client(served, key)
        for _ in range(2):
            client.chat.completions.create(model="fake", messages=HI, max_tokens=2)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="fake", messages=HI, max_tokens=2)  # type: ignore[arg-type]
        assert 0 < int(info.value.response.headers["retry-after"]) <= 60
        assert info.value.code == "rate_limit_exceeded"


def test_a_group_budget_is_shared_by_its_members(tmp_path: Path, db_url: str) -> None:
    with serve_fake(tmp_path / "home", FakeRunner(), store_url=db_url) as served:
        with admin(served) as client_:
            client_.post("/admin/groups", json={"name": "legal"})
            for name in ("dan", "erin"):
                client_.post("/admin/users", json={"name": name, "groups": ["legal"]})
        keys = [new_user_key(served, name) for name in ("dan", "erin")]
        first = openai_client(served, keys[0]).chat.completions.create(
            model="fake",
            messages=HI,
            max_tokens=4,  # type: ignore[arg-type]
        )
        assert first.usage is not None
        with admin(served) as client_:
            reply = client_.patch(
                "/admin/groups/legal", json={"tokens_per_month": first.usage.total_tokens + 1}
            )
            assert reply.status_code == 200, reply.text
        with pytest.raises(openai.RateLimitError):
            openai_client(served, keys[1]).chat.completions.create(
                model="fake",
                messages=HI,
                max_tokens=4,  # type: ignore[arg-type]
            )


def test_usage_rows_name_the_model_and_count_tokens(tmp_path: Path) -> None:
    with serve_fake(tmp_path / "home", FakeRunner()) as served:
        reply = openai_client(served, served.key).completions.create(
            model="fake", prompt="abc", max_tokens=3
        )
        assert reply.usage is not None
        wait_until(lambda: len(usage_rows(served)) == 1)
        (row,) = usage_rows(served)
        assert row == {
            "user_id": 1,
            "model": "fake",
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "status": "ok",
        }
