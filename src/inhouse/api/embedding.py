"""The embedding path both front-ends share: input checks, and embedding as a governed
request (quota, usage row, audit entry, metrics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

from inhouse.api.deps import app_state
from inhouse.api.guard import caller_of
from inhouse.api.watch import Watches
from inhouse.embeddings.service import Embedded, EmbeddingService
from inhouse.errors import InhouseError, InvalidRequest
from inhouse.governance.budget import Budget, token_bound

MAX_INPUTS = 2048


async def embed_metered(
    request: Request,
    endpoint: str,
    model: str,
    service: EmbeddingService,
    texts: list[str],
    check: Callable[[Embedded], None] | None = None,
) -> Embedded:
    """Embed `texts` as an admitted request: quota, usage row, audit entry and metrics."""
    state = app_state(request)
    metrics = state.metrics
    caller = caller_of(request)
    budget = Budget(token_bound(texts), streams=0)
    admission = await state.governance.admit(caller.principal, caller.ip, endpoint, model, budget)
    watch = Watches(metrics.track(endpoint), admission)
    status = 500
    try:
        result = await service.embed(texts)
        admission.set_prompt_tokens(sum(result.token_counts))
        if check is not None:
            check(result)
        status = 200
    except InhouseError as exc:
        status = exc.status
        raise
    finally:
        watch.done(status)
    metrics.tokens.labels("embedding").inc(sum(result.token_counts))
    return result


def input_texts(value: Any) -> list[str]:
    """The texts of a request's `input`; InvalidRequest naming the problem otherwise."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidRequest(
            "'input' must be a string or an array of strings.", param="input", code="invalid_value"
        )
    if not value:
        raise InvalidRequest("'input' must not be an empty array.", param="input")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' holds {len(value)} items; at most {MAX_INPUTS} are allowed per request.",
            param="input",
        )
    for i, item in enumerate(value):
        _check_item(i, item)
    return value


def _check_item(index: int, item: Any) -> None:
    where = f"'input[{index}]'"
    if type(item) is int or isinstance(item, list):
        array = where if isinstance(item, list) else "'input'"
        raise InvalidRequest(
            f"{array} is a token array; this server embeds text only: send strings. (LangChain's "
            "OpenAIEmbeddings: set check_embedding_ctx_length=False.)",
            param="input",
        )
    if not isinstance(item, str):
        raise InvalidRequest(f"{where} must be a string.", param="input", code="invalid_value")
    if not item:
        raise InvalidRequest(f"{where} is an empty string; it has nothing to embed.", param="input")


def check_dimensions(requested: int | None, dimensions: int) -> None:
    """Accept no `dimensions` or the model's own; anything else is an InvalidRequest."""
    if requested is not None and requested != dimensions:
        raise InvalidRequest(
            f"This model's vectors have {dimensions} dimensions and it was not trained to be "
            f"shortened: 'dimensions' may only be {dimensions}.",
            param="dimensions",
        )
