"""/v1/knowledge over HTTP: the CLI's rules per caller, uploads streamed within their limit,
deletion that leaves no trace, and nothing readable by those who may not read it."""

from __future__ import annotations

import socket
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, select, text

from inhouse.auth.directory import Directory
from inhouse.embeddings.minilm import MiniLMEmbedder
from inhouse.knowledge.connectors import SourceConfig
from inhouse.knowledge.uploads import PART_SUFFIX
from tests.conftest import Served, serve_fake, wait_for
from tests.fakes import FakeRunner
from tests.knowledge.test_deletion import CANARY, TRACES

LIMIT = 2**20  # knowledge.max_file_mb = 1
BODY_LIMIT = 64 * 1024  # server.max_body_bytes: uploads may be far larger
BODY_TIMEOUT_S = 2.0
PUBLIC = "# Canteen\n\nThe canteen serves soup on Mondays and fish on Fridays."


@dataclass
class Site:
    served: Served
    keys: dict[str, str]  # user -> API key
    home: Path
    root: Path  # everything the test wrote: data directory and database

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        url = self.served.v1 + "/knowledge" + path
        return httpx.request(method, url, headers=headers, timeout=60, **kwargs)

    def upload(self, who: str, collection: str, name: str, data: bytes) -> httpx.Response:
        files = {"file": (name, data, "application/octet-stream")}
        return self.call(who, "POST", f"/collections/{collection}/documents", files=files)

    def search(self, who: str, query: str, **body: Any) -> list[dict[str, Any]]:
        response = self.call(who, "POST", "/search", json={"query": query, "top_k": 10, **body})
        assert response.status_code == 200, response.text
        hits: list[dict[str, Any]] = response.json()["data"]
        return hits


def people(directory: Directory) -> dict[str, str]:
    for group in ("legal", "staff"):
        directory.add_group(group)
    directory.add_user("lena", groups=["legal", "staff"])
    directory.add_user("bob", groups=["staff"])
    directory.add_user("root", role="admin")  # manages everything, in no group
    return {user: directory.create_key(user)[1] for user in ("lena", "bob", "root")}


@pytest.fixture
def site(db_url: str, tmp_path: Path, embedder: MiniLMEmbedder) -> Iterator[Site]:
    """The app (fake LLM, real embedder) with two collections: `contracts` (legal) holding
    the canary, `public` (staff) holding a menu."""
    home = tmp_path / "home"
    overrides = {
        "knowledge": {"max_file_mb": LIMIT / 2**20},
        "server": {"max_body_bytes": BODY_LIMIT, "body_timeout_s": BODY_TIMEOUT_S},
    }
    with serve_fake(home, FakeRunner(), store_url=db_url, overrides=overrides) as served:
        state = served.app.state.inhouse
        with state.db.write() as session:
            keys = people(Directory(session, state.audit, "cli:test"))
        site = Site(served, keys, home, tmp_path)
        for name, group in (("contracts", "legal"), ("public", "staff")):
            created = site.call("root", "POST", "/collections", json={"name": name, "group": group})
            assert created.status_code == 201, created.text
        assert site.upload("root", "contracts", "accord.md", f"# Accord\n\n{CANARY}".encode())
        assert site.upload("root", "public", "menu.md", PUBLIC.encode()).status_code == 200
        yield site


def leaked(body: str) -> bool:
    return any(t.decode() in body.lower() for t in TRACES)


def test_a_member_finds_granted_content_only(site: Site) -> None:
    hits = site.search("lena", CANARY)
    assert hits[0]["collection"] == "contracts" and hits[0]["snippet"].endswith(CANARY)
    assert hits[0]["source"] == "accord.md" and hits[0]["location"]["headings"] == ["Accord"]
    bob = site.call("bob", "POST", "/search", json={"query": CANARY, "top_k": 10})
    assert bob.status_code == 200 and not leaked(bob.text)
    assert {h["collection"] for h in bob.json()["data"]} == {"public"}


def test_a_forbidden_collection_behaves_as_one_that_does_not_exist(site: Site) -> None:
    everything = site.search("bob", CANARY)
    assert site.search("bob", CANARY, collections=["contracts"]) == []
    assert site.search("bob", CANARY, collections=["no-such"]) == []
    listed = site.call("bob", "GET", "/collections").json()["data"]
    assert [c["name"] for c in listed] == ["public"]
    for suffix in ("", "/documents", "/sync"):
        hidden = site.call("bob", "GET", f"/collections/contracts{suffix}")
        missing = site.call("bob", "GET", f"/collections/no-such{suffix}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["error"]["message"].replace("contracts", "X") == missing.json()[
            "error"
        ]["message"].replace("no-such", "X")
    assert site.call("root", "DELETE", "/collections/contracts").json()["deleted"] is True
    assert site.search("bob", CANARY) == everything  # same count, same order, same scores


def test_an_admin_without_a_grant_manages_but_cannot_read(site: Site) -> None:
    assert site.search("root", CANARY) == []
    assert site.search("root", CANARY, collections=["contracts"]) == []
    listed = site.call("root", "GET", "/collections").json()["data"]
    assert {c["name"]: c["chunks"] for c in listed} == {"contracts": 1, "public": 1}
    for path in ("/collections", "/collections/contracts", "/collections/contracts/documents"):
        response = site.call("root", "GET", path)
        assert response.status_code == 200 and not leaked(response.text)
    managed = site.call("root", "GET", "/collections/contracts/documents").json()["data"]
    read = site.call("lena", "GET", "/collections/contracts/documents").json()["data"]
    assert [d["source"] for d in managed] == ["accord.md"] and managed[0]["title"] is None
    assert read[0]["title"] == "Accord"  # taken from the text: for readers only
    sync = site.call("root", "GET", "/collections/contracts/sync").json()
    assert sync["documents"] == 1 and sync["last_change_at"] > 0
    # members may read, never manage
    refused = site.upload("lena", "contracts", "x.md", b"# X\n\nmine")
    assert refused.status_code == 403 and refused.json()["error"]["type"]


def test_uploads_larger_than_the_body_limit_work_up_to_their_own(site: Site) -> None:
    data = b"A small note about the weekly meeting.\n"
    exact = data + b" " * (LIMIT - len(data))
    ok = site.upload("root", "public", "big.txt", exact)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "indexed" and ok.json()["size"] == LIMIT
    over = site.upload("root", "public", "bigger.txt", exact + b" ")
    assert over.status_code == 413 and over.json()["error"]["type"] == "invalid_request_error"
    way_over = site.upload("root", "public", "huge.txt", exact * 3)  # by its Content-Length
    assert way_over.status_code == 413
    documents = site.call("root", "GET", "/collections/public/documents").json()["data"]
    assert sorted(d["source"] for d in documents) == ["big.txt", "menu.md"]
    assert not list(site.home.rglob(f"*{PART_SUFFIX}"))  # nothing half-written is left
    # every other route keeps the small limit
    big_json = site.call("bob", "POST", "/search", json={"query": "x" * BODY_LIMIT})
    assert big_json.status_code == 413


def test_a_file_name_is_data_never_a_path(site: Site) -> None:
    content = b"# Escape\n\nThis file tried to climb out of the data directory."
    response = site.upload("root", "public", "../../../../tmp/evil.md", content)
    assert response.status_code == 200 and response.json()["source"] == "evil.md"
    assert not list(site.root.parent.rglob("evil.md"))
    folder = site.home / "knowledge"
    stored = [p for p in folder.rglob("*") if p.is_file() and p.read_bytes() == content]
    assert len(stored) == 1 and len(stored[0].name) == 64  # its content hash
    assert stat.S_IMODE(stored[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(stored[0].parent.stat().st_mode) == 0o700
    nameless = site.upload("root", "public", "../", content)
    assert nameless.status_code == 400


def test_a_parse_failure_is_reported_and_the_next_upload_works(site: Site) -> None:
    broken = site.upload("root", "public", "scan.pdf", b"%PDF-1.7 not really a pdf")
    assert broken.status_code == 200
    assert broken.json()["status"] == "failed" and broken.json()["error"]
    assert broken.json()["chunks"] == 0
    good = site.upload("root", "public", "hours.md", b"# Hours\n\nThe library opens at nine.")
    assert good.json()["status"] == "indexed" and good.json()["chunks"] == 1
    assert site.search("bob", "when does the library open")[0]["source"] == "hours.md"
    kept = [p.read_bytes() for p in (site.home / "knowledge").rglob("*") if p.is_file()]
    assert b"%PDF-1.7 not really a pdf" not in kept  # only indexed files are kept


def test_changes_are_audited_with_the_callers_name_and_address(site: Site) -> None:
    state = site.served.app.state.inhouse
    with state.db.read() as session:
        rows = session.execute(
            text("select actor, action, ip from audit_log where action like 'knowledge.%'")
        ).all()
    uploads = [r for r in rows if r.action == "knowledge.document.added"]
    assert len(uploads) == 2 and all(r.ip == "127.0.0.1" for r in uploads)
    assert all(r.actor.startswith("user:root ") for r in uploads)
    assert any(r.action == "knowledge.create" and r.ip == "127.0.0.1" for r in rows)


def traces(site: Site) -> list[str]:
    """Every row of every table and every file (database, WAL, data directory) holding a
    word of the canary."""
    db = site.served.app.state.inhouse.db
    if db.dialect == "sqlite":
        with db.engine.connect() as connection:
            connection.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    metadata = MetaData()
    metadata.reflect(db.engine)
    found = []
    with db.read() as session:
        for table in metadata.sorted_tables:
            for row in session.execute(select(table)):
                found += [table.name for t in TRACES if t in repr(tuple(row)).lower().encode()]
    for path in site.root.rglob("*"):
        if path.is_file():
            found += [str(path) for t in TRACES if t in path.read_bytes().lower()]
    return found


@pytest.mark.parametrize("what", ["document", "collection"])
def test_deleting_leaves_no_trace_in_tables_or_files(site: Site, what: str) -> None:
    assert traces(site)  # the checks see the canary while it is there
    documents = site.call("root", "GET", "/collections/contracts/documents").json()["data"]
    path = "/collections/contracts"
    if what == "document":
        path += f"/documents/{documents[0]['id']}"
    response = site.call("root", "DELETE", path)
    assert response.status_code == 200 and response.json()["deleted"] is True
    assert traces(site) == []
    assert site.search("lena", "soup on Mondays")[0]["source"] == "menu.md"  # the rest stays


def test_sync_status_and_a_sync_on_demand(site: Site, tmp_path: Path) -> None:
    source = tmp_path / "crm.db"
    with sqlite3.connect(source) as c:
        c.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, notes TEXT)")
        c.executemany("INSERT INTO accounts VALUES (?, ?)", [(1, "Tapir farm"), (2, "Llamas")])
    c.close()
    config = SourceConfig(f"sqlite:///{source}", tables=("accounts",))
    site.served.app.state.inhouse.knowledge.connect("cli:test", "crm", config, group="legal")
    assert site.call("lena", "POST", "/collections/crm/sync").status_code == 403
    ran = site.call("root", "POST", "/collections/crm/sync")
    assert ran.status_code == 200, ran.text
    assert ran.json()["documents"] == 2 and ran.json()["sync"]["status"] == "ok"
    assert ran.json()["sync"]["url"].startswith("sqlite")  # managers see the source
    read = site.call("lena", "GET", "/collections/crm/sync").json()
    assert read["sync"]["rows_seen"] == 2 and "url" not in read["sync"]  # readers: how it went
    assert "url" not in str(site.call("lena", "GET", "/collections").json())
    assert site.call("bob", "GET", "/collections/crm/sync").status_code == 404
    plain = site.call("lena", "GET", "/collections/contracts/sync").json()
    assert plain["sync"] is None and plain["documents"] == 1


def partial_upload(site: Site) -> socket.socket:
    """A connection that sends the start of an upload, then nothing more."""
    port = int(site.served.base_url.rsplit(":", 1)[1])
    form = b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.md"\r\n\r\n'
    head = (
        "POST /v1/knowledge/collections/public/documents HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {site.keys['root']}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
    )
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    client.sendall(head.encode() + form + b"# Slow\n\nand then nothing")
    return client


def test_a_stalled_upload_gets_408_and_leaves_nothing(site: Site) -> None:
    with partial_upload(site) as client:
        status_line = client.recv(65536).split(b"\r\n", 1)[0]
    assert b" 408 " in status_line
    assert not list(site.home.rglob(f"*{PART_SUFFIX}"))
    names = [
        d["source"]
        for d in site.call("root", "GET", "/collections/public/documents").json()["data"]
    ]
    assert names == ["menu.md"]


def test_an_upload_without_credentials_is_refused_before_its_body_is_read(site: Site) -> None:
    url = site.served.v1 + "/knowledge/collections/public/documents"
    refused = httpx.post(url, files={"file": ("a.md", b"# A\n\nhello")})
    assert refused.status_code == 401
    assert site.upload("bob", "public", "a.md", b"# A\n\nhello").status_code == 403
    assert not list(site.home.rglob(f"*{PART_SUFFIX}"))


def test_a_client_gone_mid_upload_leaves_nothing_and_the_next_works(site: Site) -> None:
    with partial_upload(site):
        wait_for(lambda: bool(list(site.home.rglob(f"*{PART_SUFFIX}"))))
    wait_for(lambda: not list(site.home.rglob(f"*{PART_SUFFIX}")))
    after = site.upload("root", "public", "next.md", b"# Next\n\nStill serving.")
    assert after.json()["status"] == "indexed"
