"""Bad credentials: refused with 401 everywhere, audited without the secret, and nothing changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import openai
import pytest

from tests.conftest import Served, serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import (
    admin,
    audit_entries,
    bearer,
    last_audit_seq,
    new_user_key,
    openai_client,
    store_rows,
    store_snapshot,
    store_url,
    usage_rows,
    wait_for_usage_rows,
)

HI = [{"role": "user", "content": "Hi"}]
PEER = "127.0.0.1"  # the tests' client connects over loopback
SPOOFED_IP = "203.0.113.9"
# every kind of route a stolen or forged credential could be tried on
PROBES: list[tuple[str, str, dict[str, object] | None]] = [
    ("POST", "/v1/chat/completions", {"model": "fake", "messages": HI, "max_tokens": 2}),
    ("GET", "/v1/models", None),
    ("POST", "/api/chat", {"model": "fake", "messages": HI, "stream": False}),
    ("GET", "/admin/users", None),
    ("POST", "/admin/users", {"name": "mallory", "role": "admin"}),
    ("GET", "/admin/me", None),
]


@dataclass
class Credential:
    """What a caller sends, the refusal it must get, and the secret that must not be kept."""

    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    code: str = "invalid_api_key"
    reason: str = "invalid_api_key"  # as the audit entry names it
    secret: str | None = None


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server per database, shared by this module's tests (each refusal must leave the
    store as it was; setups add only users of their own); it holds a user, a usage row and
    (PostgreSQL) a quota counter, so that "nothing changed" covers them."""
    tmp = tmp_path_factory.mktemp("credentials")
    with (
        store_url(request.param, tmp) as url,
        serve_fake(tmp / "home", FakeRunner(), store_url=url) as server,
    ):
        key = new_user_key(server, "alice", tokens_per_day=100_000)
        reply = httpx.post(
            server.v1 + "/chat/completions",
            headers=bearer(key),
            json={"model": "fake", "messages": HI, "max_tokens": 2},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        wait_for_usage_rows(server, 1)
        if request.param == "postgresql":  # SQLite keeps its quota counters in memory
            assert store_snapshot(server)["quota_counters"]
        yield server


def _key_of(served: Served, user: str, **options: object) -> tuple[str, str]:
    """(public id, secret) of a new key for `user` (created if needed)."""
    with admin(served) as client:
        client.post("/admin/users", json={"name": user})
        reply = client.post("/admin/keys", json={"user": user, **options})
        assert reply.status_code == 201, reply.text
        return reply.json()["id"], reply.json()["key"]


def _revoked(served: Served) -> Credential:
    public_id, secret = _key_of(served, "rita")
    with admin(served) as client:
        assert client.delete(f"/admin/keys/{public_id}").status_code == 200
    return Credential(
        bearer(secret), code="revoked_api_key", reason="revoked_api_key", secret=secret
    )


def _expired(served: Served) -> Credential:
    public_id, secret = _key_of(served, "eve", expires_in_days=0.00001)  # about 0.9 s
    with admin(served) as client:
        expires_at = client.get(f"/admin/keys/{public_id}").json()["expires_at"]
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    return Credential(
        bearer(secret), code="expired_api_key", reason="expired_api_key", secret=secret
    )


def _disabled(served: Served) -> Credential:
    _, secret = _key_of(served, "dave")
    with admin(served) as client:
        assert client.patch("/admin/users/dave", json={"disabled": True}).status_code == 200
    return Credential(
        bearer(secret), code="account_disabled", reason="account_disabled", secret=secret
    )


def _deleted_user(served: Served) -> Credential:
    """The key of a deleted user, after a new user took the same name."""
    _, secret = _key_of(served, "zed")
    with admin(served) as client:
        assert client.delete("/admin/users/zed").status_code == 204
        assert client.post("/admin/users", json={"name": "zed"}).status_code == 201
    return Credential(bearer(secret), secret=secret)


def _credential(served: Served, kind: str) -> Credential:
    garbage = "ih-" + "x" * 43
    simple = {
        "no key": Credential(code="invalid_api_key", reason="missing_credentials"),
        "garbage key": Credential(bearer("not-a-key-at-all"), secret="not-a-key-at-all"),
        "sql injection": Credential(bearer("' OR '1'='1"), secret="' OR '1'='1"),
        "sql injection with the key prefix": Credential(
            bearer("ih-' OR '1'='1' --"), secret="ih-' OR '1'='1' --"
        ),
        "oversized key": Credential(bearer("ih-" + "A" * 4000), secret="ih-" + "A" * 4000),
        # the admin's real key, but not as a bearer token: it must not count
        "real key in another scheme": Credential(
            {"Authorization": f"Basic {served.key}"},
            reason="missing_credentials",
            secret=served.key,
        ),
        "forged session cookie": Credential(
            cookies={"inhouse_session": "' OR '1'='1"},
            code="invalid_session",
            reason="invalid_session",
            secret="' OR '1'='1",
        ),
        "spoofed forwarding headers": Credential(
            {
                **bearer(garbage),
                "X-Forwarded-For": SPOOFED_IP,
                "X-Real-IP": SPOOFED_IP,
                "Forwarded": f"for={SPOOFED_IP}",
                "Host": "localhost",
            },
            secret=garbage,
        ),
    }
    if kind in simple:
        return simple[kind]
    made = {
        "revoked key": _revoked,
        "expired key": _expired,
        "disabled user's key": _disabled,
        "deleted user's key": _deleted_user,
    }
    return made[kind](served)


KINDS = [
    "no key",
    "garbage key",
    "sql injection",
    "sql injection with the key prefix",
    "oversized key",
    "real key in another scheme",
    "forged session cookie",
    "spoofed forwarding headers",
    "revoked key",
    "expired key",
    "disabled user's key",
    "deleted user's key",
]


def _assert_refused(reply: httpx.Response, path: str, credential: Credential) -> None:
    assert reply.status_code == 401, (path, reply.text)
    body = reply.json()
    if path.startswith("/api/"):  # Ollama's error shape
        assert isinstance(body["error"], str) and body["error"], body
    else:
        assert body["error"]["type"] == "authentication_error", body
        assert body["error"]["code"] == credential.code, body
    if credential.secret is not None:
        assert credential.secret not in reply.text


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_credential_gets_401_everywhere_and_changes_nothing(
    served: Served, kind: str
) -> None:
    credential = _credential(served, kind)
    before = store_snapshot(served)
    seen = last_audit_seq(served)
    with httpx.Client(base_url=served.base_url, cookies=credential.cookies, timeout=30) as client:
        for method, path, body in PROBES:
            reply = client.request(method, path, json=body, headers=credential.headers)
            _assert_refused(reply, path, credential)

    assert store_snapshot(served) == before  # no user, key, usage row or quota counter moved
    refusals = audit_entries(served, seen)
    assert [(e["action"], e["target"]) for e in refusals] == [
        ("auth.failed", path) for _, path, _ in PROBES
    ]
    for entry in refusals:
        assert entry["actor"] == "anonymous"
        assert entry["detail"]["reason"] == credential.reason
        assert entry["ip"] == PEER, "the audited address must be the socket's, not a header's"
    if credential.secret is not None:
        trail = "\n".join(store_rows(served)["audit_log"])
        assert credential.secret not in trail


def test_a_revoked_key_fails_on_its_very_next_request(served: Served) -> None:
    public_id, secret = _key_of(served, "rob")
    assert httpx.get(served.v1 + "/models", headers=bearer(secret)).status_code == 200
    with admin(served) as client:
        revoked = client.delete(f"/admin/keys/{public_id}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    reply = httpx.get(served.v1 + "/models", headers=bearer(secret))
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "revoked_api_key"


def test_the_openai_client_reports_a_bad_key_as_an_authentication_error(served: Served) -> None:
    before = len(usage_rows(served))
    client = openai_client(served, "ih-not-a-real-key")
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="fake", messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert info.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert len(usage_rows(served)) == before


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/admin/users"])
def test_a_malformed_body_without_credentials_is_refused_as_unauthenticated(
    served: Served, path: str
) -> None:
    """Who is calling is decided before what they sent is read: no key, no 400 to probe with."""
    seen = last_audit_seq(served)
    reply = httpx.post(
        served.base_url + path, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 401, reply.text
    assert reply.json()["error"]["type"] == "authentication_error"
    assert [e["action"] for e in audit_entries(served, seen)] == ["auth.failed"]
