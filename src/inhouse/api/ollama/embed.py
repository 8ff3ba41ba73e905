"""POST /api/embed and the older /api/embeddings, on the same embedder as /v1/embeddings."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from inhouse.api.deps import app_state
from inhouse.api.embedding import check_dimensions, embed_metered, input_texts
from inhouse.api.guard import guard, principal_of
from inhouse.auth.policy import Permission
from inhouse.embeddings.service import MODEL_NAME, EmbeddingService
from inhouse.errors import InvalidRequest, ModelNotFound

from .body import json_body
from .reply import nanoseconds
from .schemas import EmbeddingsRequest, EmbedRequest

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])

# Ollama's library names of all-MiniLM-L6-v2 (":latest" is dropped before the lookup)
OLLAMA_NAMES = frozenset({"all-minilm", "all-minilm:l6-v2", "all-minilm:22m"})


@router.post("/api/embed")
async def embed(
    body: Annotated[EmbedRequest, Depends(json_body(EmbedRequest))], request: Request
) -> dict[str, Any]:
    """One unit vector per input text, in order; an empty input only checks the model."""
    service = _service(request, body.model)
    check_dimensions(body.dimensions, service.dimensions)
    began = time.perf_counter()
    vectors: list[list[float]] = []
    tokens = 0
    if body.input not in ("", []):
        result = await embed_metered(
            request, "ollama_embed", body.model, service, input_texts(body.input)
        )
        vectors, tokens = result.vectors.tolist(), sum(result.token_counts)
    return {
        "model": body.model,
        "embeddings": vectors,
        "total_duration": nanoseconds(time.perf_counter() - began),
        "load_duration": 0,
        "prompt_eval_count": tokens,
    }


@router.post("/api/embeddings")
async def embeddings(
    body: Annotated[EmbeddingsRequest, Depends(json_body(EmbeddingsRequest))], request: Request
) -> dict[str, Any]:
    """The older API: one `prompt` in, one `embedding` out (empty for an empty prompt)."""
    service = _service(request, body.model)
    if not body.prompt:
        return {"embedding": []}
    result = await embed_metered(request, "ollama_embed", body.model, service, [body.prompt])
    vector: list[float] = result.vectors[0].tolist()
    return {"embedding": vector}


def _service(request: Request, model: str) -> EmbeddingService:
    """The app's embedder if `model` names it; InvalidRequest / ModelNotFound otherwise."""
    if not model:
        raise InvalidRequest("model is required", param="model")
    service: EmbeddingService = request.app.state.embeddings
    name = model.lower().removesuffix(":latest")
    app_state(request).governance.check_model(principal_of(request), name)
    try:
        service.resolve_model(MODEL_NAME if name in OLLAMA_NAMES else name)
    except ModelNotFound:
        raise ModelNotFound(f"model '{model}' not found", param="model") from None
    return service
