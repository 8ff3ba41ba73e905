"""Chat templates from the GGUF, rendered in a sandboxed Jinja environment.

A template is data from a model file, so it is treated as untrusted: it is checked before it
is ever rendered (no access to underscore attributes, the way into Python internals), and
rendered in Jinja's immutable sandbox as a second line of defence. The sandbox also counts
what a render does (template_limits): a template that loops, multiplies strings or runs too
long fails that render with TemplateLimitExceeded instead of taking the server with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from jinja2 import TemplateError, Undefined, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from inhouse.engine.template_limits import (
    DEFAULT_LIMITS,
    Budget,
    RenderLimits,
    TemplateLimitExceeded,
    binop_size,
    check_int_op,
    counted,
    current_budget,
    end_budget,
    guarded_filter,
    input_size,
    method_size,
    start_budget,
)
from inhouse.errors import InvalidRequest

Message = dict[str, Any]


class UnsafeTemplate(ValueError):
    """The template reaches for Python internals; it is refused without being rendered."""


# filters the compiler wraps around every for loop's items and every `~` concatenation; the
# colon keeps a template from naming them
_LOOP, _SIZE = "inhouse:loop", "inhouse:size"


@pass_context
def _loop_items(context: Context, items: Any) -> Iterator[Any]:
    return counted(current_budget(), items)


@pass_context
def _checked(context: Context, value: Any) -> Any:
    budget = current_budget()
    if budget is not None:
        budget.tick()
        budget.made(value)
    return value


class _Guard(NodeTransformer):
    """Counts loop iterations and checks concatenations: neither passes through a hook."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, _SIZE, [], [], None, None, lineno=node.lineno)


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """Jinja's sandbox, stopping at unsafe attributes and charging every operation to the
    render's budget (template_limits)."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True)
        self.filters = {name: guarded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_LOOP] = _loop_items
        self.filters[_SIZE] = _checked

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Guard().visit(super()._parse(source, name, filename))
        tree.set_environment(self)
        return tree  # type: ignore[no-any-return]

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to {attribute!r} of a {type(obj).__name__} is unsafe")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        if operator == "+" and type(left) is str and type(right) is str:
            # no bigger than its operands together: capped, not counted in the total
            budget.will_make(len(left) + len(right))
            return left + right
        check_int_op(operator, left, right)
        budget.will_make(binop_size(operator, left, right, budget.max_value))
        return budget.made(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            budget.will_make(method_size(getattr(target, "__name__", ""), owner, args, kwargs))
        return budget.made(super().call(__context, __obj, *args, **kwargs))


def _budget() -> Budget:
    budget = current_budget()
    if budget is None:
        raise RuntimeError("a chat template ran outside a render budget")
    return budget


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
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        adds_bos: bool = False,
        limits: RenderLimits = DEFAULT_LIMITS,
    ) -> None:
        env = _StrictSandbox()
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
        self.limits = limits
        self.knows_tools = "tools" in source

    def render(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        variables = {
            "messages": list(messages),
            "add_generation_prompt": add_generation_prompt,
            "tools": tools,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }
        budget = Budget(self.limits, input_size(variables["messages"], tools))
        token = start_budget(budget)
        try:
            text = _generate(self._template.generate(**variables), budget)
        except SecurityError as exc:
            raise UnsafeTemplate(f"chat template tried an unsafe operation: {exc}") from exc
        except InvalidRequest:
            raise
        except TemplateError as exc:
            raise InvalidRequest(f"the chat template failed on these messages: {exc}") from exc
        except (RecursionError, MemoryError) as exc:
            raise TemplateLimitExceeded(
                "the chat template nested or grew too deeply on these messages"
            ) from exc
        except Exception as exc:  # the template is a program: any error of its is its own
            raise InvalidRequest(
                f"the chat template failed on these messages: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            end_budget(token)
        # the tokenizer adds BOS itself where the model wants one: never twice
        if self.adds_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text


def _generate(chunks: Iterator[str], budget: Budget) -> str:
    """The template's output, refused as soon as it grows past the size cap."""
    out: list[str] = []
    size = 0
    for chunk in chunks:
        budget.tick()
        size += len(chunk)
        budget.will_make(size)
        out.append(chunk)
    return "".join(out)


CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Used when a model file carries no template of its own."""
