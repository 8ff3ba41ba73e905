"""`inhouse.client.Client` against the real API, served: each method does what the API does,
and every refusal is a typed InhouseAPIError with the server's status, code and message."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inhouse.client import KEEP, SVG, Client, InhouseAPIError, Table
from tests.client.conftest import MEMBER, Site, chat, need_embedder


def test_me_users_and_groups_round_trip_through_the_admin_api(site: Site) -> None:
    with Client(site.url, site.admin_key) as admin:
        me = admin.me()
        assert (me["user"], me["role"], me["via"]) == ("admin", "admin", "key")
        assert admin.create_group("analysts")["name"] == "analysts"
        created = admin.create_user("ana", groups=["analysts"], password="a-long-password")
        assert (created["role"], created["groups"], created["has_password"]) == (
            "member",
            ["analysts"],
            True,
        )
        users = admin.users()
        assert isinstance(users, Table) and {"admin", "ana", MEMBER} <= {u["name"] for u in users}
        assert admin.update_user("ana", tokens_per_day=1000)["limits"]["tokens_per_day"] == 1000
        kept = admin.update_user("ana", role="auditor", requests_per_minute=KEEP)
        assert (kept["role"], kept["limits"]["tokens_per_day"]) == ("auditor", 1000)
        assert admin.update_user("ana", tokens_per_day=None)["limits"]["tokens_per_day"] is None
        assert admin.update_group("analysts", tokens_per_month=5)["limits"]["tokens_per_month"] == 5
        assert MEMBER in admin.add_member("analysts", MEMBER)["members"]
        assert MEMBER not in admin.remove_member("analysts", MEMBER)["members"]
        assert "analysts" in [g["name"] for g in admin.groups()]
        admin.remove_user("ana")
        with pytest.raises(InhouseAPIError) as missing:
            admin.user("ana")
        assert missing.value.status == 404 and "ana" in missing.value.message
        admin.remove_group("analysts")
        assert "analysts" not in [g["name"] for g in admin.groups()]


def test_a_key_created_through_the_client_works_until_it_is_revoked(site: Site) -> None:
    with Client(site.url + "/v1/", site.admin_key) as admin:  # the OpenAI-style URL works too
        created = admin.create_key(MEMBER, name="nb", models=["fake"], tokens_per_day=500)
        secret, key_id = created["key"], created["id"]
        assert (created["user"], created["models"], created["limits"]["tokens_per_day"]) == (
            MEMBER,
            ["fake"],
            500,
        )
        assert key_id in [k["id"] for k in admin.api_keys(MEMBER)]
        assert "key" not in admin.api_key(key_id)  # the secret is shown once
        assert admin.update_key(key_id, tokens_per_day=None)["limits"]["tokens_per_day"] is None
        with Client(site.url, secret) as member:
            assert (member.me()["user"], member.me()["models"]) == (MEMBER, ["fake"])
            assert [k["id"] for k in member.api_keys()] == [k["id"] for k in admin.api_keys(MEMBER)]
            assert admin.revoke_key(key_id)["revoked_at"] is not None
            with pytest.raises(InhouseAPIError) as refused:
                member.me()
        assert (refused.value.status, refused.value.code) == (401, "revoked_api_key")


def test_refusals_are_typed_errors_with_the_servers_status_code_and_message(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INHOUSE_API_KEY", raising=False)
    with Client(site.url) as anonymous, pytest.raises(InhouseAPIError) as unauthenticated:
        anonymous.me()
    assert (unauthenticated.value.status, unauthenticated.value.type) == (
        401,
        "authentication_error",
    )
    monkeypatch.setenv("INHOUSE_API_KEY", site.member_key)  # the key's default
    with Client(site.url) as member:
        assert member.me()["user"] == MEMBER
        with pytest.raises(InhouseAPIError) as forbidden:
            member.users()
        assert forbidden.value.status == 403
        with pytest.raises(InhouseAPIError) as not_found:
            member.collection("no-such-collection")
        assert (not_found.value.status, not_found.value.type) == (404, "invalid_request_error")
        with pytest.raises(InhouseAPIError) as bad:
            member.usage(since="tomorrow")
        assert (bad.value.status, bad.value.param) == (400, "since")
        assert "since" in str(bad.value)


def test_usage_and_savings_come_back_as_tables_with_markdown_and_charts(site: Site) -> None:
    chat(site.served, site.member_key)
    with Client(site.url, site.admin_key) as admin:
        by_model = admin.usage(by="model", since=timedelta(days=1))
        assert by_model.meta["by"] == "model" and by_model.columns()[:2] == ["model", "requests"]
        fake = next(row for row in by_model if row["model"] == "fake")
        assert fake["requests"] >= 2 and fake["total_tokens"] > 0
        assert "| fake |" in by_model.to_markdown()
        by_user = admin.usage(by="user", since=datetime.now(UTC) - timedelta(hours=1))
        assert MEMBER in [row["user"] for row in by_user]
        by_day = admin.usage(by="day")
        line = by_day.chart(["prompt_tokens", "completion_tokens"], kind="line", unit="tokens")
        assert ET.fromstring(line._repr_svg_()).tag.endswith("svg")
        savings = admin.savings(since="1d")
        assert savings.columns() == ["api", "api_cost", "local_cost", "savings"]
        assert "gpt-4o" in [row["api"] for row in savings] and savings.meta["currency"] == "USD"
        for row in savings:
            assert row["savings"] == pytest.approx(row["api_cost"] - row["local_cost"])
        assert isinstance(savings.meta["rows"], Table) and savings.meta["rows"]
        chart = savings.chart("api_cost", title="This traffic at each API", unit="USD")
        assert isinstance(chart, SVG) and "This traffic at each API" in str(chart)
        assert ET.fromstring(str(chart)).tag.endswith("svg")


def test_a_member_sees_only_their_own_usage_and_no_savings(site: Site) -> None:
    chat(site.served, site.member_key, times=1)
    with Client(site.url, site.member_key) as member:
        assert [row["user"] for row in member.usage(by="user")] == [MEMBER]
        with pytest.raises(InhouseAPIError) as forbidden:
            member.savings()
        assert forbidden.value.status == 403


def test_audit_verify_export_and_doctor(site: Site) -> None:
    with Client(site.url, site.admin_key) as admin:
        check = admin.audit_verify()
        assert check["ok"] is True and check["entries"] > 0 and check["first_bad_seq"] is None
        lines = admin.audit_export(since="1h").splitlines()
        assert lines and all("action" in json.loads(line) for line in lines)
        doctor = admin.doctor()
        assert isinstance(doctor.meta["ok"], bool) and doctor.to_markdown().startswith("| ")


def test_knowledge_collections_documents_search_and_sync_status(site: Site, tmp_path: Path) -> None:
    need_embedder()
    handbook = tmp_path / "handbook.md"
    handbook.write_text("# Holidays\n\nEvery employee has thirty days of paid leave a year.")
    with Client(site.url, site.admin_key) as admin, Client(site.url, site.member_key) as member:
        created = admin.create_collection("handbook", group="staff")
        assert (created["name"], created["object"]) == ("handbook", "knowledge.collection")
        from_path = admin.upload("handbook", handbook)
        from_bytes = admin.upload("handbook", ("canteen.txt", b"Soup is served on Mondays."))
        assert (from_path["status"], from_bytes["status"]) == ("indexed", "indexed")
        assert sorted(d["source"] for d in admin.documents("handbook")) == [
            "canteen.txt",
            "handbook.md",
        ]
        assert "handbook" in [c["name"] for c in member.collections()]
        hits = member.search("how many days of paid leave", ["handbook"], top_k=2)
        assert hits[0]["source"] == "handbook.md" and "thirty days" in hits[0]["snippet"]
        assert "handbook.md" in hits.to_markdown(["source", "score", "snippet"])
        assert member.sync_status("handbook")["object"] == "knowledge.sync"
        assert admin.delete_document("handbook", from_bytes["id"])["deleted"] is True
        assert [d["source"] for d in member.documents("handbook")] == ["handbook.md"]
        with pytest.raises(InhouseAPIError) as forbidden:
            member.delete_collection("handbook")
        assert forbidden.value.status == 403
        assert admin.delete_collection("handbook")["deleted"] is True
        with pytest.raises(InhouseAPIError) as gone:
            member.collection("handbook")
        assert gone.value.status == 404
        assert member.search("paid leave") == []
