"""/v1/conversations and /v1/feedback: the web chat's stored conversations, their streamed
answers (through the one generation pipeline) and the feedback given on them."""

from fastapi import APIRouter

from . import answers, feedback, routes

routers: tuple[APIRouter, ...] = (routes.router, answers.router, feedback.router)
