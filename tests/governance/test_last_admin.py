"""The server always keeps an enabled admin: removing, demoting or disabling the last one is
refused (409, code last_admin) and changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import admin, store_snapshot


def refused(reply: httpx.Response) -> bool:
    error = reply.json()["error"]
    return (
        reply.status_code == 409
        and error["code"] == "last_admin"
        and "last enabled admin" in error["message"]
    )


def test_the_last_enabled_admin_cannot_be_removed_demoted_or_disabled(
    db_url: str, tmp_path: Path
) -> None:
    with (
        serve_fake(tmp_path / "home", FakeRunner(), store_url=db_url) as served,
        admin(served) as client,  # the bootstrap key of the user "admin"
    ):
        before = store_snapshot(served)
        assert refused(client.patch("/admin/users/admin", json={"role": "member"}))
        assert refused(client.patch("/admin/users/admin", json={"role": "auditor"}))
        assert refused(client.patch("/admin/users/admin", json={"disabled": True}))
        assert refused(client.delete("/admin/users/admin"))
        assert store_snapshot(served) == before
        assert client.get("/admin/users/admin").json()["role"] == "admin"

        # a second admin who is disabled does not count: nobody could sign in as them
        made = client.post("/admin/users", json={"name": "second", "role": "admin"})
        assert made.status_code == 201, made.text
        assert client.patch("/admin/users/second", json={"disabled": True}).status_code == 200
        assert refused(client.patch("/admin/users/admin", json={"role": "member"}))
        # changes that keep an enabled admin are fine
        assert client.patch("/admin/users/admin", json={"role": "admin"}).status_code == 200
        assert client.patch("/admin/users/second", json={"disabled": False}).status_code == 200
        demoted = client.patch("/admin/users/second", json={"role": "member"})
        assert demoted.status_code == 200 and demoted.json()["role"] == "member"
        assert client.patch("/admin/users/second", json={"role": "admin"}).status_code == 200
        assert client.patch("/admin/users/admin", json={"role": "member"}).status_code == 200
