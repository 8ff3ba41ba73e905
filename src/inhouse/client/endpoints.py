"""Every operation of the admin and knowledge APIs as a `Call`, written once for both clients."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Literal, TypeAlias
from urllib.parse import quote

import httpx

from inhouse.client.calls import Call, FileSource, Since, Upload, since_param
from inhouse.client.table import Table

Record: TypeAlias = dict[str, Any]
SearchMode = Literal["hybrid", "vector", "keyword"]
UsageGrouping = Literal["user", "group", "model", "key", "day"]


class Keep(Enum):
    """A quota left as it is by an update (None removes it, a number sets it)."""

    KEEP = "keep"


KEEP = Keep.KEEP
Limit: TypeAlias = int | Literal[Keep.KEEP] | None


def _segment(value: str | int) -> str:
    """A name as one path segment: `a/b` or `..` can never reach another route."""
    return quote(str(value), safe="")


def _record(response: httpx.Response) -> Record:
    body: Record = response.json()
    return body


def _nothing(response: httpx.Response) -> None:
    return None


def _text(response: httpx.Response) -> str:
    return response.text


def _rows(key: str) -> Callable[[httpx.Response], Table]:
    """A reader of the list under `key` as a Table (without the rows' "object" tags), the
    rest of the body as its meta."""

    def read(response: httpx.Response) -> Table:
        body = response.json()
        rows = [{k: v for k, v in row.items() if k != "object"} for row in body[key]]
        return Table(rows, {k: v for k, v in body.items() if k not in (key, "object")})

    return read


def limits(tokens_per_day: Limit, tokens_per_month: Limit, requests_per_minute: Limit) -> Record:
    """The quota fields a change sends: all but those left as they are."""
    given = {
        "tokens_per_day": tokens_per_day,
        "tokens_per_month": tokens_per_month,
        "requests_per_minute": requests_per_minute,
    }
    return {name: value for name, value in given.items() if value is not KEEP}


# who am I, users, groups ----------------------------------------------------------------


def me() -> Call[Record]:
    return Call("GET", "/admin/me", _record)


def users() -> Call[Table]:
    return Call("GET", "/admin/users", _rows("users"))


def user(name: str) -> Call[Record]:
    return Call("GET", f"/admin/users/{_segment(name)}", _record)


def create_user(name: str, role: str, password: str | None, groups: Sequence[str]) -> Call[Record]:
    body = {"name": name, "role": role, "password": password, "groups": list(groups)}
    return Call("POST", "/admin/users", _record, json=body)


def update_user(
    name: str,
    role: str | None,
    disabled: bool | None,
    password: str | None,
    limits: Record,
) -> Call[Record]:
    changes = {"role": role, "disabled": disabled, "password": password}
    body = {k: v for k, v in changes.items() if v is not None} | limits
    return Call("PATCH", f"/admin/users/{_segment(name)}", _record, json=body)


def remove_user(name: str) -> Call[None]:
    return Call("DELETE", f"/admin/users/{_segment(name)}", _nothing)


def groups() -> Call[Table]:
    return Call("GET", "/admin/groups", _rows("groups"))


def create_group(name: str) -> Call[Record]:
    return Call("POST", "/admin/groups", _record, json={"name": name})


def update_group(name: str, limits: Record) -> Call[Record]:
    return Call("PATCH", f"/admin/groups/{_segment(name)}", _record, json=limits)


def remove_group(name: str) -> Call[None]:
    return Call("DELETE", f"/admin/groups/{_segment(name)}", _nothing)


def membership(group: str, user: str, join: bool) -> Call[Record]:
    path = f"/admin/groups/{_segment(group)}/members/{_segment(user)}"
    return Call("PUT" if join else "DELETE", path, _record)


def grant(group: str, collection: str, granted: bool) -> Call[Record]:
    path = f"/admin/groups/{_segment(group)}/collections/{_segment(collection)}"
    return Call("PUT" if granted else "DELETE", path, _record)


# keys -----------------------------------------------------------------------------------


def keys(user: str | None) -> Call[Table]:
    params = {} if user is None else {"user": user}
    return Call("GET", "/admin/keys", _rows("keys"), params=params)


def key(key_id: str) -> Call[Record]:
    return Call("GET", f"/admin/keys/{_segment(key_id)}", _record)


def create_key(
    user: str | None,
    name: str,
    models: Sequence[str] | None,
    collections: Sequence[str] | None,
    expires_in_days: float | None,
    limits: Record,
) -> Call[Record]:
    body: Record = {"name": name, **{k: v for k, v in limits.items() if v is not None}}
    optional = {
        "user": user,
        "models": None if models is None else list(models),
        "collections": None if collections is None else list(collections),
        "expires_in_days": expires_in_days,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return Call("POST", "/admin/keys", _record, json=body)


def update_key(key_id: str, limits: Record) -> Call[Record]:
    return Call("PATCH", f"/admin/keys/{_segment(key_id)}", _record, json=limits)


def revoke_key(key_id: str) -> Call[Record]:
    return Call("DELETE", f"/admin/keys/{_segment(key_id)}", _record)


# usage, savings, audit, doctor ----------------------------------------------------------


def usage(by: UsageGrouping, since: Since) -> Call[Table]:
    def read(response: httpx.Response) -> Table:
        body = response.json()
        rows = [{by: row.pop("label"), **row} for row in body["rows"]]
        return Table(rows, {"by": by, "since": body["since"], "until": body["until"]})

    return Call("GET", "/admin/usage", read, params={"by": by, "since": since_param(since)})


def savings(since: Since) -> Call[Table]:
    return Call("GET", "/admin/usage/savings", _savings, params={"since": since_param(since)})


def _savings(response: httpx.Response) -> Table:
    """One row per API: what the whole traffic would have cost there, against here; the
    report's per team and model rows and its basis go into the meta."""
    report = response.json()
    total = report["total"]
    rows = [
        {
            "api": api,
            "api_cost": total["api_costs"][api],
            "local_cost": total["local_cost"],
            "savings": total["savings"][api],
        }
        for api in report["apis"]
    ]
    return Table(
        rows, {k: v for k, v in report.items() if k != "rows"} | {"rows": Table(report["rows"])}
    )


def audit_verify() -> Call[Record]:
    return Call("GET", "/admin/audit/verify", _record)


def audit_export(since: Since, format: Literal["jsonl", "csv"]) -> Call[str]:
    params = {"since": since_param(since), "format": format}
    return Call("GET", "/admin/audit/export", _text, params=params)


def doctor() -> Call[Table]:
    return Call("GET", "/admin/doctor", _rows("checks"))


# knowledge ------------------------------------------------------------------------------

KNOWLEDGE = "/v1/knowledge"


def collections() -> Call[Table]:
    return Call("GET", f"{KNOWLEDGE}/collections", _rows("data"))


def collection(name: str) -> Call[Record]:
    return Call("GET", f"{KNOWLEDGE}/collections/{_segment(name)}", _record)


def create_collection(name: str, group: str) -> Call[Record]:
    body = {"name": name, "group": group}
    return Call("POST", f"{KNOWLEDGE}/collections", _record, json=body)


def delete_collection(name: str) -> Call[Record]:
    return Call("DELETE", f"{KNOWLEDGE}/collections/{_segment(name)}", _record)


def documents(name: str) -> Call[Table]:
    return Call("GET", f"{KNOWLEDGE}/collections/{_segment(name)}/documents", _rows("data"))


def upload(name: str, file: FileSource) -> Call[Record]:
    path = f"{KNOWLEDGE}/collections/{_segment(name)}/documents"
    return Call("POST", path, _record, upload=Upload(file))


def delete_document(name: str, document_id: int) -> Call[Record]:
    path = f"{KNOWLEDGE}/collections/{_segment(name)}/documents/{_segment(document_id)}"
    return Call("DELETE", path, _record)


def sync_status(name: str) -> Call[Record]:
    return Call("GET", f"{KNOWLEDGE}/collections/{_segment(name)}/sync", _record)


def sync(name: str) -> Call[Record]:
    return Call("POST", f"{KNOWLEDGE}/collections/{_segment(name)}/sync", _record)


def search(
    query: str, collections: Sequence[str] | None, top_k: int, mode: SearchMode
) -> Call[Table]:
    body: Record = {"query": query, "top_k": top_k, "mode": mode}
    if collections is not None:
        body["collections"] = list(collections)
    return Call("POST", f"{KNOWLEDGE}/search", _rows("data"), json=body)
