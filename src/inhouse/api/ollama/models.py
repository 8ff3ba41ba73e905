"""GET /api/tags, POST /api/show, GET /api/ps and (public) GET /api/version."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request

from inhouse import __version__
from inhouse.api.deps import app_state
from inhouse.api.guard import guard, principal_of
from inhouse.auth.policy import Permission, may_use_model
from inhouse.embeddings.names import is_embedding_model
from inhouse.embeddings.service import EmbeddingService
from inhouse.engine.pool import Loaded
from inhouse.errors import InvalidRequest, ModelNotFound
from inhouse.models.resolver import ModelResolver

from .body import json_body
from .catalog import Facts, embedding_facts, facts_of, list_facts
from .embed import OLLAMA_NAMES
from .schemas import ShowRequest
from .translate import DEFAULTS

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])
public = APIRouter(dependencies=[guard(Permission.PUBLIC)])

FOREVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # a pinned model never expires


@public.get("/api/version")
async def version() -> dict[str, str]:
    """The server's version; public, as clients probe it before they authenticate."""
    return {"version": __version__}


@router.get("/api/tags")
async def tags(request: Request) -> dict[str, Any]:
    """Every name a client may call, aliases and the embedding model included, with details."""
    resolver = app_state(request).resolver
    facts = await anyio.to_thread.run_sync(_listing, resolver, _embeddings(request))
    principal = principal_of(request)
    return {
        "models": [
            f.entry() for f in facts if may_use_model(principal, f.name.removesuffix(":latest"))
        ]
    }


@router.post("/api/show")
async def show(
    body: Annotated[ShowRequest, Depends(json_body(ShowRequest))], request: Request
) -> dict[str, Any]:
    """One model's details, parameters, template and GGUF facts; 404 if unknown."""
    if not body.target:
        raise InvalidRequest("model is required", param="model")
    resolver = app_state(request).resolver
    if not may_use_model(principal_of(request), body.target.removesuffix(":latest")):
        raise ModelNotFound(f"model '{body.target}' not found", param="model")
    facts = await anyio.to_thread.run_sync(_facts, resolver, _embeddings(request), body.target)
    generates = "completion" in facts.capabilities
    return {
        "license": facts.license or "",
        "modelfile": _modelfile(facts),
        "parameters": DEFAULTS.parameters() if generates else "",
        "template": facts.template or "",
        "details": facts.details(),
        "model_info": facts.model_info(),
        "capabilities": list(facts.capabilities),
        "modified_at": facts.modified_at,
    }


def _embeddings(request: Request) -> EmbeddingService:
    service: EmbeddingService = request.app.state.embeddings
    return service


def _listing(resolver: ModelResolver, embeddings: EmbeddingService) -> list[Facts]:
    """The generative models, then the embedding model when it can be served (blocking)."""
    facts = list_facts(resolver)
    card = embeddings.card()
    if card is not None and card.name not in {f.name for f in facts}:
        facts.append(embedding_facts(card))
    return facts


def _facts(resolver: ModelResolver, embeddings: EmbeddingService, name: str) -> Facts:
    """The facts of `name`, as /api/embed and the chat endpoints resolve it (blocking)."""
    lookup = name.lower().removesuffix(":latest")
    if lookup in OLLAMA_NAMES or is_embedding_model(lookup):
        card = embeddings.card()
        if card is None:
            raise ModelNotFound(f"model '{name}' not found", param="model")
        return embedding_facts(card, name)
    return facts_of(resolver, name)


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    """The models loaded now; memory is all in RAM (size_vram 0)."""
    state = app_state(request)
    principal = principal_of(request)
    loaded = [m for m in state.pool.loaded if may_use_model(principal, m.spec.name)]
    names = [m.spec.name for m in loaded]
    facts = await anyio.to_thread.run_sync(_facts_or_sparse, state.resolver, names)
    keep_alive_s = state.pool.keep_alive_s
    return {"models": [_running(m, f, keep_alive_s) for m, f in zip(loaded, facts, strict=True)]}


def _facts_or_sparse(resolver: ModelResolver, names: list[str]) -> list[Facts]:
    """Facts of each name; a model removed from the store while loaded gets sparse ones."""
    out = []
    for name in names:
        try:
            out.append(facts_of(resolver, name))
        except ModelNotFound:
            out.append(Facts(name, 0, "", "", "", 0, ""))
    return out


def _running(loaded: Loaded, facts: Facts, keep_alive_s: float) -> dict[str, Any]:
    if loaded.spec.pinned:
        expires = FOREVER
    else:
        left = loaded.last_used + keep_alive_s - time.monotonic()
        expires = datetime.now(UTC) + timedelta(seconds=max(0.0, left))
    return {
        **facts.entry(),
        "size": loaded.memory_bytes,
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
        "size_vram": 0,
        "context_length": loaded.engine.max_context,
    }


def _modelfile(facts: Facts) -> str:
    lines = ["# Modelfile generated by inhouse", f"FROM {facts.base or facts.name}"]
    if facts.base:
        lines.insert(1, f"# {facts.name}: LoRA adapters applied to {facts.base}")
    if "completion" in facts.capabilities:
        lines += [f"PARAMETER {line}" for line in DEFAULTS.parameters().splitlines()]
    return "\n".join(lines) + "\n"
