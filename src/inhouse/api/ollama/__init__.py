"""Ollama's API under /api: the routes Ollama clients and Open WebUI call, on inhouse's serving."""

from __future__ import annotations

from fastapi import APIRouter

from . import embed, generate, models

routers: tuple[APIRouter, ...] = (generate.router, models.router, models.public, embed.router)
