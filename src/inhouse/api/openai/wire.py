"""OpenAI's response framing: server-sent events, logprobs, response ids."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from inhouse.api.watch import RequestWatch
from inhouse.engine.request import TokenLogprob
from inhouse.errors import InhouseError

DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def chat_logprobs(logprobs: list[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": list(lp.token_bytes),
                "top_logprobs": [
                    {"token": t.token, "logprob": t.logprob, "bytes": list(t.token_bytes)}
                    for t in lp.top
                ],
            }
            for lp in logprobs
        ]
    }


def completion_logprobs(logprobs: list[TokenLogprob], offset: int) -> dict[str, Any]:
    offsets: list[int] = []
    for lp in logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in logprobs],
        "token_logprobs": [lp.logprob for lp in logprobs],
        "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in logprobs],
        "text_offset": offsets,
    }


def response_meta(id_prefix: str, model: str, fingerprint: str) -> dict[str, Any]:
    return {
        "id": f"{id_prefix}-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
    }


async def guarded_sse(
    chunks: AsyncIterator[bytes], tracker: RequestWatch
) -> AsyncGenerator[bytes, None]:
    """SSE framing around a stream: a failure becomes an error event; always ends in [DONE]."""
    status = 200
    try:
        async for data in chunks:
            yield data
    except InhouseError as exc:
        status = exc.status
        yield sse({"error": {"message": exc.message, "type": exc.type, "code": exc.code}})
    except Exception:
        status = 500
        raise
    finally:
        tracker.done(status)
    yield DONE
