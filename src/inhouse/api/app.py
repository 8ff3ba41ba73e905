"""The FastAPI app factory: create_app(settings) wires engine, routes, errors and metrics."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from inhouse import __version__
from inhouse.api.deps import AppState, app_state
from inhouse.api.errors import install_error_handlers
from inhouse.api.metrics import Metrics
from inhouse.api.middleware import BodyLimit, DrainGate
from inhouse.api.openai import chat, completions, models
from inhouse.api.openai.serving import Serving
from inhouse.auth.admin_key import AdminKeyStore, KeyVerifier
from inhouse.config import Settings
from inhouse.engine.client import AsyncEngine


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    verifier: KeyVerifier | None = None,
) -> FastAPI:
    """Build the app; `engine` defaults to the configured llama.cpp model."""
    if engine is None:
        from inhouse.engine.factory import build_engine

        engine = build_engine(settings.engine)
    if settings.auth.enabled and verifier is None:
        verifier = AdminKeyStore(settings.home).verifier()
    info = engine.info
    state = AppState(
        settings=settings,
        engine=engine,
        serving=Serving(engine, settings.engine),
        metrics=Metrics(engine),
        verifier=verifier if settings.auth.enabled else None,
        fingerprint="fp_" + hashlib.sha256(f"{__version__}:{info.path}".encode()).hexdigest()[:10],
        started_at=int(time.time()),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.close()

    app = FastAPI(title="inhouse", version=__version__, lifespan=lifespan)
    app.state.inhouse = state
    install_error_handlers(app)
    for router in (chat.router, completions.router, models.router):
        app.include_router(router)
    app.add_api_route("/health", health, methods=["GET"], response_model=None)
    app.add_api_route("/metrics", metrics, methods=["GET"], response_model=None)
    app.add_middleware(DrainGate, is_draining=lambda: state.draining)
    app.add_middleware(BodyLimit, limit=settings.server.max_body_bytes)
    return app


async def health(request: Request) -> JSONResponse:
    """Public liveness: 200 while the engine thread runs and the server accepts work."""
    state = app_state(request)
    ok = state.engine.alive and not state.draining
    body = {
        "status": "ok" if ok else ("draining" if state.draining else "engine_dead"),
        "model": state.serving.model_name,
        "running": state.engine.core.num_running,
        "waiting": state.engine.core.num_waiting,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    body = app_state(request).metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
