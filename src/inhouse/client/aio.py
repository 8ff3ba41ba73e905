"""`AsyncClient`: the admin and knowledge APIs over an asyncio httpx client."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Literal, TypeVar

import httpx

import inhouse.client.endpoints as api
from inhouse.client.calls import (
    DEFAULT_BASE_URL,
    Call,
    FileSource,
    Since,
    base_url_of,
    headers_for,
)
from inhouse.client.endpoints import KEEP, Limit, Record, SearchMode, UsageGrouping
from inhouse.client.table import Table

T = TypeVar("T")


class AsyncClient:
    """inhouse's own APIs (who am I, users, groups, keys, usage, savings, audit, knowledge);
    chat and models go through the official `openai` client at `openai_base_url`."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url_of(base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers_for(api_key), timeout=timeout
        )

    @property
    def openai_base_url(self) -> str:
        """The URL to give the official OpenAI client (`openai.AsyncOpenAI`)."""
        return self.base_url + "/v1"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _do(self, call: Call[T]) -> T:
        if call.upload is None:
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.json
            )
            return call.result(response)
        with call.upload.opened() as files:
            response = await self._http.request(
                call.method, call.path, params=call.params, files=files
            )
        return call.result(response)

    async def me(self) -> Record:
        """Who the key belongs to: user, role, permissions, model and collection scopes."""
        return await self._do(api.me())

    # users and groups
    async def users(self) -> Table:
        """Every account: name, role, disabled, has_password, groups, created_at, limits."""
        return await self._do(api.users())

    async def user(self, name: str) -> Record:
        """One account, by name (404 if there is none)."""
        return await self._do(api.user(name))

    async def create_user(
        self,
        name: str,
        role: str = "member",
        *,
        password: str | None = None,
        groups: Sequence[str] = (),
    ) -> Record:
        """A new account in `groups`; role admin, auditor or member."""
        return await self._do(api.create_user(name, role, password, groups))

    async def update_user(
        self,
        name: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
        tokens_per_day: Limit = KEEP,
        tokens_per_month: Limit = KEEP,
        requests_per_minute: Limit = KEEP,
    ) -> Record:
        """Change what is given; a quota of None removes it."""
        limits = api.limits(tokens_per_day, tokens_per_month, requests_per_minute)
        return await self._do(api.update_user(name, role, disabled, password, limits))

    async def remove_user(self, name: str) -> None:
        """Delete the account (409 `last_admin` for the last enabled admin)."""
        await self._do(api.remove_user(name))

    async def groups(self) -> Table:
        """Every group: name, members, collections granted, created_at, limits."""
        return await self._do(api.groups())

    async def create_group(self, name: str) -> Record:
        """A new, empty group."""
        return await self._do(api.create_group(name))

    async def update_group(
        self,
        name: str,
        *,
        tokens_per_day: Limit = KEEP,
        tokens_per_month: Limit = KEEP,
        requests_per_minute: Limit = KEEP,
    ) -> Record:
        """Set the group's shared quotas; None removes one."""
        limits = api.limits(tokens_per_day, tokens_per_month, requests_per_minute)
        return await self._do(api.update_group(name, limits))

    async def remove_group(self, name: str) -> None:
        """Delete the group; its members' accounts stay."""
        await self._do(api.remove_group(name))

    async def add_member(self, group: str, user: str) -> Record:
        """Put `user` in `group`; the group comes back."""
        return await self._do(api.membership(group, user, join=True))

    async def remove_member(self, group: str, user: str) -> Record:
        """Take `user` out of `group`; the group comes back."""
        return await self._do(api.membership(group, user, join=False))

    async def grant_collection(self, group: str, collection: str) -> Record:
        """Let `group`'s members read `collection`."""
        return await self._do(api.grant(group, collection, granted=True))

    async def revoke_collection(self, group: str, collection: str) -> Record:
        """Take back `group`'s grant to read `collection`."""
        return await self._do(api.grant(group, collection, granted=False))

    # keys
    async def api_keys(self, user: str | None = None) -> Table:
        """Keys the caller may see (a member: their own), of one user if given."""
        return await self._do(api.keys(user))

    async def api_key(self, key_id: str) -> Record:
        """One key by id (never its secret)."""
        return await self._do(api.key(key_id))

    async def create_key(
        self,
        user: str | None = None,
        *,
        name: str = "",
        models: Sequence[str] | None = None,
        collections: Sequence[str] | None = None,
        expires_in_days: float | None = None,
        tokens_per_day: int | None = None,
        tokens_per_month: int | None = None,
        requests_per_minute: int | None = None,
    ) -> Record:
        """A new key (default: the caller's own); its secret is under "key", shown once."""
        limits = api.limits(tokens_per_day, tokens_per_month, requests_per_minute)
        return await self._do(
            api.create_key(user, name, models, collections, expires_in_days, limits)
        )

    async def update_key(
        self,
        key_id: str,
        *,
        tokens_per_day: Limit = KEEP,
        tokens_per_month: Limit = KEEP,
        requests_per_minute: Limit = KEEP,
    ) -> Record:
        """Set the key's quotas; None removes one."""
        limits = api.limits(tokens_per_day, tokens_per_month, requests_per_minute)
        return await self._do(api.update_key(key_id, limits))

    async def revoke_key(self, key_id: str) -> Record:
        """Revoke a key: it fails from its next request on."""
        return await self._do(api.revoke_key(key_id))

    # usage, savings, audit
    async def usage(self, by: UsageGrouping = "user", since: Since = "30d") -> Table:
        """Requests, tokens and latency per user, group, model, key or day (oldest first)."""
        return await self._do(api.usage(by, since))

    async def savings(self, since: Since = "30d") -> Table:
        """Per API: what this traffic would have cost there, what it cost here, the
        difference; `.meta["rows"]` breaks it down by team and model."""
        return await self._do(api.savings(since))

    async def audit_verify(self) -> Record:
        """Check the audit trail's hash chain: `ok`, `entries`, `first_bad_seq`, `problem`."""
        return await self._do(api.audit_verify())

    async def audit_export(
        self, since: Since = "7d", format: Literal["jsonl", "csv"] = "jsonl"
    ) -> str:
        """The audit entries since then as JSON lines or CSV (the export is audited)."""
        return await self._do(api.audit_export(since, format))

    async def doctor(self) -> Table:
        """The server's self-checks, one row each; `.meta["ok"]` is false when one fails."""
        return await self._do(api.doctor())

    # knowledge
    async def collections(self) -> Table:
        """The collections the caller may read (admins: all), with their sizes."""
        return await self._do(api.collections())

    async def collection(self, name: str) -> Record:
        """One collection (404 if it is missing or the caller may not read it)."""
        return await self._do(api.collection(name))

    async def create_collection(self, name: str, group: str) -> Record:
        """A new collection, readable by `group` (its owner)."""
        return await self._do(api.create_collection(name, group))

    async def delete_collection(self, name: str) -> Record:
        """Delete the collection with every document, chunk and grant."""
        return await self._do(api.delete_collection(name))

    async def documents(self, collection: str) -> Table:
        """The collection's documents: id, source, status, error, chunks."""
        return await self._do(api.documents(collection))

    async def upload(self, collection: str, file: FileSource) -> Record:
        """Index a file (a path, or a name and its bytes); one that cannot be parsed comes
        back with `status` "failed" and the reason in `error`."""
        return await self._do(api.upload(collection, file))

    async def delete_document(self, collection: str, document_id: int) -> Record:
        """Delete one document: its rows, vectors, full text and file."""
        return await self._do(api.delete_document(collection, document_id))

    async def sync_status(self, collection: str) -> Record:
        """Sizes, last change and the connector's last run, error and next run."""
        return await self._do(api.sync_status(collection))

    async def sync(self, collection: str) -> Record:
        """Sync the collection from its connector now; its status comes back."""
        return await self._do(api.sync(collection))

    async def search(
        self,
        query: str,
        collections: Sequence[str] | None = None,
        *,
        top_k: int = 5,
        mode: SearchMode = "hybrid",
    ) -> Table:
        """The passages the caller may read that best answer `query`, best first."""
        return await self._do(api.search(query, collections, top_k, mode))
