"""Templates: Jinja2 with autoescaping, the branding, and the navigation a principal may see."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from inhouse.api.deps import app_state
from inhouse.auth.policy import Permission, Principal, allows

TEMPLATES = Path(__file__).parent / "templates"
ENVIRONMENT = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str
    permission: Permission
    admin: bool = False  # listed under "Admin"


NAVIGATION = (
    NavItem("/", "Chat", Permission.MODEL_USE),
    NavItem("/knowledge", "Knowledge", Permission.KNOWLEDGE_READ),
    NavItem("/models", "Models", Permission.MODEL_USE),
    NavItem("/keys", "My keys", Permission.KEYS_OWN),
    NavItem("/manage/users", "Users and groups", Permission.DIRECTORY_READ, admin=True),
    NavItem("/manage/usage", "Usage and savings", Permission.USAGE_ALL, admin=True),
    NavItem("/manage/audit", "Audit trail", Permission.AUDIT_READ, admin=True),
    NavItem("/manage/widgets", "Widgets", Permission.DIRECTORY_WRITE, admin=True),
    NavItem("/manage/system", "System", Permission.SYSTEM_READ, admin=True),
)


def navigation(principal: Principal | None) -> list[NavItem]:
    if principal is None:
        return []
    return [item for item in NAVIGATION if allows(principal, item.permission)]


def page(
    request: Request, template: str, title: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render `template` (which extends base.html) with the branding and the navigation."""
    settings = app_state(request).settings
    principal: Principal | None = getattr(request.state, "principal", None)
    html = ENVIRONMENT.get_template(template).render(
        title=title,
        brand=settings.branding,
        has_logo=settings.branding.logo_file is not None,
        principal=principal,
        nav=navigation(principal),
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)
