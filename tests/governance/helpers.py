"""Shared steps of the governance tests: an admin client, users with keys, store queries."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.conftest import Served


def admin(served: Served) -> httpx.Client:
    return httpx.Client(
        base_url=served.base_url, headers={"Authorization": f"Bearer {served.key}"}, timeout=30
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_user_key(served: Served, name: str, role: str = "member", **key: Any) -> str:
    """Create a user (if needed) and a key for them; the key's secret."""
    with admin(served) as client:
        client.post("/admin/users", json={"name": name, "role": role})
        reply = client.post("/admin/keys", json={"user": name, **key})
        assert reply.status_code == 201, reply.text
        secret: str = reply.json()["key"]
        return secret


def openai_client(served: Served, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.v1, api_key=key, max_retries=0)


def usage_rows(served: Served) -> list[dict[str, Any]]:
    """Every usage row, straight from the store the server writes to."""
    from sqlalchemy import select

    from inhouse.store.tables import UsageRecord

    state = served.app.state.inhouse
    with state.db.read() as session:
        rows = session.scalars(select(UsageRecord).order_by(UsageRecord.id))
        return [
            {
                "user_id": r.user_id,
                "model": r.model,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "status": r.status,
            }
            for r in rows
        ]


def open_reservations(served: Served) -> int:
    from sqlalchemy import func, select

    from inhouse.store.tables import Reservation

    with served.app.state.inhouse.db.read() as session:
        return session.scalar(select(func.count()).select_from(Reservation)) or 0
