"""/admin/models: aliases and imports from the server's import folder, for model managers only,
audited; a path out of the folder, a member, or a server without a store changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from inhouse.api.app import create_app
from inhouse.auth.directory import Directory
from inhouse.models.resolver import StoreResolver
from inhouse.models.store import ModelStore
from inhouse.store.tables import AuditEntry
from tests.conftest import Served, admin_key, fake_engine, make_settings, need, serve, serve_fake
from tests.fakes import FakeRunner
from tests.gguf_files import write_model


@dataclass
class Site:
    served: Served
    keys: dict[str, str]  # user -> API key: mia (member), carl (auditor)
    drop: Path  # models.import_dir

    def call(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.served.key}"}
        return httpx.request(method, self.served.base_url + path, headers=headers, timeout=60, **kw)

    def model_ids(self) -> dict[str, str | None]:
        client = openai.OpenAI(base_url=self.served.v1, api_key=self.served.key, max_retries=0)
        return {m.id: (m.model_extra or {}).get("alias_of") for m in client.models.list()}

    def audit(self, action: str) -> list[AuditEntry]:
        state = self.served.app.state.inhouse
        with state.db.read() as session:
            query = select(AuditEntry).where(AuditEntry.action == action)
            return list(session.scalars(query))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A server on the model store (fake engines) with an import folder and a member."""
    home, drop = tmp_path / "home", tmp_path / "drop"
    drop.mkdir()
    settings = make_settings(home, models={"import_dir": str(drop)})
    try:
        resolver = StoreResolver(ModelStore(home))
    except Exception as exc:  # the packaged default model is the store's first entry
        need(False, f"no default model: {exc}")
        raise
    app = create_app(settings, resolver=resolver, build=lambda spec: fake_engine(FakeRunner()))
    state = app.state.inhouse
    with state.db.write() as session:
        directory = Directory(session, state.audit, "cli:test")
        directory.add_user("mia")
        directory.add_user("carl", "auditor")
        keys = {user: directory.create_key(user)[1] for user in ("mia", "carl")}
    with serve(app, admin_key(app)) as served:
        yield Site(served, keys, drop)


def test_an_admin_sets_and_removes_an_alias_that_apps_follow_at_once(site: Site) -> None:
    made = site.call(
        "POST", "/admin/models/aliases", json={"alias": "assistant", "target": "smollm2"}
    )
    assert made.status_code == 201, made.text
    assert made.json() == {"alias": "assistant", "target": "smollm2", "model": "smollm2"}
    assert site.model_ids()["assistant"] == "smollm2"
    store = site.call("GET", "/admin/models/store").json()
    assert store["store"] is True and store["aliases"] == {"assistant": "smollm2"}
    [entry] = site.audit("model.alias")
    assert entry.target == "assistant" and entry.actor.startswith("user:admin")
    assert entry.ip == "127.0.0.1"

    gone = site.call("DELETE", "/admin/models/aliases/assistant")
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert "assistant" not in site.model_ids()
    assert len(site.audit("model.unalias")) == 1


def test_bad_aliases_are_typed_errors_and_change_nothing(site: Site) -> None:
    missing = site.call("POST", "/admin/models/aliases", json={"alias": "a", "target": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    shadow = site.call("POST", "/admin/models/aliases", json={"alias": "smollm2", "target": "x"})
    assert shadow.status_code == 400 and "may not shadow" in shadow.json()["error"]["message"]
    extra = site.call("POST", "/admin/models/aliases", json={"alias": "a", "target": "b", "x": 1})
    assert extra.status_code == 400
    assert site.call("DELETE", "/admin/models/aliases/nope").status_code == 404
    assert site.call("GET", "/admin/models/store").json()["aliases"] == {}
    assert site.audit("model.alias") == []


def test_an_admin_imports_a_file_of_the_import_folder(site: Site) -> None:
    write_model(site.drop / "tiny.gguf")
    (site.drop / "notes.txt").write_text("not a model")
    store = site.call("GET", "/admin/models/store").json()
    assert store["import_dir"] == str(site.drop.resolve())
    assert [f["file"] for f in store["importable"]] == ["tiny.gguf"]

    made = site.call("POST", "/admin/models/import", json={"file": "tiny.gguf", "name": "tiny"})
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "tiny" and made.json()["family"] == "llama"
    assert "tiny" in site.model_ids()
    [entry] = site.audit("model.import")
    assert entry.target == "tiny" and entry.detail["file"] == "tiny.gguf"


def test_an_import_names_a_file_of_the_folder_and_nothing_else(site: Site, tmp_path: Path) -> None:
    outside = write_model(tmp_path / "outside.gguf")
    (site.drop / "link.gguf").symlink_to(outside)
    assert site.call("GET", "/admin/models/store").json()["importable"] == []
    for file, status in (
        ("../outside.gguf", 400),
        ("tiny\x00.gguf", 400),  # a NUL byte, which no path may hold
        (str(outside), 400),
        ("link.gguf", 404),
        ("absent.gguf", 404),
    ):
        refused = site.call("POST", "/admin/models/import", json={"file": file})
        assert refused.status_code == status, (file, refused.text)
    (site.drop / "broken.gguf").write_bytes(b"not gguf at all")
    broken = site.call("POST", "/admin/models/import", json={"file": "broken.gguf"})
    assert broken.status_code == 400
    assert {"outside", "link", "broken"} & set(site.model_ids()) == set()
    assert site.audit("model.import") == []


def test_members_and_auditors_may_not_change_the_store(site: Site) -> None:
    write_model(site.drop / "tiny.gguf")
    site.call("POST", "/admin/models/aliases", json={"alias": "kept", "target": "smollm2"})
    for user in ("mia", "carl"):
        for method, path, body in (
            ("POST", "/admin/models/aliases", {"alias": "a", "target": "smollm2"}),
            ("DELETE", "/admin/models/aliases/kept", None),
            ("POST", "/admin/models/import", {"file": "tiny.gguf"}),
        ):
            refused = site.call(method, path, site.keys[user], json=body)
            assert refused.status_code == 403, (user, path, refused.text)
    assert set(site.model_ids()) & {"a", "tiny"} == set() and "kept" in site.model_ids()
    read = site.call("GET", "/admin/models/store", site.keys["carl"])  # auditors read
    assert read.status_code == 200 and read.json()["aliases"] == {"kept": "smollm2"}
    assert site.call("GET", "/admin/models/store", site.keys["mia"]).status_code == 403


def test_a_server_on_one_model_file_says_it_has_no_store(tmp_path: Path) -> None:
    with serve_fake(tmp_path / "home", FakeRunner()) as served:
        headers = {"Authorization": f"Bearer {served.key}"}
        url = served.base_url + "/admin/models"
        store = httpx.get(url + "/store", headers=headers).json()
        made = httpx.post(url + "/aliases", headers=headers, json={"alias": "a", "target": "fake"})
        imported = httpx.post(url + "/import", headers=headers, json={"file": "x.gguf"})
    assert store == {"store": False, "aliases": {}, "import_dir": None, "importable": []}
    assert made.status_code == 400 and made.json()["error"]["code"] == "no_model_store"
    assert imported.status_code == 400
