"""`since` on every admin report endpoint: a window outside 1970..now is a 400 that says
why, never a 500, and the server keeps answering."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import admin

HUGE = "9" * 400 + "d"
PATHS = ["/admin/audit/export", "/admin/usage", "/admin/usage/savings"]


BAD = [
    (HUGE, "reaches back before 1970-01-01"),
    ("1000000000000w", "reaches back before 1970-01-01"),
    ("2999-01-01", "is in the future"),
    ("soon", "is neither a duration"),
]


def test_a_bad_since_is_a_400_on_every_report(db_url: str, tmp_path: Path) -> None:
    with (
        serve_fake(tmp_path / "home", FakeRunner(), store_url=db_url) as served,
        admin(served) as client,
    ):
        for since, problem in BAD:
            for path in PATHS:
                reply = client.get(path, params={"since": since})
                assert reply.status_code == 400, (since, path, reply.text)
                error = reply.json()["error"]
                assert error["param"] == "since" and problem in error["message"]
                assert error["type"] == "invalid_request_error"
                assert len(error["message"]) < 200
        assert client.get("/admin/audit/export", params={"since": "1d"}).status_code == 200
