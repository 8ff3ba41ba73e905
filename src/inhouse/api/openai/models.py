"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from inhouse.api.deps import AppState, app_state, require_api_key

router = APIRouter(dependencies=[Depends(require_api_key)])


def _model_card(state: AppState) -> dict[str, Any]:
    info = state.engine.info
    return {
        "id": state.serving.model_name,
        "object": "model",
        "created": state.started_at,
        "owned_by": "inhouse",
        "context_length": state.serving.max_context,
        "description": info.description,
    }


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(app_state(request))]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    state = app_state(request)
    state.serving.check_model(model_id)
    return _model_card(state)
