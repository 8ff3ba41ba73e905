"""`AsyncClient`: the same calls as `Client`, awaited, with the same typed errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from inhouse.client import AsyncClient, InhouseAPIError, Table
from tests.client.conftest import MEMBER, Site, chat, need_embedder


async def test_the_async_client_manages_keys_reads_usage_and_raises_typed_errors(
    site: Site,
) -> None:
    chat(site.served, site.member_key, times=1)
    async with AsyncClient(site.url, site.admin_key) as admin:
        me, users, usage = await asyncio.gather(admin.me(), admin.users(), admin.usage("model"))
        assert me["user"] == "admin" and MEMBER in [u["name"] for u in users]
        assert isinstance(usage, Table) and "fake" in [row["model"] for row in usage]
        created = await admin.create_key(MEMBER, name="async")
        async with AsyncClient(site.url, created["key"]) as member:
            assert (await member.me())["user"] == MEMBER
            with pytest.raises(InhouseAPIError) as forbidden:
                await member.savings()
            assert forbidden.value.status == 403
            await admin.revoke_key(created["id"])
            with pytest.raises(InhouseAPIError) as revoked:
                await member.me()
            assert revoked.value.status == 401
        assert (await admin.audit_verify())["ok"] is True
        assert [row["api"] for row in await admin.savings()] == (await admin.savings()).meta["apis"]


async def test_the_async_client_uploads_a_file_and_searches(site: Site, tmp_path: Path) -> None:
    need_embedder()
    notes = tmp_path / "notes.txt"
    notes.write_text("The parking garage closes at ten in the evening.")
    async with AsyncClient(site.url, site.admin_key) as admin:
        await admin.create_collection("async-notes", group="staff")
        try:
            assert (await admin.upload("async-notes", notes))["status"] == "indexed"
            async with AsyncClient(site.url, site.member_key) as member:
                hits = await member.search("when does the garage close", ["async-notes"])
                assert hits[0]["source"] == "notes.txt"
                status = await member.sync_status("async-notes")
                assert (status["collection"], status["documents"]) == ("async-notes", 1)
        finally:
            await admin.delete_collection("async-notes")
