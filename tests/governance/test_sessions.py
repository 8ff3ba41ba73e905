"""Web sign-in: a password opens a session (HttpOnly, SameSite=Strict cookie + CSRF token);
writes need the CSRF token; signing out, a new password or a disabled account end it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Served, serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import (
    admin,
    audit_entries,
    bearer,
    last_audit_seq,
    store_rows,
    store_snapshot,
    store_url,
)

PASSWORD = "correct horse battery staple"
COOKIE = "inhouse_session"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server per database, shared by this module's tests, each with users of its own;
    its cookies lack Secure, so that httpx sends them over plain http."""
    tmp = tmp_path_factory.mktemp("sessions")
    overrides = {"auth": {"secure_cookies": False}}
    with (
        store_url(request.param, tmp) as url,
        serve_fake(tmp / "home", FakeRunner(), store_url=url, overrides=overrides) as server,
    ):
        yield server


def with_password(served: Served, *names: str) -> None:
    """Create these users, each with PASSWORD."""
    with admin(served) as client:
        for name in names:
            reply = client.post("/admin/users", json={"name": name, "password": PASSWORD})
            assert reply.status_code == 201 and reply.json()["has_password"] is True


@dataclass
class Browser:
    """A browser-like client holding the session cookie, and the CSRF token sign-in returned."""

    client: httpx.Client
    csrf: str

    @property
    def token(self) -> str:
        return self.client.cookies[COOKIE]


@contextmanager
def signed_in(served: Served, name: str, password: str = PASSWORD) -> Iterator[Browser]:
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        reply = client.post("/admin/login", json={"name": name, "password": password})
        assert reply.status_code == 200, reply.text
        yield Browser(client, reply.json()["csrf_token"])


def with_token(served: Served, token: str) -> httpx.Client:
    return httpx.Client(base_url=served.base_url, headers={"Cookie": f"{COOKIE}={token}"})


def sessions_of(served: Served, name: str) -> int:
    from sqlalchemy import func, select

    from inhouse.store.tables import User, WebSession

    with served.app.state.inhouse.db.read() as session:
        query = select(func.count()).select_from(WebSession).join(User).where(User.name == name)
        return session.scalar(query) or 0


def test_a_wrong_password_gets_401_and_is_audited_without_the_password(served: Served) -> None:
    with_password(served, "wendy")
    seen = last_audit_seq(served)
    tries = [
        ("wendy", "wrong password, nearly"),  # a real user, a wrong password
        ("nobody", PASSWORD),  # no such user
        ("admin", PASSWORD),  # a user without a password
    ]
    replies = [
        httpx.post(served.base_url + "/admin/login", json={"name": n, "password": p})
        for n, p in tries
    ]
    for reply in replies:
        assert reply.status_code == 401, reply.text
        assert reply.json()["error"]["type"] == "authentication_error"
        assert reply.json()["error"]["code"] == "invalid_credentials"
        assert "set-cookie" not in reply.headers
    # the same answer whoever was tried: it does not tell which users exist
    assert len({reply.text for reply in replies}) == 1
    assert sessions_of(served, "wendy") == sessions_of(served, "admin") == 0

    failures = audit_entries(served, seen)
    assert [(e["action"], e["target"]) for e in failures] == [
        ("auth.login_failed", name) for name, _ in tries
    ]
    trail = "\n".join(store_rows(served)["audit_log"])
    assert PASSWORD not in trail and "wrong password, nearly" not in trail


def test_signing_in_sets_a_strict_http_only_cookie_and_returns_a_csrf_token(
    served: Served,
) -> None:
    with_password(served, "dana")
    seen = last_audit_seq(served)
    reply = httpx.post(
        served.base_url + "/admin/login", json={"name": "dana", "password": PASSWORD}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["user"] == "dana" and body["role"] == "member"
    csrf = body["csrf_token"]
    assert isinstance(csrf, str) and len(csrf) >= 32

    (set_cookie,) = reply.headers.get_list("set-cookie")
    name_value, *attributes = [part.strip() for part in set_cookie.split(";")]
    name, _, token = name_value.partition("=")
    assert name == COOKIE and len(token) >= 32 and token != csrf
    flags = {a.split("=")[0].lower(): a.partition("=")[2].lower() for a in attributes}
    assert "httponly" in flags
    assert flags["samesite"] == "strict"
    assert flags["path"] == "/"
    assert "secure" not in flags  # this server is configured for plain http

    assert [(e["action"], e["actor"]) for e in audit_entries(served, seen)] == [
        ("auth.login", "user:dana")
    ]
    store = "\n".join(line for rows in store_rows(served).values() for line in rows)
    for secret in (token, csrf, PASSWORD):
        assert secret not in store  # sessions are kept as hashes only
    with with_token(served, token) as client:
        me = client.get("/admin/me").json()
    assert me["user"] == "dana" and me["via"] == "session"


def test_the_session_cookie_is_secure_by_default(tmp_path: Path) -> None:
    with serve_fake(tmp_path / "home", FakeRunner()) as served:
        with_password(served, "dana")
        reply = httpx.post(
            served.base_url + "/admin/login", json={"name": "dana", "password": PASSWORD}
        )
    assert reply.status_code == 200, reply.text
    attributes = [a.strip().lower() for a in reply.headers["set-cookie"].split(";")[1:]]
    assert "secure" in attributes and "httponly" in attributes


def test_a_write_with_the_session_cookie_needs_its_csrf_token(served: Served) -> None:
    with_password(served, "carl", "cora")
    with signed_in(served, "carl") as carl, signed_in(served, "cora") as cora:
        me = carl.client.get("/admin/me")
        assert me.status_code == 200 and me.json()["user"] == "carl"
        before = store_snapshot(served)
        for header in ({}, {"X-CSRF-Token": "not-the-token"}, {"X-CSRF-Token": cora.csrf}):
            reply = carl.client.post("/admin/keys", json={"name": "csrf"}, headers=header)
            assert reply.status_code == 403, (header, reply.text)
            assert reply.json()["error"]["code"] == "csrf_failed"
        assert store_snapshot(served) == before  # no key was made

        reply = carl.client.post(
            "/admin/keys", json={"name": "csrf"}, headers={"X-CSRF-Token": carl.csrf}
        )
        assert reply.status_code == 201, reply.text
        assert reply.json()["user"] == "carl"
        # a session token is not an API key
        reply = httpx.get(served.base_url + "/admin/me", headers=bearer(carl.token))
        assert reply.status_code == 401


def test_signing_out_ends_the_session(served: Served) -> None:
    with_password(served, "lou")
    with signed_in(served, "lou") as lou:
        token = lou.token
        # signing out is a write too: a forged cross-site request must not do it
        assert lou.client.post("/admin/logout").status_code == 403
        assert lou.client.get("/admin/me").status_code == 200

        reply = lou.client.post("/admin/logout", headers={"X-CSRF-Token": lou.csrf})
        assert reply.status_code == 200 and reply.json() == {"signed_out": True}
        assert COOKIE not in lou.client.cookies  # the browser is told to drop it
    assert sessions_of(served, "lou") == 0
    with with_token(served, token) as replay:
        reply = replay.get("/admin/me")
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_session"


def refused(served: Served, token: str) -> bool:
    with with_token(served, token) as old:
        return old.get("/admin/me").status_code == 401


def can_sign_in(served: Served, name: str, password: str) -> bool:
    reply = httpx.post(served.base_url + "/admin/login", json={"name": name, "password": password})
    return reply.status_code == 200


def test_a_new_password_or_a_disabled_account_ends_every_session(served: Served) -> None:
    with_password(served, "pat", "pia")
    new = "a brand new secret"
    tokens = []
    for _ in range(2):
        with signed_in(served, "pat") as pat:
            tokens.append(pat.token)
    with signed_in(served, "pia") as pia, admin(served) as operator:
        assert operator.patch("/admin/users/pat", json={"password": new}).is_success
        assert all(refused(served, token) for token in tokens)
        assert pia.client.get("/admin/me").status_code == 200  # other users' sessions stay
        assert not can_sign_in(served, "pat", PASSWORD)

        with signed_in(served, "pat", new) as pat:
            token = pat.token
        assert operator.patch("/admin/users/pat", json={"disabled": True}).is_success
        assert refused(served, token)
        assert not can_sign_in(served, "pat", new)

        # enabling the account again does not bring its old sessions back
        assert operator.patch("/admin/users/pat", json={"disabled": False}).is_success
        assert refused(served, token)
        assert can_sign_in(served, "pat", new)


def test_failed_sign_ins_are_throttled_per_user_and_per_address(tmp_path: Path) -> None:
    limits = {"login_failures_per_user": 3, "login_failures_per_address": 5}
    overrides = {"auth": {"secure_cookies": False, **limits}}
    with serve_fake(tmp_path / "home", FakeRunner(), overrides=overrides) as served:
        with_password(served, "tess", "toby")
        seen = last_audit_seq(served)

        def login(name: str, password: str) -> httpx.Response:
            body = {"name": name, "password": password}
            return httpx.post(served.base_url + "/admin/login", json=body)

        assert [login("tess", "a wrong guess").status_code for _ in range(3)] == [401] * 3
        refused = login("tess", PASSWORD)  # now even the right password waits
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert refused.json()["error"]["code"] == "too_many_sign_in_attempts"
        assert 1 <= int(refused.headers["Retry-After"]) <= 900
        assert "set-cookie" not in refused.headers

        assert login("toby", PASSWORD).status_code == 200  # another name, same address
        assert login("toby", "a wrong guess").status_code == 401
        assert login("nobody", "a wrong guess").status_code == 401  # the 5th failure here
        assert login("toby", PASSWORD).status_code == 429  # the address is held now
        # only the attempts that were checked are audited: a storm cannot flood the trail
        actions = [e["action"] for e in audit_entries(served, seen)]
        assert actions == ["auth.login_failed"] * 3 + ["auth.login"] + ["auth.login_failed"] * 2


def test_a_password_changed_during_the_check_does_not_sign_in(db_url: str) -> None:
    from inhouse.audit.trail import AuditTrail
    from inhouse.auth.directory import Directory
    from inhouse.auth.sessions import check_password, still_valid
    from inhouse.store.db import open_database

    db = open_database(db_url)
    trail = AuditTrail(b"k" * 32, 100)
    trail.ensure_head(db)
    with db.write() as session:
        Directory(session, trail, "test").add_user("rita", password=PASSWORD)
    checked = check_password(db, "rita", PASSWORD)  # hashed outside any transaction
    assert checked is not None and check_password(db, "rita", "a wrong guess") is None
    with db.write() as session:
        assert still_valid(session, checked) is not None
        Directory(session, trail, "test").set_password("rita", "another long secret")
    with db.write() as session:
        assert still_valid(session, checked) is None
        Directory(session, trail, "test").update_user("rita", disabled=True)
    assert check_password(db, "rita", "another long secret") is None
    db.close()
