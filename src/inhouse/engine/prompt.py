"""Chat prompts as token ids in which only the template's own text becomes control tokens.

A chat template writes control tokens (`<|im_start|>`, `<|eot_id|>`) around the caller's
messages. Tokenizing the whole rendered prompt with special-token parsing on would also turn
control-token text inside a message into real control tokens: a user message carrying
`<|im_start|>system` would open a real system turn (prompt injection, OWASP LLM01). So the
prompt is rendered twice: as it is, and with every string the caller sent wrapped in markers
that no caller can guess. Where the marked render, markers removed, is the same text, the
markers show exactly which spans of the prompt came from the caller; those are tokenized as
plain text. A template that transforms the caller's text so that the markers no longer line
up (slicing, for instance) leaves no such map: then a message that holds control-token text
is refused rather than tokenized unsafely.

Strings a template compares rather than shows (a role, a "type") stay unwrapped; those the
API has not validated, and keys the caller chose but the template may look up, are checked
for control-token text on their own and refused if they hold any.

Whenever no caller text holds control-token text, the token ids are those of the whole prompt
tokenized at once, exactly as before; the extra cost is one render and a count of the control
tokens (those in each piece of template text are counted once per model and remembered).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from inhouse.engine.templates import ChatTemplate, Message, UnsafeTemplate
from inhouse.errors import InvalidRequest

# Keys the API itself defines (message and tool fields, JSON-schema keywords): never caller
# text. Any other key, and a "type" inside a schema, is left unmarked (a template looks them
# up and compares them) and checked for control-token text instead.
_KNOWN_KEYS = frozenset(
    {
        *("role", "content", "name", "tool_calls", "tool_call_id", "type", "function"),
        *("arguments", "parameters", "description", "properties", "required", "items"),
        *("enum", "const", "default", "title", "format", "pattern", "minimum", "maximum"),
        *("minLength", "maxLength", "minItems", "maxItems", "additionalProperties"),
        *("anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions"),
    }
)

# the usual JSON-schema and tool "type" names, which need no check
_TYPES = frozenset(
    {"function", "object", "string", "integer", "number", "boolean", "array", "null"}
)


def _child_mode(mode: str, key: Any) -> str:
    """How the value under `key` is read. "message": the API's own fields; "data": tool-call
    arguments, free data whose keys are caller text too; "schema": a tool's JSON schema;
    "names": a schema's `properties`, whose keys are names the caller chose."""
    if mode == "message":
        return {"arguments": "data", "parameters": "schema"}.get(key, "message")
    if mode == "schema":
        return "names" if key == "properties" else "schema"
    return "schema" if mode == "names" else mode


def _compared(mode: str, key: str) -> bool:
    """Strings a template compares rather than shows: a role, a type."""
    return (mode == "message" and key in ("role", "type")) or (mode == "schema" and key == "type")


class Tokenizer(Protocol):
    """What of a ModelRunner this module uses."""

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]: ...

    def token_bytes(self, token: int) -> bytes: ...


@dataclass(frozen=True)
class Part:
    """A span of the rendered prompt: the template's own text, or text the caller sent."""

    text: str
    from_template: bool


@dataclass(frozen=True)
class ChatPrompt:
    """A rendered chat prompt, with where its caller text lies when the template allows."""

    text: str
    parts: tuple[Part, ...] | None
    caller_strings: tuple[str, ...]
    unmarked: tuple[str, ...] = ()


class _Marks:
    """Markers around each caller string, made of a random nonce that no caller can know."""

    def __init__(self) -> None:
        nonce = secrets.token_hex(12)
        self.open, self.close = f"{nonce}[", f"]{nonce}"
        self.nonce = nonce

    def wrap(self, value: Any, key: str = "", mode: str = "message") -> Any:
        """`value` with each caller string wrapped (its outer whitespace left outside the
        markers, so a template's `trim` still trims it), but for those a template compares
        (`_compared`); `unmarked_strings` lists what is left unwrapped."""
        if isinstance(value, str):
            return value if _compared(mode, key) else self.mark(value)
        if isinstance(value, dict):
            marks_keys = mode in ("data", "names")
            return {
                self.mark(k) if marks_keys else k: self.wrap(v, k, _child_mode(mode, k))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.wrap(v, key, mode) for v in value]
        return value

    def mark(self, text: Any) -> Any:
        """`text` with its stripped core between the markers (blank text: as it is)."""
        core = text.strip() if isinstance(text, str) else ""
        if not core:
            return text
        start = text.index(core)
        end = start + len(core)
        return f"{text[:start]}{self.open}{core}{self.close}{text[end:]}"

    def split(self, marked: str) -> tuple[Part, ...] | None:
        """The parts of a marked render; None when the markers do not pair up."""
        chunks = marked.split(self.open)
        parts = [Part(chunks[0], True)]
        for chunk in chunks[1:]:
            inside, found, after = chunk.partition(self.close)
            if not found:
                return None
            parts += [Part(inside, False), Part(after, True)]
        if any(self.nonce in p.text for p in parts):
            return None
        return tuple(p for p in parts if p.text)


def caller_strings(value: Any) -> list[str]:
    """Every string the caller sent inside `value` (messages or tools), keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *caller_strings(v)) if isinstance(s, str)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in caller_strings(v)]
    return []


def unmarked_strings(value: Any, key: str = "", mode: str = "message") -> list[str]:
    """Caller strings that `_Marks.wrap` leaves unwrapped and the API did not validate:
    keys outside the API's own, and "type"s other than the usual names."""
    if isinstance(value, str):
        return [value] if key == "type" and _compared(mode, key) and value not in _TYPES else []
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if mode in ("message", "schema") and k not in _KNOWN_KEYS:
                out.append(str(k))
            out += unmarked_strings(v, k, _child_mode(mode, k))
    elif isinstance(value, list | tuple):
        for v in value:
            out += unmarked_strings(v, key, mode)
    return out


def render_prompt(
    template: ChatTemplate,
    messages: Sequence[Message],
    *,
    tools: Sequence[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
) -> ChatPrompt:
    """Render `messages`, and map which spans of the result came from the caller."""
    text = template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)
    marks = _Marks()
    try:
        marked = template.render(
            marks.wrap(list(messages)),
            add_generation_prompt=add_generation_prompt,
            tools=marks.wrap(tools),
        )
    except (InvalidRequest, UnsafeTemplate):  # the markers led the template astray
        parts = None
    else:
        parts = marks.split(marked)
    if parts is not None and "".join(p.text for p in parts) != text:
        parts = None
    strings = tuple(caller_strings([list(messages), tools]))
    unmarked = tuple(unmarked_strings([list(messages), tools]))
    return ChatPrompt(text, parts, strings, unmarked)


def _controls(runner: Tokenizer, tokens: list[int]) -> int:
    """How many control tokens (those that add no bytes to text) `tokens` holds."""
    return sum(1 for t in tokens if not runner.token_bytes(t))


def _has_controls(runner: Tokenizer, text: str) -> bool:
    return _controls(runner, runner.tokenize(text, add_special=False, parse_special=True)) > 0


TemplateCounts = dict[tuple[str, bool], int]
"""Control tokens in each piece of template text, for one runner: the pieces repeat from
request to request ("<|im_end|>\n<|im_start|>user\n"), and tokenizing them again costs more
than the whole check otherwise. Its owner (the model's AsyncEngine) keeps it."""


def tokenize_prompt(
    runner: Tokenizer, prompt: ChatPrompt, counts: TemplateCounts | None = None
) -> list[int]:
    """Token ids of `prompt`; control-token text from the caller stays plain text. `counts`
    remembers, across calls with the same runner, what template text holds."""
    tokens = runner.tokenize(prompt.text, add_special=True, parse_special=True)
    if prompt.parts is None:
        if any(_has_controls(runner, s) for s in prompt.caller_strings):
            raise InvalidRequest(
                "a message contains the text of one of the model's control tokens, and this "
                "model's chat template rewrites message text, so it cannot be kept apart "
                "from the template's own control tokens; remove that text",
                param="messages",
            )
        return tokens
    if prompt.unmarked and _has_controls(runner, "\n".join(prompt.unmarked)):
        raise InvalidRequest(
            "a key or type name in the messages or tools contains the text of one of the "
            "model's control tokens; remove that text",
            param="messages",
        )
    counts = {} if counts is None else counts
    expected = _template_controls(runner, counts, "", add_special=True)
    for part in prompt.parts:
        if part.from_template:
            expected += _template_controls(runner, counts, part.text, add_special=False)
    if _controls(runner, tokens) == expected:
        return tokens
    return _tokenize_parts(runner, prompt.parts)


_MAX_CACHED = 4096
_CACHED_CHARS = 512


def _template_controls(
    runner: Tokenizer, counts: TemplateCounts, text: str, *, add_special: bool
) -> int:
    key = (text, add_special)
    count = counts.get(key)
    if count is None:
        tokens = runner.tokenize(text, add_special=add_special, parse_special=True)
        count = _controls(runner, tokens)
        if len(text) <= _CACHED_CHARS and len(counts) < _MAX_CACHED:
            counts[key] = count
    return count


def _tokenize_parts(runner: Tokenizer, parts: tuple[Part, ...]) -> list[int]:
    """Caller spans that hold control-token text as plain text; the text between them
    (template text and clean caller text) as one piece each, as the tokenizer would."""
    pieces: list[tuple[str, bool]] = []
    for part in parts:
        plain = not part.from_template and _has_controls(runner, part.text)
        if pieces and not plain and pieces[-1][1]:
            pieces[-1] = (pieces[-1][0] + part.text, True)
        else:
            pieces.append((part.text, not plain))
    tokens: list[int] = []
    for i, (text, special) in enumerate(pieces):
        tokens += runner.tokenize(text, add_special=i == 0, parse_special=special)
    return tokens
