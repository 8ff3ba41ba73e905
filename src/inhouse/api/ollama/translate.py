"""Ollama requests -> the generation pipeline's requests: options, format, keep_alive."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from inhouse.api.generation.requests import ChatCompletionRequest, CompletionRequest
from inhouse.engine.grammar import JSON_OBJECT_GRAMMAR, schema_to_grammar
from inhouse.errors import InvalidRequest

from .schemas import ChatRequest, GenerateRequest, OllamaRequest, Options

Body = TypeVar("Body", bound=BaseModel)

_DURATION = re.compile(r"(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Defaults:
    """Ollama's sampling defaults, used where a request's `options` leave a value unset."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    repeat_penalty: float = 1.1

    def parameters(self) -> str:
        """The defaults as the `parameters` text of /api/show (one `name value` a line)."""
        return "".join(f"{k:<15} {v}\n" for k, v in self.__dict__.items())


DEFAULTS = Defaults()


def sampling_fields(options: Options | None) -> dict[str, Any]:
    """OpenAI sampling fields for Ollama `options` (num_predict <= 0: up to the context's end)."""
    o = options or Options()
    predict = o.num_predict
    return {
        "temperature": DEFAULTS.temperature if o.temperature is None else o.temperature,
        "top_p": DEFAULTS.top_p if o.top_p is None else o.top_p,
        "top_k": DEFAULTS.top_k if o.top_k is None else o.top_k,
        "min_p": o.min_p or 0.0,
        "repetition_penalty": o.repeat_penalty or DEFAULTS.repeat_penalty,
        "presence_penalty": o.presence_penalty or 0.0,
        "frequency_penalty": o.frequency_penalty or 0.0,
        "seed": o.seed if o.seed is not None and o.seed >= 0 else None,
        "max_tokens": predict if predict is not None and predict > 0 else None,
        "stop": o.stop or None,
    }


def check_common(req: OllamaRequest) -> None:
    """Refuse what every generating route lacks: no model, thinking, logprobs."""
    if not req.model:
        raise InvalidRequest("model is required", param="model")
    if req.think not in (None, False, ""):
        raise InvalidRequest(f"'{req.model}' does not support thinking", param="think")
    if req.logprobs:
        raise InvalidRequest("logprobs are not supported yet", param="logprobs")


def chat_body(req: ChatRequest, model: str) -> ChatCompletionRequest:
    """The chat completion that `req` asks for, on the resolved `model` name."""
    if req.tools:
        raise InvalidRequest(f"'{req.model}' does not support tools", param="tools")
    if any(m.images for m in req.messages):
        raise InvalidRequest("images are not supported: this server's models read text only")
    messages = [{"role": m.role, "content": m.content or ""} for m in req.messages]
    fields = {"model": model, "messages": messages, **sampling_fields(req.options)}
    if req.knowledge is not None:
        fields["knowledge"] = req.knowledge.model_dump()
    return build(ChatCompletionRequest, fields)


def generate_body(req: GenerateRequest, model: str) -> ChatCompletionRequest | CompletionRequest:
    """`prompt` as is when `raw`; otherwise as a user turn (after `system`) in the chat template."""
    if req.images:
        raise InvalidRequest("images are not supported: this server's models read text only")
    if req.template:
        raise InvalidRequest(
            "template is not supported: the model's own chat template is used "
            "(send raw: true to format the prompt yourself)",
            param="template",
        )
    if req.context:
        raise InvalidRequest(
            "context is not supported: send the conversation to /api/chat", param="context"
        )
    if req.suffix:
        raise InvalidRequest("suffix is not supported by this model", param="suffix")
    fields: dict[str, Any] = {"model": model, **sampling_fields(req.options)}
    if req.raw:
        if req.system:
            raise InvalidRequest("raw mode does not support template, system, or context")
        return build(CompletionRequest, {**fields, "prompt": req.prompt})
    system = [{"role": "system", "content": req.system}] if req.system else []
    messages = [*system, {"role": "user", "content": req.prompt}]
    return build(ChatCompletionRequest, {**fields, "messages": messages})


def build(cls: type[Body], fields: dict[str, Any]) -> Body:
    """`cls` validated from `fields`; InvalidRequest naming the first problem otherwise."""
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidRequest(f"invalid value for '{where}': {error['msg']}") from None


def format_grammar(value: str | dict[str, Any] | None) -> str | None:
    """The grammar that Ollama's `format` ("json" or a JSON schema) asks for; None for none."""
    if value is None or value == "":
        return None
    if value == "json":
        return JSON_OBJECT_GRAMMAR
    if isinstance(value, dict):
        return schema_to_grammar(value)
    raise InvalidRequest('invalid format: expected "json" or a JSON schema', param="format")


def keep_alive_seconds(value: Any) -> float | None:
    """Seconds of `keep_alive` (a number or a duration like "5m"; None: not given; < 0: forever)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            body = text.removeprefix("-").removeprefix("+")
            if _DURATION.fullmatch(body):
                total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(body))
                return -total if text.startswith("-") else total
        else:
            if math.isfinite(seconds):
                return seconds
    raise InvalidRequest(
        'keep_alive must be a number of seconds or a duration like "5m"', param="keep_alive"
    )
