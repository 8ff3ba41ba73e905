"""Widgets over HTTP: the admin API (/admin/widgets) and the widget's own chat route."""

from __future__ import annotations

from fastapi import APIRouter

from inhouse.api.widgets import admin, chat

routers: tuple[APIRouter, ...] = (admin.router, chat.router)
