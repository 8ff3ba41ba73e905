"""No key secret, password, session token or CSRF token is ever logged or stored as itself."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import Served, serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import admin, bearer, store_rows, wait_for_usage_rows

HI = [{"role": "user", "content": "Hi"}]
# the test's own HTTP client holds the secrets by right; what it logs is not the server's
CLIENT_LOGGERS = ("httpx", "httpcore", "openai")


@contextmanager
def every_log_record(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger at DEBUG, those that do not propagate (uvicorn's) too.

    Start it once the server runs: uvicorn configures its loggers as it starts."""
    caplog.set_level(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        caplog.set_level(logging.DEBUG, logger=logger.name)
    isolated = [logger for logger in loggers if not logger.propagate]
    for logger in isolated:
        logger.addHandler(caplog.handler)
    try:
        yield caplog.records
    finally:
        for logger in isolated:
            logger.removeHandler(caplog.handler)


def server_log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(
        formatter.format(record) for record in records if not record.name.startswith(CLIENT_LOGGERS)
    )


def use_every_kind_of_secret(served: Served) -> list[str]:
    """Create keys, sign in with passwords, use a session, send bad keys; the secrets used."""
    first, second, wrong, too_short = (
        "first password 1",
        "second password 2",
        "wrong pass 3",
        "tiny-pw!",
    )
    secrets = [first, second, wrong, too_short]
    with admin(served) as operator:
        made = operator.post("/admin/users", json={"name": "sam", "password": first})
        assert made.status_code == 201, made.text
        refused = operator.post("/admin/users", json={"name": "tom", "password": too_short})
        assert refused.status_code == 400 and too_short not in refused.text
        key = operator.post("/admin/keys", json={"user": "sam", "name": "ci"}).json()["key"]
        doomed = operator.post("/admin/keys", json={"user": "sam"}).json()
        operator.delete(f"/admin/keys/{doomed['id']}")
        secrets += [key, doomed["key"]]

        chat = {"model": "fake", "messages": HI, "max_tokens": 2}
        assert httpx.post(
            served.v1 + "/chat/completions", headers=bearer(key), json=chat
        ).is_success
        for bad in (doomed["key"], "ih-" + "Zq9" * 14, "' OR '1'='1"):
            reply = httpx.get(served.v1 + "/models", headers=bearer(bad))
            assert reply.status_code == 401
        secrets.append("ih-" + "Zq9" * 14)

        with httpx.Client(base_url=served.base_url, timeout=30) as browser:
            login = {"name": "sam", "password": wrong}
            assert browser.post("/admin/login", json=login).status_code == 401
            odd = browser.post("/admin/login", json={"name": "sam", "password": first, "x": 1})
            assert odd.status_code == 400 and first not in odd.text
            signed = browser.post("/admin/login", json={"name": "sam", "password": first})
            csrf = signed.json()["csrf_token"]
            secrets += [csrf, browser.cookies["inhouse_session"]]
            assert browser.get("/admin/me").status_code == 200
            assert browser.post("/admin/keys", json={}).status_code == 403  # no CSRF token
            own = browser.post("/admin/keys", json={}, headers={"X-CSRF-Token": csrf})
            assert own.status_code == 201
            secrets.append(own.json()["key"])

        assert operator.patch("/admin/users/sam", json={"password": second}).is_success
        with httpx.Client(base_url=served.base_url, timeout=30) as browser:
            signed = browser.post("/admin/login", json={"name": "sam", "password": second})
            csrf = signed.json()["csrf_token"]
            secrets += [csrf, browser.cookies["inhouse_session"]]
            assert browser.post("/admin/logout", headers={"X-CSRF-Token": csrf}).is_success
    wait_for_usage_rows(served, 1)
    return secrets


def test_no_secret_reaches_the_logs_the_audit_trail_or_the_store(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        serve_fake(
            tmp_path / "home",
            FakeRunner(),
            store_url=db_url,
            overrides={"auth": {"secure_cookies": False}},  # so httpx sends it over http
        ) as served,
        every_log_record(caplog) as records,
    ):
        secrets = use_every_kind_of_secret(served)
        secrets.append(served.key)
        logs = server_log_text(records)
        store = store_rows(served)

    # the capture worked: the access log and the SQL the server ran are in it
    assert '"POST /admin/login HTTP/1.1" 200' in logs
    assert "INSERT INTO api_keys" in logs
    assert store["usage"] and store["audit_log"]
    leaks = {
        secret: [where for where in ("logs", *store) if secret in _text(where, logs, store)]
        for secret in secrets
    }
    assert {secret: where for secret, where in leaks.items() if where} == {}


def _text(where: str, logs: str, store: dict[str, list[str]]) -> str:
    return logs if where == "logs" else "\n".join(store[where])
