"""POST /api/chat and /api/generate: Ollama's generation API on the one generation pipeline."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from inhouse.api.deps import AppState, app_state
from inhouse.api.generation.grounding import citations
from inhouse.api.generation.requests import ChatCompletionRequest, CompletionRequest
from inhouse.api.guard import caller_of, guard
from inhouse.auth.policy import Permission
from inhouse.engine.pool import ModelSpec

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
)

router = APIRouter(dependencies=[guard(Permission.MODEL_USE)])


@router.post("/api/chat", response_model=None)
async def chat(
    body: Annotated[ChatRequest, Depends(json_body(ChatRequest))], request: Request
) -> Response:
    """A chat turn; no messages only loads the model (or unloads it with keep_alive 0)."""
    state = app_state(request)
    check_common(body)
    name, spec = resolve(state.resolver, body.model)
    state.pipeline.check_model(caller_of(request), name)
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
    name, spec = resolve(state.resolver, body.model)
    state.pipeline.check_model(caller_of(request), name)
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
    caller = caller_of(request)
    if isinstance(body, ChatCompletionRequest):
        generation = await state.pipeline.chat(caller, endpoint, body, grammar)
    else:
        generation = await state.pipeline.completion(caller, endpoint, body, grammar)
    timing.ready = time.perf_counter()

    async def unload() -> None:
        await state.pool.unload_when_idle(spec.name)

    after = unload if keep_alive == 0 else None
    grounded = isinstance(body, ChatCompletionRequest) and body.knowledge is not None
    first = {"citations": citations(generation.prepared.passages)} if grounded else {}
    answer = Answer(generation, req.model, piece, timing, after, first)
    return await respond(request, answer, req.streams)


async def _load_or_unload(
    state: AppState, req: OllamaRequest, spec: ModelSpec, piece: Piece
) -> JSONResponse:
    if keep_alive_seconds(req.keep_alive) == 0:
        await state.pool.unload_when_idle(spec.name)
        reason = "unload"
    else:
        await state.pool.engine(spec)
        reason = "load"
    head = {"model": req.model, "created_at": created_at(), **piece("")}
    return JSONResponse({**head, "done": True, "done_reason": reason})
