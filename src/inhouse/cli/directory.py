"""`inhouse users|groups|keys ...`: the identity tables from the server's own machine.

Each command is one audited transaction, acting as `cli:<os user>`; errors exit 2.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from inhouse.api.admin.views import group_view, key_view, user_view
from inhouse.auth.directory import Directory
from inhouse.auth.limits import UNCHANGED, LimitsUpdate
from inhouse.cli.context import audited_store, cli_actor
from inhouse.cli.options import ConfigOpt, HomeOpt, settings_from
from inhouse.errors import InhouseError

users_app = typer.Typer(help="People who may use this server.", no_args_is_help=True)
groups_app = typer.Typer(help="Teams: members, knowledge grants, quotas.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: shown once, stored hashed.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Quota = Annotated[
    str | None,
    typer.Option(help="A whole number, or 'none' to remove the limit (default: unchanged)."),
]


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


@contextmanager
def _directory(config: Path | None, home: Path | None) -> Iterator[Directory]:
    settings = settings_from(config, home)
    try:
        with audited_store(settings) as (db, audit), db.write() as session:
            yield Directory(session, audit, cli_actor())
    except InhouseError as exc:
        _fail(exc.message)


def _limit(value: str | None, name: str) -> int | None:
    if value is None:
        return UNCHANGED  # type: ignore[no-any-return]
    if value.strip().lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        _fail(f"--{name} must be a whole number or 'none', not {value!r}")


def _limits(day: str | None, month: str | None, rpm: str | None) -> LimitsUpdate:
    return LimitsUpdate(
        _limit(day, "quota-tokens-day"),
        _limit(month, "quota-tokens-month"),
        _limit(rpm, "rpm"),
    )


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _print(
    rows: Sequence[dict[str, Any]], as_json: bool, columns: dict[str, Callable[..., str]]
) -> None:
    if as_json:
        typer.echo(json.dumps(list(rows), indent=2))
        return
    table = [list(columns)] + [[render(row) for render in columns.values()] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


def _quota_text(limits: dict[str, int | None]) -> str:
    parts = [
        f"{limits['tokens_per_day']}/day" if limits["tokens_per_day"] is not None else "",
        f"{limits['tokens_per_month']}/month" if limits["tokens_per_month"] is not None else "",
        f"{limits['requests_per_minute']} rpm" if limits["requests_per_minute"] is not None else "",
    ]
    return ", ".join(p for p in parts if p) or "-"


USER_COLUMNS: dict[str, Callable[..., str]] = {
    "name": lambda u: u["name"],
    "role": lambda u: u["role"] + (" (disabled)" if u["disabled"] else ""),
    "groups": lambda u: ",".join(u["groups"]) or "-",
    "password": lambda u: "yes" if u["has_password"] else "no",
    "quota": lambda u: _quota_text(u["limits"]),
}
GROUP_COLUMNS: dict[str, Callable[..., str]] = {
    "name": lambda g: g["name"],
    "members": lambda g: ",".join(g["members"]) or "-",
    "collections": lambda g: ",".join(g["collections"]) or "-",
    "quota": lambda g: _quota_text(g["limits"]),
}
KEY_COLUMNS: dict[str, Callable[..., str]] = {
    "id": lambda k: k["id"],
    "user": lambda k: k["user"],
    "name": lambda k: k["name"] or "-",
    "models": lambda k: ",".join(k["models"]) if k["models"] is not None else "all",
    "expires": lambda k: _when(k["expires_at"]),
    "state": lambda k: (
        "revoked"
        if k["revoked_at"]
        else ("expired" if k["expires_at"] and k["expires_at"] <= time.time() else "active")
    ),
    "last used": lambda k: _when(k["last_used_at"]),
    "quota": lambda k: _quota_text(k["limits"]),
}


# ----- users ---------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="admin, auditor or member.")] = "member",
    group: Annotated[
        list[str] | None,
        typer.Option("--group", help="Join this group (repeatable; the first is billed)."),
    ] = None,
    password: Annotated[
        bool, typer.Option("--password", help="Ask for a web sign-in password.")
    ] = False,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Add a user (API keys: `inhouse keys create --user NAME`)."""
    secret = (
        typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    )
    with _directory(config, home) as directory:
        user = directory.add_user(name, role, password=secret, groups=group or [])
        typer.echo(f"added {user.name} ({user.role})")


@users_app.command("list")
def users_list(config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List users with their role, groups and quotas."""
    with _directory(config, home) as directory:
        _print([user_view(directory, u) for u in directory.users()], as_json, USER_COLUMNS)


@users_app.command("set")
def users_set(
    name: str,
    role: Annotated[str | None, typer.Option(help="admin, auditor or member.")] = None,
    disabled: Annotated[
        bool | None, typer.Option("--disabled/--enabled", help="Lock or unlock the account.")
    ] = None,
    quota_tokens_day: Quota = None,
    quota_tokens_month: Quota = None,
    rpm: Quota = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Change a user's role, lock, or quotas."""
    with _directory(config, home) as directory:
        limits = _limits(quota_tokens_day, quota_tokens_month, rpm)
        user = directory.update_user(name, role=role, disabled=disabled, limits=limits)
        _print([user_view(directory, user)], False, USER_COLUMNS)


@users_app.command("passwd")
def users_passwd(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Set a user's web sign-in password (signs their browsers out)."""
    secret = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    with _directory(config, home) as directory:
        directory.set_password(name, secret)
        typer.echo(f"password of {name} changed")


@users_app.command("rm")
def users_rm(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Remove a user and their keys (their usage rows stay, for the ledger)."""
    with _directory(config, home) as directory:
        directory.remove_user(name)
        typer.echo(f"removed {name}")


# ----- groups --------------------------------------------------------------------------------


@groups_app.command("add")
def groups_add(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Create a group."""
    with _directory(config, home) as directory:
        directory.add_group(name)
        typer.echo(f"added group {name}")


@groups_app.command("list")
def groups_list(config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List groups with members, grants and quotas."""
    with _directory(config, home) as directory:
        _print([group_view(directory, g) for g in directory.groups()], as_json, GROUP_COLUMNS)


@groups_app.command("join")
def groups_join(group: str, user: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Put USER in GROUP."""
    with _directory(config, home) as directory:
        directory.join(user, group)
        typer.echo(f"{user} is in {group}")


@groups_app.command("leave")
def groups_leave(group: str, user: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Take USER out of GROUP."""
    with _directory(config, home) as directory:
        directory.leave(user, group)
        typer.echo(f"{user} left {group}")


@groups_app.command("grant")
def groups_grant(
    group: str,
    collection: Annotated[str, typer.Option("--collection", help="Knowledge collection.")],
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Let GROUP's members read a knowledge collection."""
    with _directory(config, home) as directory:
        directory.grant(group, collection)
        typer.echo(f"{group} may read {collection}")


@groups_app.command("revoke")
def groups_revoke(
    group: str,
    collection: Annotated[str, typer.Option("--collection", help="Knowledge collection.")],
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Take a collection grant away from GROUP."""
    with _directory(config, home) as directory:
        directory.revoke_grant(group, collection)
        typer.echo(f"{group} may no longer read {collection}")


@groups_app.command("set")
def groups_set(
    name: str,
    quota_tokens_day: Quota = None,
    quota_tokens_month: Quota = None,
    rpm: Quota = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Set a group's quotas (shared by all its members)."""
    with _directory(config, home) as directory:
        group = directory.update_group(name, _limits(quota_tokens_day, quota_tokens_month, rpm))
        _print([group_view(directory, group)], False, GROUP_COLUMNS)


@groups_app.command("rm")
def groups_rm(name: str, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Delete a group (its members stay)."""
    with _directory(config, home) as directory:
        directory.remove_group(name)
        typer.echo(f"removed group {name}")


# ----- keys ----------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option("--user", help="Whose key it is.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    models: Annotated[
        list[str] | None,
        typer.Option("--models", help="Only these models (repeatable; default: all)."),
    ] = None,
    collections: Annotated[
        list[str] | None, typer.Option("--collections", help="Only these collections (repeatable).")
    ] = None,
    expires_in_days: Annotated[
        float | None, typer.Option(help="Expire after this many days.")
    ] = None,
    quota_tokens_day: Quota = None,
    quota_tokens_month: Quota = None,
    rpm: Quota = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    expires_at = None if expires_in_days is None else time.time() + expires_in_days * 86400
    with _directory(config, home) as directory:
        key, secret = directory.create_key(
            user,
            name=name,
            models=_split(models),
            collections=_split(collections),
            expires_at=expires_at,
            limits=_limits(quota_tokens_day, quota_tokens_month, rpm),
        )
        typer.echo(f"{key.public_id} for {user}: {secret}")
        typer.echo("shown once, stored only as a hash: copy it now", err=True)


def _split(values: list[str] | None) -> list[str] | None:
    """`--models a,b --models c` -> [a, b, c]."""
    if not values:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List keys (never their secrets)."""
    with _directory(config, home) as directory:
        owner = None if user is None else directory.user(user).id
        _print([key_view(directory, k) for k in directory.keys(owner)], as_json, KEY_COLUMNS)


@keys_app.command("set")
def keys_set(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    quota_tokens_day: Quota = None,
    quota_tokens_month: Quota = None,
    rpm: Quota = None,
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Change a key's quotas."""
    with _directory(config, home) as directory:
        key = directory.update_key(key_id, _limits(quota_tokens_day, quota_tokens_month, rpm))
        _print([key_view(directory, key)], False, KEY_COLUMNS)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    config: ConfigOpt = None,
    home: HomeOpt = None,
) -> None:
    """Revoke a key: refused from the next request on."""
    with _directory(config, home) as directory:
        directory.revoke_key(key_id)
        typer.echo(f"revoked {key_id}")
