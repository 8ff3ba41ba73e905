"""POST /api/chat and /api/generate: Ollama's generation API on the OpenAI serving code."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from inhouse.api.deps import AppState, app_state
from inhouse.api.guard import guard
from inhouse.api.openai.schemas import ChatCompletionRequest, CompletionRequest
from inhouse.auth.policy import Permission
from inhouse.engine.pool import ModelPool, ModelSpec

from .body import json_body
from .names import resolve
from .reply import Answer, Piece, Timing, chat_piece, created_at, generate_piece, respond
from .schemas import ChatRequest, GenerateRequest, OllamaRequest
from .translate import (
    chat_body,
    check_common,
    format_grammar,
    generate_body,
    keep_alive_seconds,
    with_grammar,
)

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])

UNLOAD_POLL_S = 0.05


@router.post("/api/chat", response_model=None)
async def chat(
    body: Annotated[ChatRequest, Depends(json_body(ChatRequest))], request: Request
) -> Response:
    """A chat turn; no messages only loads the model (or unloads it with keep_alive 0)."""
    state = app_state(request)
    check_common(body)
    name, spec = resolve(state.serving.resolver, body.model)
    state.governance.check_model(request, name)
    if not body.messages:
        return await _load_or_unload(state, body, spec, chat_piece)
    openai_body = chat_body(body, name)
    return await _generate(request, body, openai_body, spec, chat_piece, "ollama_chat")


@router.post("/api/generate", response_model=None)
async def generate(
    body: Annotated[GenerateRequest, Depends(json_body(GenerateRequest))], request: Request
) -> Response:
    """A completion of `prompt`; an empty prompt only loads (or unloads) the model."""
    state = app_state(request)
    check_common(body)
    name, spec = resolve(state.serving.resolver, body.model)
    state.governance.check_model(request, name)
    if not body.prompt:
        return await _load_or_unload(state, body, spec, generate_piece)
    openai_body = generate_body(body, name)
    return await _generate(request, body, openai_body, spec, generate_piece, "ollama_generate")


async def _generate(
    request: Request,
    req: OllamaRequest,
    body: ChatCompletionRequest | CompletionRequest,
    spec: ModelSpec,
    piece: Piece,
    endpoint: str,
) -> Response:
    state = app_state(request)
    grammar = format_grammar(req.format)
    keep_alive = keep_alive_seconds(req.keep_alive)
    timing = Timing()
    if isinstance(body, ChatCompletionRequest):
        prepared = await state.serving.prepare_chat(body)
    else:
        prepared = await state.serving.prepare_completion(body)
    timing.ready = time.perf_counter()

    async def unload() -> None:
        await unload_when_idle(state.pool, spec.name)

    prepared = with_grammar(prepared, grammar)
    watch = await state.governance.admit_generation(
        request, endpoint, body.model, prepared, state.metrics.track(endpoint)
    )
    answer = Answer(
        prepared,
        req.model,
        piece,
        timing,
        watch,
        after=unload if keep_alive == 0 else None,
    )
    return await respond(answer, req.streams)


async def _load_or_unload(
    state: AppState, req: OllamaRequest, spec: ModelSpec, piece: Piece
) -> JSONResponse:
    if keep_alive_seconds(req.keep_alive) == 0:
        await unload_when_idle(state.pool, spec.name)
        reason = "unload"
    else:
        await state.pool.engine(spec)
        reason = "load"
    head = {"model": req.model, "created_at": created_at(), **piece("")}
    return JSONResponse({**head, "done": True, "done_reason": reason})


async def unload_when_idle(pool: ModelPool, name: str) -> None:
    """Unload model `name` once no request is generating on it (at once when idle)."""
    while (loaded := pool.get_loaded(name)) is not None and loaded.busy:
        await asyncio.sleep(UNLOAD_POLL_S)
    await pool.unload(name)
