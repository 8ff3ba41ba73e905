"""POST /v1/embeddings: OpenAI's embeddings API, served by the local all-MiniLM-L6-v2.

Choices where OpenAI's API meets a small local model:
- `input` is text: a string or up to 2048 non-empty strings. Token arrays are refused (400):
  clients tokenize with OpenAI's tokenizer, whose ids mean nothing to this model.
- Texts longer than 256 tokens are truncated (as sentence-transformers does); usage counts
  the tokens the model read.
- `dimensions` may only be 384: MiniLM was not trained to be shortened.
- `encoding_format` "base64" is little-endian float32, as OpenAI sends it.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from inhouse.api.deps import app_state
from inhouse.api.embedding import check_dimensions, embed_metered, input_texts
from inhouse.api.guard import guard, principal_of
from inhouse.auth.policy import Permission
from inhouse.embeddings.service import Embedded, EmbeddingService, GGUFEmbeddings
from inhouse.errors import ModelNotFound

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: Any  # checked by input_texts, which words its errors better than a union would
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = None
    user: str | None = None


@router.post("/v1/embeddings", response_model=None)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    state = app_state(request)
    state.governance.check_model(principal_of(request), body.model)
    service, model = _service_for(body.model, request)
    texts = input_texts(body.input)

    def check(result: Embedded) -> None:
        check_dimensions(body.dimensions, int(result.vectors.shape[1]))

    result = await embed_metered(request, "embeddings", model, service, texts, check)
    content = await anyio.to_thread.run_sync(render, result, model, body.encoding_format)
    return Response(content, media_type="application/json")


def _service_for(name: str, request: Request) -> tuple[EmbeddingService, str]:
    """The sentence embedder, or a GGUF model of the store asked for by its name or alias."""
    service: EmbeddingService = request.app.state.embeddings
    try:
        return service, service.resolve_model(name)
    except ModelNotFound:
        if not service.settings.enabled:
            raise
        try:
            spec = app_state(request).resolver.resolve(name)
        except ModelNotFound:
            service.resolve_model(name)  # the embedder's own message says what exists
            raise
    gguf: GGUFEmbeddings = request.app.state.gguf_embeddings
    return gguf.service_for(spec.name, spec.path), spec.name


def render(result: Embedded, model: str, encoding_format: str) -> bytes:
    """The response body: one embedding per input, in input order, and the usage."""
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(vector, encoding_format)}
        for i, vector in enumerate(result.vectors)
    ]
    tokens = sum(result.token_counts)
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _encode(vector: npt.NDArray[np.float32], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    values: list[float] = vector.tolist()
    return values
