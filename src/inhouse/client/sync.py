"""`Client`: the admin and knowledge APIs over a blocking httpx client."""

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


class Client:
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
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers_for(api_key), timeout=timeout
        )

    @property
    def openai_base_url(self) -> str:
        """The URL to give the official OpenAI client."""
        return self.base_url + "/v1"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _do(self, call: Call[T]) -> T:
        if call.upload is None:
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.json
            )
            return call.result(response)
        with call.upload.opened() as files:
            response = self._http.request(call.method, call.path, params=call.params, files=files)
        return call.result(response)

    def me(self) -> Record:
        """Who the key belongs to: user, role, permissions, model and collection scopes."""
        return self._do(api.me())

    # users and groups
    def users(self) -> Table:
        """Every account: name, role, disabled, has_password, groups, created_at, limits."""
        return self._do(api.users())

    def user(self, name: str) -> Record:
        """One account, by name (404 if there is none)."""
        return self._do(api.user(name))

    def create_user(
        self,
        name: str,
        role: str = "member",
        *,
        password: str | None = None,
        groups: Sequence[str] = (),
    ) -> Record:
        """A new account in `groups`; role admin, auditor or member."""
        return self._do(api.create_user(name, role, password, groups))

    def update_user(
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
        return self._do(api.update_user(name, role, disabled, password, limits))

    def remove_user(self, name: str) -> None:
        """Delete the account (409 `last_admin` for the last enabled admin)."""
        self._do(api.remove_user(name))

    def groups(self) -> Table:
        """Every group: name, members, collections granted, created_at, limits."""
        return self._do(api.groups())

    def create_group(self, name: str) -> Record:
        """A new, empty group."""
        return self._do(api.create_group(name))

    def update_group(
        self,
        name: str,
        *,
        tokens_per_day: Limit = KEEP,
        tokens_per_month: Limit = KEEP,
        requests_per_minute: Limit = KEEP,
    ) -> Record:
        """Set the group's shared quotas; None removes one."""
        limits = api.limits(tokens_per_day, tokens_per_month, requests_per_minute)
        return self._do(api.update_group(name, limits))

    def remove_group(self, name: str) -> None:
        """Delete the group; its members' accounts stay."""
        self._do(api.remove_group(name))

    def add_member(self, group: str, user: str) -> Record:
        """Put `user` in `group`; the group comes back."""
        return self._do(api.membership(group, user, join=True))

    def remove_member(self, group: str, user: str) -> Record:
        """Take `user` out of `group`; the group comes back."""
        return self._do(api.membership(group, user, join=False))

    def grant_collection(self, group: str, collection: str) -> Record:
        """Let `group`'s members read `collection`."""
        return self._do(api.grant(group, collection, granted=True))

    def revoke_collection(self, group: str, collection: str) -> Record:
        """Take back `group`'s grant to read `collection`."""
        return self._do(api.grant(group, collection, granted=False))

    # keys
    def api_keys(self, user: str | None = None) -> Table:
        """Keys the caller may see (a member: their own), of one user if given."""
        return self._do(api.keys(user))

    def api_key(self, key_id: str) -> Record:
        """One key by id (never its secret)."""
        return self._do(api.key(key_id))

    def create_key(
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
        return self._do(api.create_key(user, name, models, collections, expires_in_days, limits))

    def update_key(
        self,
        key_id: str,
        *,
        tokens_per_day: Limit = KEEP,
        tokens_per_month: Limit = KEEP,
        requests_per_minute: Limit = KEEP,
    ) -> Record:
        """Set the key's quotas; None removes one."""
        limits = api.limits(tokens_per_day, tokens_per_month, requests_per_minute)
        return self._do(api.update_key(key_id, limits))

    def revoke_key(self, key_id: str) -> Record:
        """Revoke a key: it fails from its next request on."""
        return self._do(api.revoke_key(key_id))

    # usage, savings, audit
    def usage(self, by: UsageGrouping = "user", since: Since = "30d") -> Table:
        """Requests, tokens and latency per user, group, model, key or day (oldest first)."""
        return self._do(api.usage(by, since))

    def savings(self, since: Since = "30d") -> Table:
        """Per API: what this traffic would have cost there, what it cost here, the
        difference; `.meta["rows"]` breaks it down by team and model."""
        return self._do(api.savings(since))

    def audit_verify(self) -> Record:
        """Check the audit trail's hash chain: `ok`, `entries`, `first_bad_seq`, `problem`."""
        return self._do(api.audit_verify())

    def audit_export(self, since: Since = "7d", format: Literal["jsonl", "csv"] = "jsonl") -> str:
        """The audit entries since then as JSON lines or CSV (the export is audited)."""
        return self._do(api.audit_export(since, format))

    def doctor(self) -> Table:
        """The server's self-checks, one row each; `.meta["ok"]` is false when one fails."""
        return self._do(api.doctor())

    # knowledge
    def collections(self) -> Table:
        """The collections the caller may read (admins: all), with their sizes."""
        return self._do(api.collections())

    def collection(self, name: str) -> Record:
        """One collection (404 if it is missing or the caller may not read it)."""
        return self._do(api.collection(name))

    def create_collection(self, name: str, group: str) -> Record:
        """A new collection, readable by `group` (its owner)."""
        return self._do(api.create_collection(name, group))

    def delete_collection(self, name: str) -> Record:
        """Delete the collection with every document, chunk and grant."""
        return self._do(api.delete_collection(name))

    def documents(self, collection: str) -> Table:
        """The collection's documents: id, source, status, error, chunks."""
        return self._do(api.documents(collection))

    def upload(self, collection: str, file: FileSource) -> Record:
        """Index a file (a path, or a name and its bytes); one that cannot be parsed comes
        back with `status` "failed" and the reason in `error`."""
        return self._do(api.upload(collection, file))

    def delete_document(self, collection: str, document_id: int) -> Record:
        """Delete one document: its rows, vectors, full text and file."""
        return self._do(api.delete_document(collection, document_id))

    def sync_status(self, collection: str) -> Record:
        """Sizes, last change and the connector's last run, error and next run."""
        return self._do(api.sync_status(collection))

    def sync(self, collection: str) -> Record:
        """Sync the collection from its connector now; its status comes back."""
        return self._do(api.sync(collection))

    def search(
        self,
        query: str,
        collections: Sequence[str] | None = None,
        *,
        top_k: int = 5,
        mode: SearchMode = "hybrid",
    ) -> Table:
        """The passages the caller may read that best answer `query`, best first."""
        return self._do(api.search(query, collections, top_k, mode))
