"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from inhouse.api.deps import AppState, app_state
from inhouse.api.guard import guard, principal_of
from inhouse.auth.policy import Permission, may_use_model
from inhouse.errors import ModelNotFound

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])


def _model_card(state: AppState, name: str) -> dict[str, Any]:
    spec = state.serving.resolver.resolve(name)
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


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    state, principal = app_state(request), principal_of(request)
    names = [n for n in state.serving.resolver.names() if may_use_model(principal, n)]
    return {"object": "list", "data": [_model_card(state, n) for n in names]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    if not may_use_model(principal_of(request), model_id):
        raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
    return _model_card(app_state(request), model_id)
