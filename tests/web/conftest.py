"""Browser tests: Debian's Chromium driven by Playwright against a served instance.

`web` serves the FakeRunner (model "fake") with two signed-in-able users: the admin "root"
and the member "mia" (passwords in ADMIN / MEMBER). Pages are checked with axe-core and
photographed at 1280 and 375 px into build/screenshots/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inhouse.auth.directory import Directory
from tests.conftest import Served, need, serve_fake
from tests.fakes import FakeRunner

CHROMIUM = Path(os.environ.get("INHOUSE_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
ADMIN = ("root", "root-password-1")
MEMBER = ("mia", "mia-password-1")
WIDTHS = (1280, 375)


@dataclass
class Web:
    served: Served
    runner: FakeRunner

    @property
    def url(self) -> str:
        return self.served.base_url


def add_user(served: Served, name: str, password: str, role: str = "member") -> None:
    state = served.app.state.inhouse
    with state.db.write() as session:
        Directory(session, state.audit, "test").add_user(name, role, password=password)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    runner = FakeRunner(script=b"Hello **world**, here is `code`. ")
    with serve_fake(tmp_path / "home", runner) as served:
        add_user(served, *ADMIN, role="admin")
        add_user(served, *MEMBER)
        yield Web(served, runner)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    need(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Any, web: Web, user: tuple[str, str], next_path: str = "/") -> None:
    """Sign in through the login form and wait for the page it leads to."""
    page.goto(f"{web.url}/login?next={next_path}")
    page.get_by_label("User name").fill(user[0])
    page.get_by_label("Password").fill(user[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{web.url}{next_path}")


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]

    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def photograph(page: Any, name: str) -> None:
    """Screenshots of the page at each width in WIDTHS (build/screenshots/<name>-<w>.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size(size)
