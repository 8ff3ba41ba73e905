"""The FastAPI app factory: create_app(settings) wires engines, routes, errors and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from inhouse import __version__
from inhouse.api.admin import routers as admin_routers
from inhouse.api.conversations import routers as conversation_routers
from inhouse.api.deps import AppState, app_state
from inhouse.api.errors import install_error_handlers
from inhouse.api.generation.pipeline import Pipeline
from inhouse.api.generation.prepare import Preparer
from inhouse.api.guard import guard
from inhouse.api.housekeeping import housekeeping
from inhouse.api.knowledge import router as knowledge_router
from inhouse.api.metrics import Metrics
from inhouse.api.middleware import DrainGate, RequestBody
from inhouse.api.ollama import routers as ollama_routers
from inhouse.api.openai import chat, completions, embeddings, models
from inhouse.api.tuning import routers as tuning_routers
from inhouse.api.tuning.background import start_training
from inhouse.api.web import routers as web_routers
from inhouse.api.web.pages import install_web
from inhouse.api.web.security import SecurityHeaders
from inhouse.api.widgets import routers as widget_routers
from inhouse.audit.content import ContentLog
from inhouse.audit.trail import open_trail
from inhouse.auth.credentials import Credentials
from inhouse.auth.policy import Permission
from inhouse.auth.throttle import LoginThrottle
from inhouse.config import Settings
from inhouse.embeddings.service import EmbeddingService, GGUFEmbeddings
from inhouse.engine.client import AsyncEngine
from inhouse.engine.pool import EngineBuilder, ModelPool, ModelSpec
from inhouse.governance.service import Governance
from inhouse.knowledge.schedule import run_scheduled_syncs
from inhouse.knowledge.service import KnowledgeService
from inhouse.models.resolver import ModelResolver
from inhouse.store.db import open_database
from inhouse.store.private import private_dir

SPILL_FILE = "settlements.spill.jsonl"  # in the data directory; see store/spill.py


def default_resolver(settings: Settings) -> ModelResolver:
    """`--model file.gguf` serves that one file; otherwise the model store (and its default)."""
    from inhouse.models.resolver import SingleModel, StoreResolver
    from inhouse.models.store import ModelStore

    engine = settings.engine
    if engine.model_path is not None:
        return SingleModel(engine.model_name, engine.model_path)
    return StoreResolver(ModelStore(settings.home))


def llama_builder(settings: Settings) -> EngineBuilder:
    from inhouse.engine.factory import build_engine

    def build(spec: ModelSpec) -> AsyncEngine:
        return build_engine(spec, settings.engine)

    return build


def create_app(
    settings: Settings,
    *,
    resolver: ModelResolver | None = None,
    build: EngineBuilder | None = None,
    governed: bool = True,
) -> FastAPI:
    """Build the app; by default it serves the configured GGUF model through llama.cpp.

    `governed=False` skips quotas, usage rows and per-request audit entries; it exists so a
    benchmark can measure what they cost, side by side."""
    state = _app_state(
        settings, resolver or default_resolver(settings), build or llama_builder(settings), governed
    )
    app = FastAPI(title="inhouse", version=__version__, lifespan=lambda _: _lifespan(state))
    app.state.inhouse = state
    app.state.embeddings = state.embeddings
    app.state.gguf_embeddings = GGUFEmbeddings(settings.embeddings)
    install_error_handlers(app)
    install_web(app)
    _add_routes(app)
    server = settings.server
    app.add_middleware(RequestBody, limit=server.max_body_bytes, timeout_s=server.body_timeout_s)
    app.add_middleware(SecurityHeaders)
    # outermost: while draining, a new request is refused before its body is waited for
    app.add_middleware(DrainGate, is_draining=lambda: state.draining)
    return app


def _app_state(
    settings: Settings, resolver: ModelResolver, build: EngineBuilder, governed: bool
) -> AppState:
    """The engines' pool and the opened, migrated store, with its audit trail."""
    pool = ModelPool(
        build,
        budget_bytes=settings.engine.memory_budget_mb * 1024 * 1024,
        keep_alive_s=settings.engine.keep_alive_s,
    )
    private_dir(settings.home)
    db = open_database(settings.database_url())
    audit = open_trail(settings, db)
    auth = settings.auth
    metrics = Metrics(pool)
    governance = Governance(
        db,
        audit,
        ContentLog(settings.ledger),
        enabled=governed,
        spill_path=settings.home / SPILL_FILE,
    )
    preparer = Preparer(pool, resolver, settings.engine)
    embeddings = EmbeddingService(settings.embeddings)
    knowledge = KnowledgeService(db, audit, settings.knowledge, embeddings.shared)
    return AppState(
        settings=settings,
        pool=pool,
        resolver=resolver,
        pipeline=Pipeline(preparer, governance, metrics, knowledge),
        metrics=metrics,
        db=db,
        audit=audit,
        governance=governance,
        credentials=Credentials(db, audit),
        embeddings=embeddings,
        knowledge=knowledge,
        fingerprint="fp_" + hashlib.sha256(__version__.encode()).hexdigest()[:10],
        started_at=int(time.time()),
        login_throttle=LoginThrottle(
            auth.login_failures_per_user, auth.login_failures_per_address, auth.login_window_s
        ),
    )


@asynccontextmanager
async def _lifespan(state: AppState) -> AsyncIterator[None]:
    """Load the default model and start the chores; on shutdown stop them, then the store."""
    await state.pool.engine(state.resolver.default())
    state.pool.start()
    chores = asyncio.create_task(housekeeping(state))
    stop_syncs = asyncio.Event()
    syncs = None
    if state.settings.knowledge.scheduled_syncs:
        syncs = asyncio.create_task(run_scheduled_syncs(state.knowledge, stop_syncs))
    training = start_training(state, stop_syncs)
    try:
        yield
    finally:
        chores.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chores
        stop_syncs.set()
        if syncs is not None:
            await syncs  # a running sync stops at its next row, recorded as stopped
        if training is not None:
            await training  # a running trainer is stopped; its job resumes at the next start
        await state.pool.close()
        state.pipeline.close()
        state.governance.close()
        state.db.close()


def _add_routes(app: FastAPI) -> None:
    openai_routers = (chat.router, completions.router, embeddings.router, models.router)
    api_routers = (*openai_routers, *ollama_routers, *admin_routers, knowledge_router)
    api_routers += widget_routers
    api_routers += conversation_routers
    api_routers += tuning_routers
    for router in (*api_routers, *web_routers):
        app.include_router(router)
    for path, endpoint in (("/health", health), ("/metrics", metrics)):
        app.add_api_route(
            path,
            endpoint,
            methods=["GET"],
            response_model=None,
            dependencies=[guard(Permission.PUBLIC)],
        )


async def health(request: Request) -> JSONResponse:
    """Public liveness: 200 while every loaded engine runs and the server accepts work."""
    state = app_state(request)
    stats = {m.spec.name: m.engine.stats() for m in state.pool.loaded}
    dead = [name for name, s in stats.items() if not s.alive]
    ok = not dead and not state.draining
    body = {
        "status": "ok" if ok else ("draining" if state.draining else "engine_dead"),
        "models": list(stats),
        "running": sum(s.running for s in stats.values()),
        "waiting": sum(s.waiting for s in stats.values()),
    }
    if dead:
        body["dead"] = dead
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    body = app_state(request).metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
