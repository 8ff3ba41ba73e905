"""The shell every page shares: sign-in, the refusal pages, the security headers, branding."""

from __future__ import annotations

import html
from typing import Any

import httpx
import pytest

from inhouse.api.web.access import local_path
from inhouse.api.web.render import NAVIGATION
from inhouse.auth.sessions import COOKIE
from tests.web.conftest import ADMIN, MEMBER, Web, photograph, serious_violations, sign_in


def test_every_page_and_asset_carries_a_csp_with_no_other_origin(web: Web) -> None:
    login = {"name": ADMIN[0], "password": ADMIN[1]}
    reply = httpx.post(web.url + "/admin/login", json=login)
    assert reply.is_success
    # the cookie is Secure: httpx keeps it off plain http, where browsers send it to loopback
    cookie = f"{COOKIE}={reply.cookies[COOKIE]}"
    signed_in = httpx.Client(base_url=web.url, headers={"cookie": cookie})
    pages = [item.path for item in NAVIGATION]  # every page of the app, as an admin sees it
    for path in ("/login", "/account", *pages, "/static/app.js", "/brand.css", "/health"):
        response = signed_in.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert "http" not in policy and "unsafe-inline" not in policy, path
        assert response.headers["x-content-type-options"] == "nosniff"
    signed_in.close()


def test_a_visitor_is_sent_to_sign_in_and_back(web: Web, page: Any) -> None:
    page.goto(web.url + "/account")
    assert page.url.startswith(web.url + "/login?next=/account")
    assert serious_violations(page) == []
    photograph(page, "login")
    page.get_by_label("User name").fill(MEMBER[0])
    page.get_by_label("Password").fill(MEMBER[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(web.url + "/account")
    assert "member" in page.text_content("main")
    assert serious_violations(page) == []


def test_a_wrong_password_is_said_on_the_form(web: Web, page: Any) -> None:
    page.goto(web.url + "/login")
    page.get_by_label("User name").fill(MEMBER[0])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "Wrong user name or password" in alert.text_content()
    assert "/login" in page.url


def test_branding_comes_from_settings_and_is_never_markup(tmp_path: Any) -> None:
    from tests.conftest import serve_fake
    from tests.fakes import FakeRunner

    branding = {"product_name": "Acme <b>AI</b>", "primary_colour": "#aa0000"}
    with serve_fake(tmp_path / "h", FakeRunner(), overrides={"branding": branding}) as served:
        html = httpx.get(served.base_url + "/login").text
        css = httpx.get(served.base_url + "/brand.css").text
    assert "Acme &lt;b&gt;AI&lt;/b&gt;" in html and "<b>AI</b>" not in html
    assert "--brand: #aa0000;" in css


def test_an_admin_signs_in_and_out(web: Web, page: Any) -> None:
    sign_in(page, web, ADMIN, "/account")
    assert "admin" in page.text_content("main")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(web.url + "/login")
    assert page.goto(web.url + "/account").url.startswith(web.url + "/login")


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/manage/users?x=1", "/manage/users?x=1"),
        ("//evil.example/x", "/"),
        ("/\\evil.example/x", "/"),  # browsers read a backslash as a slash
        ("/\t/evil.example/x", "/"),  # and drop tabs and newlines
        ("https://evil.example/", "/"),
        ("evil.example", "/"),
    ],
)
def test_sign_in_returns_only_to_a_path_of_this_site(web: Web, asked: str, kept: str) -> None:
    page = httpx.get(web.url + "/login", params={"next": asked})
    assert f'data-next="{html.escape(kept)}"' in page.text
    assert local_path(asked) == kept
