"""The embeddable widget in Chromium, on a host page served from a second local origin:
from an allowed origin the branded bubble opens a frame whose chat streams an answer; from
another origin the frame is refused and no answer can appear."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import ADMIN, Web, photograph, serious_violations, sign_in

TITLE = "Ask Acme"
COLOUR = "#aa3300"  # rgb(170, 51, 0)


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def host_site(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A plain web server for the customer's page, on a port of its own (a second origin)."""
    root = tmp_path / "site"
    root.mkdir()
    handler = functools.partial(Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, server.server_address[1]
    server.shutdown()
    server.server_close()


def embed(web: Web, site: tuple[Path, int]) -> None:
    """A widget allowed on http://localhost:<port> only, and a page that includes its snippet."""
    root, port = site
    body = {
        "name": "Acme shop",
        "model": "fake",
        "origins": [f"http://localhost:{port}"],
        "requests_per_minute": 20,
        "branding": {"title": TITLE, "primary_colour": COLOUR, "welcome_text": "Hi! Ask us."},
    }
    headers = {"Authorization": f"Bearer {web.served.key}"}
    made = httpx.post(web.url + "/admin/widgets", json=body, headers=headers)
    assert made.status_code == 201, made.text
    page = '<!doctype html><html lang="en"><head><title>Acme shop</title></head><body>'
    page += f"<main><h1>Acme shop</h1><p>Our products.</p></main>{made.json()['snippet']}"
    (root / "index.html").write_text(page + "</body></html>")


def test_the_widget_chats_from_an_allowed_origin(
    web: Web, host_site: tuple[Path, int], page: Any
) -> None:
    embed(web, host_site)
    page.goto(f"http://localhost:{host_site[1]}/index.html")
    bubble = page.get_by_role("button", name=f"Open chat: {TITLE}")
    colour = bubble.evaluate("b => getComputedStyle(b).backgroundColor")
    assert colour == "rgb(170, 51, 0)"
    bubble.focus()
    page.keyboard.press("Enter")  # a real button: the keyboard opens it
    frame = page.frame_locator(f'iframe[title="{TITLE}"]')
    frame.get_by_role("heading", name=TITLE).wait_for()
    assert "Hi! Ask us." in frame.locator("#widget-log").text_content()
    head = frame.locator(".widget-head").evaluate("h => getComputedStyle(h).backgroundColor")
    assert head == "rgb(170, 51, 0)"
    frame.get_by_label("Your message").fill("What do you sell?")
    frame.get_by_label("Your message").press("Enter")
    answer = frame.locator(".widget-message.assistant")
    frame.locator(".widget-message.assistant:not([aria-busy])").wait_for(timeout=30_000)
    assert answer.text_content().startswith("Hello **world**")
    assert frame.locator(".widget-message.user").text_content() == "What do you sell?"
    inner = next(f for f in page.frames if f.url.startswith(web.url + "/widget/"))
    assert serious_violations(inner) == []
    photograph(page, "widget")
    frame.get_by_label("Your message").press("Escape")  # Escape closes, focus back on bubble
    closed = page.get_by_role("button", name=f"Open chat: {TITLE}")
    # the frame asks the host page to close it by postMessage, delivered in a later task
    expect(closed).to_have_attribute("aria-expanded", "false")
    expect(closed).to_be_focused()
    expect(page.locator("iframe")).to_be_hidden()


def test_the_widget_is_refused_on_another_origin(
    web: Web, host_site: tuple[Path, int], page: Any
) -> None:
    embed(web, host_site)
    page.goto(f"http://127.0.0.1:{host_site[1]}/index.html")  # same page, other origin
    with page.expect_response(lambda r: r.url.startswith(web.url + "/widget/")) as loaded:
        page.get_by_role("button", name=f"Open chat: {TITLE}").click()
    assert "/frame" in loaded.value.url and loaded.value.status == 403
    page.locator("iframe").wait_for(state="attached")
    page.wait_for_load_state("load")
    frame = page.frame_locator(f'iframe[title="{TITLE}"]')
    assert frame.get_by_label("Your message").count() == 0
    assert frame.locator(".widget-message").count() == 0


def test_an_admin_creates_a_widget_and_copies_its_snippet(web: Web, page: Any) -> None:
    sign_in(page, web, ADMIN, "/manage/widgets")
    page.get_by_label("Name", exact=True).fill("Help desk")
    page.get_by_label("Model", exact=True).select_option("fake")
    page.get_by_label("Allowed sites, one per line").fill("https://www.example.com")
    page.get_by_label("Requests per minute").fill("12")
    page.get_by_label("Title (empty: the product name)").fill("Ask us")
    page.get_by_role("button", name="Create widget").click()
    snippet = page.get_by_label("Snippet")
    snippet.wait_for()
    assert 'data-token="ihw-' in snippet.input_value()
    assert "/widget/wgt_" in snippet.input_value()
    row = page.locator("#widget-rows tr", has_text="Help desk")
    row.wait_for()
    assert "https://www.example.com" in row.text_content() and "12/min" in row.text_content()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy snippet").click()
    page.get_by_text("Copied.").wait_for()
    assert serious_violations(page) == []
    photograph(page, "widgets")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete widget Help desk").click()
    page.get_by_text("No widgets yet.").wait_for()
    listed = httpx.get(
        web.url + "/admin/widgets", headers={"Authorization": f"Bearer {web.served.key}"}
    )
    assert listed.json()["widgets"] == []
