"""Tool calling: tools into the prompt, a grammar when a call is required, calls out of text.

A model whose chat template knows `tools` gets them through its template; any other model
gets them described in a system message, Hermes-style: it answers a call as
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. When the request requires a call
(`tool_choice` "required" or a named function), decoding is constrained by a grammar so the
output is exactly one valid call.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from inhouse.engine.grammar import schema_to_grammar
from inhouse.errors import InvalidRequest

from .requests import ChatCompletionRequest, ChatMessage, NamedToolChoice, ToolDef

OPEN, CLOSE = "<tool_call>", "</tool_call>"

Message = dict[str, Any]


@dataclass(frozen=True)
class ToolPlan:
    """How a request uses tools: offered (auto), forced (grammar), or not at all."""

    tools: tuple[ToolDef, ...]
    forced: bool

    @property
    def active(self) -> bool:
        return bool(self.tools)


NO_TOOLS = ToolPlan((), False)


def plan_tools(body: ChatCompletionRequest) -> ToolPlan:
    tools = tuple(body.tools or ())
    choice = body.tool_choice
    if choice == "none" or not tools:
        if isinstance(choice, NamedToolChoice) or choice == "required":
            raise InvalidRequest("tool_choice needs at least one tool", param="tool_choice")
        return NO_TOOLS
    names = [t.function.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("tool names must be unique", param="tools")
    if isinstance(choice, NamedToolChoice):
        chosen = [t for t in tools if t.function.name == choice.function.name]
        if not chosen:
            raise InvalidRequest(
                f"tool_choice names '{choice.function.name}', which is not in tools",
                param="tool_choice",
            )
        return ToolPlan(tuple(chosen), True)
    return ToolPlan(tools, choice == "required")


def call_grammar(plan: ToolPlan) -> str:
    """GBNF for exactly one call of one of the plan's tools, with valid arguments."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.function.name},
                "arguments": tool.function.parameters,
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in plan.tools
    ]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return schema_to_grammar(schema)


def _described(plan: ToolPlan) -> str:
    specs = [tool.function.model_dump(exclude_none=True) for tool in plan.tools]
    return (
        "You can call these tools:\n"
        + json.dumps(specs, ensure_ascii=False)
        + f'\nTo call a tool, answer with {OPEN}{{"name": <tool name>, "arguments": '
        f"<arguments as JSON>}}{CLOSE}. Tool results come back in <tool_response> tags."
    )


def render_messages(messages: list[ChatMessage], plan: ToolPlan, native: bool) -> list[Message]:
    """Messages as the template expects them: native tool fields, or tools as plain text."""
    out: list[Message] = []
    for message in messages:
        rendered: Message = {**message.model_dump(exclude_none=True), "content": message.text()}
        calls = message.tool_calls or []
        if native:
            if calls:
                rendered["tool_calls"] = [
                    {
                        "type": "function",
                        "function": {
                            "name": c.function.name,
                            "arguments": _arguments(c.function.arguments),
                        },
                    }
                    for c in calls
                ]
        else:
            rendered.pop("tool_calls", None)
            if calls:
                text = "".join(
                    f'{OPEN}{{"name": {json.dumps(c.function.name)}, '
                    f'"arguments": {c.function.arguments}}}{CLOSE}'
                    for c in calls
                )
                rendered["content"] = rendered["content"] + text
            if message.role == "tool":
                rendered = {
                    "role": "user",
                    "content": f"<tool_response>{message.text()}</tool_response>",
                }
        out.append(rendered)
    if plan.active and not native:
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + _described(plan)}
        else:
            out.insert(0, {"role": "system", "content": _described(plan)})
    return out


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest("a tool call's arguments must be a JSON string") from exc


def tool_dicts(plan: ToolPlan) -> list[dict[str, Any]] | None:
    return [t.model_dump(exclude_none=True) for t in plan.tools] if plan.active else None


# ----- model output -> calls -----------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str
    id: str

    def wire(self, index: int | None = None) -> dict[str, Any]:
        call: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        return call if index is None else {"index": index, **call}


def _parse_call(text: str, names: set[str]) -> ParsedCall | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    return ParsedCall(
        name=value["name"],
        arguments=json.dumps(arguments, ensure_ascii=False),
        id=f"call_{uuid.uuid4().hex[:24]}",
    )


class ToolCallParser:
    """Splits streamed text into content to show and completed tool calls."""

    def __init__(self, plan: ToolPlan) -> None:
        self.names = {t.function.name for t in plan.tools}
        self.forced = plan.forced
        self._buffer = ""
        self.calls: list[ParsedCall] = []

    def feed(self, text: str) -> tuple[str, list[ParsedCall]]:
        """Content that is safe to send now, and calls completed by this text."""
        self._buffer += text
        if self.forced:
            return "", []
        content, found = "", []
        while True:
            start = self._buffer.find(OPEN)
            if start < 0:
                keep = _partial_open(self._buffer)
                cut = len(self._buffer) - keep
                content += self._buffer[:cut]
                self._buffer = self._buffer[cut:]
                break
            end = self._buffer.find(CLOSE, start)
            if end < 0:
                content += self._buffer[:start]
                self._buffer = self._buffer[start:]
                break
            call = _parse_call(self._buffer[start + len(OPEN) : end].strip(), self.names)
            content += self._buffer[:start] if call else self._buffer[: end + len(CLOSE)]
            if call:
                found.append(call)
            self._buffer = self._buffer[end + len(CLOSE) :]
        self.calls.extend(found)
        return content, found

    def finish(self) -> tuple[str, list[ParsedCall]]:
        """The end of the output: what was held back, as content or as a last call."""
        rest, self._buffer = self._buffer, ""
        body = rest.strip().removeprefix(OPEN).removesuffix(CLOSE).strip()
        call = _parse_call(body, self.names) if body else None
        if call is None:
            return rest, []
        self.calls.append(call)
        return "", [call]


def _partial_open(text: str) -> int:
    for k in range(min(len(text), len(OPEN) - 1), 0, -1):
        if OPEN.startswith(text[-k:]):
            return k
    return 0
