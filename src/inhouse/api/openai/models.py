"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request

from inhouse.api.deps import AppState, app_state
from inhouse.api.guard import guard, principal_of
from inhouse.auth.policy import Permission, may_use_model
from inhouse.embeddings.minilm import ModelCard
from inhouse.embeddings.names import is_embedding_model
from inhouse.embeddings.service import EmbeddingService
from inhouse.errors import ModelNotFound

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])


def _model_card(state: AppState, name: str) -> dict[str, Any]:
    spec = state.resolver.resolve(name)
    card: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": state.started_at,
        "owned_by": "inhouse",
    }
    if spec.name != name:
        card["alias_of"] = spec.name
    loaded = state.pool.get_loaded(spec.name)
    if loaded is not None:
        card["context_length"] = loaded.engine.max_context
    return card


def _embedding_card(state: AppState, name: str, card: ModelCard) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": state.started_at,
        "owned_by": "inhouse",
    }
    if name != card.name:
        entry["alias_of"] = card.name
    return entry


async def _servable_embedder(request: Request) -> ModelCard | None:
    """The embedding model's card when it can be served here (it is checked off the loop)."""
    service: EmbeddingService = request.app.state.embeddings
    return await anyio.to_thread.run_sync(service.card)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The generative models and aliases, then the embedding model when it can be served."""
    state, principal = app_state(request), principal_of(request)
    names = [n for n in state.resolver.names() if may_use_model(principal, n)]
    data = [_model_card(state, n) for n in names]
    card = await _servable_embedder(request)
    if card is not None and card.name not in names and may_use_model(principal, card.name):
        data.append(_embedding_card(state, card.name, card))
    return {"object": "list", "data": data}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    if not may_use_model(principal_of(request), model_id):
        raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
    state = app_state(request)
    if is_embedding_model(model_id):
        card = await _servable_embedder(request)
        if card is None:
            raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
        return _embedding_card(state, model_id, card)
    return _model_card(state, model_id)
