"""The web app: server-rendered pages over the same HTTP API the CLI and the clients use.

Each page module has its own router; `routers` lists them for the app. Pages hold no power of
their own: every action a page offers is a call, from the browser, to a guarded API route."""

from __future__ import annotations

from fastapi import APIRouter

from inhouse.api.web import (
    chat,
    directory,
    knowledge,
    models,
    pages,
    reports,
    widget_frame,
    widgets,
)

routers: tuple[APIRouter, ...] = (
    pages.router,
    directory.router,
    chat.router,
    knowledge.router,
    models.router,
    widgets.router,
    widget_frame.router,
    reports.router,
)
