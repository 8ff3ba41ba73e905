"""The admin API (/admin/...): what the CLI does, over HTTP, for the web UI and scripts."""

from fastapi import APIRouter

from . import audit, groups, keys, models, session, system, usage, users

routers: tuple[APIRouter, ...] = (
    session.router,
    users.router,
    groups.router,
    keys.router,
    usage.router,
    audit.router,
    system.router,
    models.router,
)
