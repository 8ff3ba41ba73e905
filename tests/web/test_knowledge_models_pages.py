"""The knowledge and models pages: readers see what they may read and find it, others do not
see it at all, a manager uploads with progress, document text stays text, models are listed."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from inhouse.api.app import create_app
from inhouse.auth.directory import Directory
from inhouse.embeddings import EmbedderUnavailable
from inhouse.knowledge.connectors import SourceConfig
from inhouse.models.default import DefaultModelMissing
from inhouse.models.resolver import StoreResolver
from inhouse.models.store import ModelStore
from tests.conftest import admin_key, fake_engine, make_settings, need, serve
from tests.fakes import FakeRunner
from tests.gguf_files import write_model
from tests.web.conftest import (
    ADMIN,
    MEMBER,
    Web,
    add_user,
    photograph,
    serious_violations,
    sign_in,
)

OUTSIDER = ("bob", "bob-password-1")
FOUND = re.compile(r"[1-9]\d* passages? found\.")
SENTENCE = "Parental leave lasts sixteen weeks at full pay."
PAYLOAD = "<img src=x onerror=alert(1)>"
DOCUMENTS = {
    "leave.md": f"# Leave\n\n## Parental leave\n\n{SENTENCE}\n\n## Holidays\n\n"
    "Everyone has thirty days of holiday a year.\n",
    "payload.txt": f"{PAYLOAD} Markup in a document is quoted text, never run.\n",
}


@pytest.fixture
def library(web: Web, tmp_path: Path) -> Web:
    """`handbook`, granted to group legal (mia is in it; bob, a member too, is not)."""
    state = web.served.app.state.inhouse
    with state.db.write() as session:
        directory = Directory(session, state.audit, "cli:test")
        directory.add_group("legal")
        directory.join(MEMBER[0], "legal")
    add_user(web.served, *OUTSIDER)
    folder = tmp_path / "handbook"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text)
    state.knowledge.create("cli:test", "handbook", "legal")
    try:
        state.knowledge.add("cli:test", "handbook", folder)
    except EmbedderUnavailable as exc:
        need(False, f"the embedding model is not installed: {exc.message}")
    return web


@pytest.fixture
def store_web(tmp_path: Path) -> Iterator[Web]:
    """Fake engines over the model store (the packaged default model in it), with
    `tiny.gguf` in the import folder."""
    home, drop = tmp_path / "home", tmp_path / "drop"
    drop.mkdir()
    write_model(drop / "tiny.gguf")
    try:
        resolver = StoreResolver(ModelStore(home))
    except DefaultModelMissing as exc:
        need(False, str(exc))
    runner = FakeRunner()
    settings = make_settings(home, models={"import_dir": str(drop)})
    app = create_app(settings, resolver=resolver, build=lambda spec: fake_engine(runner))
    with serve(app, admin_key(app)) as served:
        add_user(served, *ADMIN, role="admin")
        add_user(served, *MEMBER)
        yield Web(served, runner)


def watch_for_script(page: Any) -> list[str]:
    """Dialogs opened and requests for the payload's image: any would mean markup ran."""
    seen: list[str] = []

    def dialog(opened: Any) -> None:
        seen.append(opened.message)
        opened.dismiss()

    def request(sent: Any) -> None:
        if sent.url.rstrip("/").endswith("/x"):
            seen.append(sent.url)

    page.on("dialog", dialog)
    page.on("request", request)
    return seen


def search(page: Any, query: str, mode: str = "hybrid") -> str:
    """Run the playground's search; the status line it ends with."""
    page.get_by_label("Query").fill(query)
    page.get_by_label("Mode").select_option(mode)
    status = page.locator("#search-status")
    page.get_by_role("button", name="Search").click()
    page.wait_for_function(
        "() => !document.getElementById('search-status').textContent.startsWith('Searching')"
    )
    return str(status.text_content())


def test_a_reader_sees_the_collection_and_its_documents_and_finds_a_sentence(
    library: Web, page: Any
) -> None:
    seen = watch_for_script(page)
    sign_in(page, library, MEMBER, "/knowledge")
    row = page.locator("#collections tbody tr", has_text="handbook")
    row.wait_for()
    assert "legal" in row.text_content() and "no connector" in row.text_content()
    page.get_by_role("button", name="handbook").click()
    documents = page.locator("#documents tbody tr")
    documents.first.wait_for()
    assert documents.count() == 2
    assert "indexed" in page.locator("#documents tbody tr", has_text="leave.md").text_content()
    assert "Last change" in page.locator("#connector").text_content()
    assert page.locator("#upload-form").count() == 0  # a reader uploads nothing

    assert FOUND.fullmatch(search(page, "How long is parental leave?"))
    first = page.locator("#hits li").first
    assert SENTENCE in first.text_content() and "handbook" in first.text_content()
    assert "Leave > Parental leave" in first.locator(".hit-where").text_content()

    assert FOUND.fullmatch(search(page, "markup quoted never run", "keyword"))
    assert PAYLOAD in page.locator("#hits").text_content()
    assert page.locator("main img").count() == 0
    assert seen == []
    assert serious_violations(page) == []
    photograph(page, "knowledge")


def test_a_member_without_the_grant_does_not_see_the_collection(library: Web, page: Any) -> None:
    sign_in(page, library, OUTSIDER, "/knowledge")
    page.locator("#no-collections").wait_for()
    assert "handbook" not in page.locator("main").text_content()
    assert "No passage found" in search(page, "How long is parental leave?")
    assert SENTENCE not in page.locator("main").text_content()
    assert serious_violations(page) == []


def test_a_manager_uploads_with_progress_and_sees_the_document_indexed(
    library: Web, page: Any
) -> None:
    sign_in(page, library, ADMIN, "/knowledge")
    page.get_by_role("button", name="handbook").click()
    page.locator("#documents tbody tr").first.wait_for()
    progress = page.get_by_label("Upload progress")
    assert progress.get_attribute("value") == "0"
    text = b"# Travel\n\nTrain tickets are refunded within ten days.\n"
    page.get_by_label("Upload files").set_input_files(
        {"name": "travel.md", "mimeType": "text/markdown", "buffer": text}
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    status = page.locator("#upload-status")
    page.wait_for_function(
        "() => /indexed|failed/.test(document.getElementById('upload-status').textContent)"
    )
    assert status.text_content() == "travel.md: indexed, 1 chunk"
    assert progress.evaluate("element => element.value") == 100
    row = page.locator("#documents tbody tr", has_text="travel.md")
    row.wait_for()
    assert "indexed" in row.text_content()
    documents = page.locator("#collections tbody tr", has_text="handbook").locator("td").nth(1)
    page.wait_for_function(
        "() => document.querySelector('#collections td:nth-of-type(2)').textContent === '3'"
    )
    assert documents.text_content() == "3"
    # an admin manages the collection but reads nothing of it: no grant to a group of theirs
    assert "No passage found" in search(page, "train tickets refunded")
    assert serious_violations(page) == []


def test_a_manager_sees_a_connectors_status_and_syncs_it_now(
    library: Web, page: Any, tmp_path: Path
) -> None:
    source = tmp_path / "crm.db"
    with sqlite3.connect(source) as connection:
        connection.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, notes TEXT)")
        connection.executemany("INSERT INTO accounts VALUES (?, ?)", [(1, "Tapirs"), (2, "Yaks")])
    connection.close()
    config = SourceConfig(f"sqlite:///{source}", tables=("accounts",))
    library.served.app.state.inhouse.knowledge.connect("cli:test", "crm", config, group="legal")
    sign_in(page, library, ADMIN, "/knowledge")
    page.get_by_role("button", name="crm").click()
    connector = page.locator("#connector")
    page.wait_for_function("() => /Status/.test(document.getElementById('connector').textContent)")
    assert "never" in connector.text_content() and "crm.db: accounts" in connector.text_content()

    page.get_by_role("button", name="Sync now").click()
    page.get_by_text("Sync of crm finished.").wait_for()
    assert "Statusok" in connector.text_content()
    assert "2 rows seen, 2 changed, 0 removed, 0 failed" in connector.text_content()
    expect(page.locator("#documents tbody tr")).to_have_count(2)  # reloaded after the sync

    source.unlink()  # the source goes away: the sync fails, and the page says why
    page.get_by_role("button", name="Sync now").click()
    page.wait_for_function(
        "() => /Statusfailed/.test(document.getElementById('connector').textContent)"
    )
    error = connector.locator("dt:text-is('Last error') + dd").text_content()
    assert error and error != "none"
    expect(page.locator("#documents tbody tr")).to_have_count(2)  # the index keeps what it had
    assert serious_violations(page) == []


def test_the_models_page_lists_the_model_and_says_when_there_is_no_store(
    web: Web, page: Any
) -> None:
    sign_in(page, web, MEMBER, "/models")
    row = page.locator("#models tbody tr", has_text="fake")
    row.wait_for()
    assert row.locator("th").text_content() == "fake"
    page.wait_for_function("() => document.getElementById('memory-total').textContent !== ''")
    assert "1 loaded" in page.locator("#memory-total").text_content()
    assert "yes, context 4096" in row.text_content()  # the default model is loaded at start
    assert page.locator("#alias-form").count() == 0  # members change nothing
    assert serious_violations(page) == []

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(web.url + "/login")
    sign_in(page, web, ADMIN, "/models")
    note = page.locator("#import-note")
    page.wait_for_function("() => document.getElementById('import-note').textContent !== ''")
    assert "no model store" in note.text_content()
    assert page.locator("#alias-form").is_hidden()
    assert serious_violations(page) == []


def test_an_admin_sets_an_alias_and_imports_a_model_from_the_page(
    store_web: Web, page: Any
) -> None:
    sign_in(page, store_web, ADMIN, "/models")
    page.locator("#models tbody tr", has_text="smollm2").wait_for()
    page.get_by_label("Alias", exact=True).fill("assistant")
    page.get_by_label("Points to").select_option("smollm2")
    page.get_by_role("button", name="Set alias").click()
    alias = page.locator("#models tbody tr", has_text="assistant")
    alias.wait_for()
    assert alias.locator("td").first.text_content() == "smollm2"
    assert "now points to smollm2" in page.locator("#alias-status").text_content()
    assert "assistant → smollm2" in page.locator("#alias-list").text_content()

    page.get_by_label("GGUF file in the import folder").select_option("tiny.gguf")
    page.get_by_label("Name (optional)").fill("tiny")
    page.get_by_role("button", name="Import").click()
    page.locator("#models tbody tr", has_text="tiny").wait_for()
    assert page.locator("#import-status").text_content() == "Imported tiny.gguf."
    assert serious_violations(page) == []
    photograph(page, "models")

    page.get_by_role("button", name="Remove alias assistant").click()
    alias.wait_for(state="detached")
    assert "Removed the alias assistant." in page.locator("#alias-status").text_content()
