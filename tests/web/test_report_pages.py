"""Admin report pages: usage and savings charts, the audit trail with filters and Verify, the
doctor's checks; a member is refused each of them."""

from __future__ import annotations

from typing import Any

import openai

from inhouse.api.web.reports import AUDIT_PAGE
from tests.governance.helpers import admin, new_user_key
from tests.web.conftest import ADMIN, MEMBER, Web, photograph, serious_violations, sign_in

PAGES = ("/manage/usage", "/manage/audit", "/manage/system")
MARKUP = '<b>bold</b><img src="x">'


def _chat(web: Web, key: str, times: int) -> None:
    client = openai.OpenAI(base_url=web.served.v1, api_key=key, max_retries=0)
    for i in range(times):
        reply = client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=8
        )
        assert reply.choices[0].message.content
    web.served.app.state.inhouse.governance.writer.flush()  # usage rows are written after replies


def _complain(complaints: list[str], message: Any) -> None:
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        complaints.append(message.text)


def _bar_widths(page: Any, section: str) -> list[float]:
    bars = page.locator(f"{section} svg rect.bar")
    return [float(bars.nth(i).get_attribute("width")) for i in range(bars.count())]


def test_usage_and_savings_render_as_charts_and_tables(web: Web, page: Any) -> None:
    _chat(web, web.served.key, 3)
    _chat(web, new_user_key(web.served, MEMBER[0]), 2)
    # a CSP refusal (of a style attribute, say) is a console error; failed loads are checked
    # by their responses (the browser's own /favicon.ico request has none to see)
    complaints: list[str] = []
    page.on("console", lambda m: _complain(complaints, m))
    page.on("response", lambda r: complaints.append(r.url) if r.status >= 400 else None)
    sign_in(page, web, ADMIN, "/manage/usage")

    assert page.locator("svg[role='img']").count() == 7  # 2 per breakdown and the savings
    users = page.locator("#usage-users")
    assert MEMBER[0] in users.locator("table").text_content()
    assert len(_bar_widths(page, "#usage-users")) >= 2 + 2  # prompt + completion, 2 users
    assert all(width > 0 for width in _bar_widths(page, "#usage-users"))
    assert "fake" in page.locator("#usage-models svg rect.bar title").first.text_content()
    assert page.locator("#usage-days svg polyline.line").count() == 3
    assert "5" in page.locator("#usage-models table tbody tr").first.text_content()

    apis = page.locator("#savings-by-api tbody tr").count()
    assert apis >= 2
    savings = page.locator("#savings svg")
    assert savings.locator("rect.bar").count() == apis  # each API and "here"
    assert "here (this machine)" in savings.text_content()
    assert "savings" not in (savings.get_attribute("style") or "")
    assert serious_violations(page) == []
    photograph(page, "usage")

    page.get_by_label("Period").select_option("7d")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/manage/usage?period=7d")
    assert "Last 7 days" in page.locator(".summary").text_content()
    assert page.locator("#usage-days svg circle.point").count() == 3 * 8  # 8 days, 3 series
    assert complaints == []


def test_the_audit_trail_filters_pages_and_verifies(web: Web, page: Any) -> None:
    with admin(web.served) as client:
        for i in range(AUDIT_PAGE):
            assert client.post("/admin/users", json={"name": f"u{i}", "role": "member"}).is_success
        # a failed sign-in is audited with the name as typed: markup from a stranger
        refused = client.post("/admin/login", json={"name": MARKUP, "password": "guess"})
        assert refused.status_code == 401
    sign_in(page, web, ADMIN, "/manage/audit")
    assert MARKUP in page.locator("#audit-entries").text_content()  # shown as text, not markup
    assert page.locator("#audit-entries img, #audit-entries b").count() == 0
    rows = page.locator("#audit-entries tbody tr")
    assert rows.count() == AUDIT_PAGE
    last_seq = int(rows.last.locator("td").first.text_content())
    page.get_by_role("link", name="Older entries").click()
    page.wait_for_url("**/manage/audit?before=*")
    assert 1 <= rows.count() < AUDIT_PAGE
    assert int(rows.first.locator("td").first.text_content()) == last_seq - 1
    page.get_by_role("link", name="Newest entries").click()
    page.wait_for_url(web.url + "/manage/audit")

    page.get_by_label("Action").fill("user.cre")
    page.get_by_label("Target").fill(MEMBER[0])
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/manage/audit?*action=user.cre*")
    assert rows.count() == 1
    assert "user.create" in rows.first.text_content() and MEMBER[0] in rows.first.text_content()
    assert page.get_by_label("Target").input_value() == MEMBER[0]

    page.get_by_role("button", name="Verify the trail").click()
    result = page.locator("#verify-result")
    result.filter(has_text="Intact").wait_for()
    assert "entries" in result.text_content()
    assert serious_violations(page) == []
    photograph(page, "audit")

    page.get_by_label("Since").fill("someday")
    page.get_by_role("button", name="Filter").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "since" in alert.text_content() and rows.count() == 0


def test_system_shows_the_doctor_and_a_member_is_refused_every_report(
    web: Web, page: Any, browser: Any
) -> None:
    sign_in(page, web, ADMIN, "/manage/system")
    checks = page.locator(".checks li")
    assert checks.count() >= 3
    statuses = {checks.nth(i).locator("span").text_content() for i in range(checks.count())}
    assert statuses <= {"✓ OK", "! Warning", "✗ Failed"} and statuses
    assert "passed" in page.locator(".summary").text_content()
    assert serious_violations(page) == []
    photograph(page, "system")

    context = browser.new_context()
    member = context.new_page()
    try:
        sign_in(member, web, MEMBER, "/account")
        for path in PAGES:
            response = member.goto(web.url + path)
            assert response.status == 403, path
            assert "may not open this page" in member.text_content("main")
            assert member.locator("svg").count() == 0
    finally:
        context.close()
