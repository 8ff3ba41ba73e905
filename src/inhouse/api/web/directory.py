"""The directory pages: users, groups, quotas and everyone's keys (/manage/users), and each
user's own keys (/keys).

The pages render only their frame; static/users.js and static/keys.js fetch the lists from
/admin/users, /admin/groups and /admin/keys and make every change through that same API, so
a page can never do more than its user's role lets the API do. `can_write` only decides
whether the forms are shown: directory readers (auditors) get the lists without them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from inhouse.api.web.access import page_guard
from inhouse.api.web.render import page
from inhouse.auth.policy import Permission, Principal, Role, allows

router = APIRouter(include_in_schema=False)
EXPIRY_DAYS = (7, 30, 90, 365)


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


@router.get("/manage/users", dependencies=[page_guard(Permission.DIRECTORY_READ)])
def users_page(request: Request) -> Response:
    """Users, groups, their quotas and everyone's keys; the forms for directory writers."""
    can_write = allows(_principal(request), Permission.DIRECTORY_WRITE)
    roles = [role.value for role in Role]
    return page(request, "users.html", "Users and groups", can_write=can_write, roles=roles)


@router.get("/keys", dependencies=[page_guard(Permission.KEYS_OWN)])
def keys_page(request: Request) -> Response:
    """The signed-in user's own API keys: list, create (secret shown once), revoke."""
    return page(
        request,
        "keys.html",
        "My keys",
        owner=_principal(request).user_name,
        expiry_days=EXPIRY_DAYS,
    )
