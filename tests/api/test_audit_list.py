"""GET /admin/audit: the trail filtered by actor, action, target and time, newest first, paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.conftest import serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import admin, bearer, new_user_key


def test_the_trail_filters_pages_and_refuses_bad_input(db_url: str, tmp_path: Path) -> None:
    with (
        serve_fake(tmp_path / "home", FakeRunner(), store_url=db_url) as served,
        admin(served) as client,
    ):
        for name in ("ana", "ben", "cy_1", "cyx1"):
            assert client.post("/admin/users", json={"name": name, "role": "member"}).is_success
        client.post("/admin/groups", json={"name": "sales"})

        everything = client.get("/admin/audit", params={"limit": 200}).json()
        seqs = [e["seq"] for e in everything["entries"]]
        assert seqs == sorted(seqs, reverse=True) and everything["next_before"] is None
        created = client.get("/admin/audit", params={"action": "USER.cre"}).json()["entries"]
        assert [e["target"] for e in created][:4] == ["cyx1", "cy_1", "ben", "ana"]
        assert all(e["action"] == "user.create" for e in created)
        assert "T" in created[0]["time"] and isinstance(created[0]["detail"], dict)
        # LIKE wildcards in a filter are literal characters
        assert _entries(client, target="c%1") == []
        assert {e["target"] for e in _entries(client, target="cy_")} == {"cy_1"}
        actors = {e["actor"] for e in _entries(client, actor="ADMIN", action="group")}
        assert actors and all("admin" in actor.lower() for actor in actors)
        assert _entries(client, actor="nobody-did-this") == []

        first = client.get("/admin/audit", params={"limit": 2}).json()
        second = client.get(
            "/admin/audit", params={"limit": 2, "before": first["next_before"]}
        ).json()
        assert [e["seq"] for e in first["entries"] + second["entries"]] == seqs[:4]

        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        assert len(_entries(client, since="1d", until=tomorrow)) == len(seqs)
        assert _entries(client, until="2000-01-01") == []

        for params, param in (
            ({"limit": 0}, "limit"),
            ({"limit": 201}, "limit"),
            ({"since": "soon"}, "since"),
            ({"until": "later"}, "until"),
            ({"until": "9" * 400 + "d"}, "until"),
        ):
            reply = client.get("/admin/audit", params=params)
            assert reply.status_code == 400, (params, reply.text)
            assert reply.json()["error"]["param"] == param
        assert client.get("/admin/audit/verify").json()["ok"] is True
        member = new_user_key(served, "dee")
        refused = httpx.get(served.base_url + "/admin/audit", headers=bearer(member))
        assert refused.status_code == 403 and "user.create" not in refused.text


def _entries(client: httpx.Client, **params: str) -> list[dict[str, object]]:
    reply = client.get("/admin/audit", params={"limit": 200, **params})
    assert reply.status_code == 200, reply.text
    entries: list[dict[str, object]] = reply.json()["entries"]
    return entries
