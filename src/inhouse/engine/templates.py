"""Chat templates from the GGUF, rendered in a sandboxed Jinja environment.

A template is data from a model file, so it is treated as untrusted: it is checked before it
is ever rendered (no access to underscore attributes, the way into Python internals), and
rendered in Jinja's immutable sandbox as a second line of defence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jinja2 import TemplateError, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from inhouse.errors import InvalidRequest

Message = dict[str, Any]


class UnsafeTemplate(ValueError):
    """The template reaches for Python internals; it is refused without being rendered."""


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """Jinja's sandbox renders an unsafe attribute as empty; here it stops the render."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to {attribute!r} of a {type(obj).__name__} is unsafe")


def _raise_exception(message: str) -> None:
    raise InvalidRequest(f"the chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _check_safe(tree: nodes.Template) -> None:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        key: object = None
        if isinstance(node, nodes.Getattr):
            key = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key = node.arg.value
        if isinstance(key, str) and key.startswith("_"):
            raise UnsafeTemplate(f"chat template accesses a private attribute: {key!r}")


class ChatTemplate:
    """A compiled, checked chat template; `render` turns messages into the prompt text."""

    def __init__(
        self, source: str, *, bos_token: str = "", eos_token: str = "", adds_bos: bool = False
    ) -> None:
        env = _StrictSandbox(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            _check_safe(env.parse(source))
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise UnsafeTemplate(f"chat template does not compile: {exc}") from exc
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.adds_bos = adds_bos
        self.knows_tools = "tools" in source

    def render(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        try:
            text = self._template.render(
                messages=list(messages),
                add_generation_prompt=add_generation_prompt,
                tools=tools,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except SecurityError as exc:
            raise UnsafeTemplate(f"chat template tried an unsafe operation: {exc}") from exc
        except TemplateError as exc:
            raise InvalidRequest(f"the chat template failed on these messages: {exc}") from exc
        # the tokenizer adds BOS itself where the model wants one: never twice
        if self.adds_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text


CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Used when a model file carries no template of its own."""
