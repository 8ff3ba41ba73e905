"""Limits on one chat-template render: operations, the size of what it builds, and time.

A chat template is a program from a model file, and its input is the caller's conversation.
The sandbox keeps it away from Python internals; these limits keep it from spending unbounded
time or memory. Every loop iteration, call, filter and intercepted operator is one operation,
counted against a budget and checked against a deadline. A string or container built by the
template is checked against a size cap: before it is made where its size can be known from
the operands (`'ab ' * 30000000`, `s.replace(a, b)`, `x.center(n)`), and after it is made
otherwise. The caps grow with the size of the conversation, so a long prompt is never refused
for being long, only a template for multiplying it.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2.utils import Namespace

from inhouse.errors import InvalidRequest

_CONTAINERS = (list, tuple, set, frozenset, deque, KeysView, ValuesView, ItemsView)
MAX_INT_BITS = 1 << 16  # integers beyond this are a way to burn CPU, not a prompt
# a width or precision in a %-format field, and in a str.format field's spec
_PERCENT_WIDTH = re.compile(r"%[-#0 +]*\.?(\d+)")
_FORMAT_WIDTH = re.compile(r"\{[^{}:]*:[^{}\d]*\.?(\d+)")


class TemplateLimitExceeded(InvalidRequest):
    """A chat template needed more operations, memory or time than a render may use."""

    code = "chat_template_limit"


@dataclass(frozen=True)
class RenderLimits:
    """What one render may use; the size caps grow with the size of its input."""

    operations: int = 1_000_000
    value_chars: int = 4 << 20  # one string (or container, summed deeply) it builds
    total_chars: int = 64 << 20  # every string it builds, summed over the render
    seconds: float = 5.0


DEFAULT_LIMITS = RenderLimits()


@dataclass
class Budget:
    """The running account of one render against its limits."""

    limits: RenderLimits
    input_chars: int = 0
    operations: int = 0
    chars: int = 0
    deadline: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.limits.seconds
        self.max_value = self.limits.value_chars + 2 * self.input_chars
        self.max_total = self.limits.total_chars + 16 * self.input_chars

    def tick(self) -> None:
        """Count one operation; raise when the count or the time runs out."""
        self.operations += 1
        if self.operations & 31:  # the clock is read every 32 operations
            return
        if self.operations > self.limits.operations:
            raise TemplateLimitExceeded(
                f"the chat template needed more than {self.limits.operations} loop iterations "
                "and calls on these messages"
            )
        if time.monotonic() > self.deadline:
            raise TemplateLimitExceeded(
                f"the chat template ran longer than {self.limits.seconds:g} s on these messages"
            )

    def will_make(self, size: int) -> None:
        """Refuse to build a value of `size` characters (or items) when it exceeds the cap."""
        if size > self.max_value:
            raise TemplateLimitExceeded(
                f"the chat template tried to build a value of {size} characters; "
                f"the limit is {self.max_value}"
            )

    def made(self, value: Any) -> Any:
        """Check a value the template built; count its new characters towards the total."""
        if type(value) is str:  # the common case, without the walk of deep_size
            self.will_make(len(value))
            self.chars += len(value)
            if self.chars > self.max_total:
                raise TemplateLimitExceeded(
                    f"the chat template built more than {self.max_total} characters in all"
                )
        elif isinstance(value, list | tuple | dict | set | frozenset | str):
            self.will_make(deep_size(value, self.max_value))
        return value


_current: ContextVar[Budget | None] = ContextVar("template_budget", default=None)


current_budget: Callable[[], Budget | None] = _current.get
"""The budget of the render running in this thread (None outside a render)."""


def start_budget(budget: Budget) -> object:
    """Make `budget` the one the sandbox hooks charge (in this thread); returns a reset token."""
    return _current.set(budget)


def end_budget(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def deep_size(value: Any, stop: int) -> int:
    """About how many characters `value` takes as text: its strings, the digits of its
    numbers and one per container item, counted deeply (up to `stop`). Turning any value
    into text (`{{ x }}`, `x | string`) makes at most a few times this many characters."""
    total, stack = 0, [value]
    while stack and total <= stop:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bytes or isinstance(item, str | bytes):
            total += len(item)
        elif kind is dict or isinstance(item, Mapping):
            total += len(item)
            stack += item.keys()
            stack += item.values()
        elif isinstance(item, _CONTAINERS):
            total += len(item)
            stack += item
        elif kind is int:
            total += item.bit_length() // 3 + 1  # decimal digits, over-counted a little
        elif isinstance(item, Namespace):  # holds what the template stored in it
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        else:
            total += 1
    return total


def input_size(*values: Any) -> int:
    """Size of what the caller sent (messages, tools): the caps grow with it."""
    return sum(deep_size(v, 1 << 62) for v in values)


# ----- estimates of what an operation will build, from its operands ----------------------------


def _widths(pattern: re.Pattern[str], text: str) -> int:
    """The largest field width or precision in a format string."""
    widths = [int(w) if len(w) < 19 else 1 << 62 for w in pattern.findall(text) if w]
    return max(widths, default=0)


def format_size(pattern: re.Pattern[str], text: str, args: Iterable[Any], star: bool) -> int:
    """Characters a format string will build: its text, its widths and its arguments."""
    printed = sum(
        _arg_size(a) if star and isinstance(a, int) else deep_size(a, 1 << 62) + 24 for a in args
    )
    return len(text) + _widths(pattern, text) + printed


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def binop_size(operator: str, left: Any, right: Any, stop: int) -> int:
    """Characters or items the operation will build (0 when it builds no sequence; counting
    stops past `stop`)."""
    if operator == "*":
        if isinstance(left, int) and isinstance(right, str | list | tuple):
            left, right = right, left
        if isinstance(right, int) and isinstance(left, str | list | tuple):
            return deep_size(left, stop) * max(right, 0)
    elif operator == "+" and isinstance(left, str | list | tuple):
        return deep_size(left, stop) + deep_size(right, stop)
    elif operator == "%" and isinstance(left, str):
        args = right if isinstance(right, tuple) else (right,)
        return format_size(_PERCENT_WIDTH, left, args, "*" in left)
    return 0


def check_int_op(operator: str, left: Any, right: Any) -> None:
    """Refuse integer arithmetic whose result would be astronomically large."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if operator == "*":
        bits = left.bit_length() + right.bit_length()
    elif operator == "**":
        bits = left.bit_length() * right if abs(left) > 1 and right > 0 else 0
    else:
        return
    if bits > MAX_INT_BITS:
        raise TemplateLimitExceeded(
            f"the chat template computed an integer of more than {MAX_INT_BITS} bits"
        )


def _arg_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value)  # a width, a count or a repeat
    return _length(value)


def method_size(name: str, text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Characters a `str` method called from a template will build (0: cannot amplify)."""
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(text), _arg_size(args[0]) if args else 0)
    if name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        return len(text) * max(_arg_size(tab), 1) if "\t" in text else len(text)
    if name == "replace" and len(args) >= 2:
        return replace_size(text, args[0], args[1])
    if name in ("format", "format_map"):
        return format_size(_FORMAT_WIDTH, text, (*args, *kwargs.values()), False)
    if name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((_length(v) for v in args[0].values()), default=1)
        return len(text) * max(longest, 1)
    return 0


def replace_size(text: Any, old: Any, new: Any) -> int:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return 0
    hits = text.count(old) if old else len(text) + 1
    return len(text) + hits * len(new)


def join_size(separator: Any, items: list[Any]) -> int:
    each = sum(deep_size(i, 1 << 62) if isinstance(i, str) else 64 for i in items)
    return each + _length(separator) * len(items)


# ----- filters -------------------------------------------------------------------------------


def _filter_size(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Characters a built-in filter will build from these arguments (0: cannot amplify)."""
    value = args[0] if args else None
    rest = args[1:]
    if name == "center":
        return max(_length(value), _arg_size(rest[0]) if rest else 80)
    if name == "indent":
        width = rest[0] if rest else kwargs.get("width", 4)
        lines = str(value).count("\n") + 1 if isinstance(value, str) else 1
        return _length(value) + lines * _arg_size(width)
    if name == "replace" and len(rest) >= 2:
        return replace_size(value, rest[0], rest[1])
    if name == "format" and isinstance(value, str):
        return format_size(_PERCENT_WIDTH, value, (*rest, *kwargs.values()), "*" in value)
    if name in ("batch", "slice", "truncate", "wordwrap"):
        return max((_arg_size(a) for a in (*rest, *kwargs.values())), default=0)
    if name == "tojson":
        indent = kwargs.get("indent", rest[0] if rest else None)
        return _arg_size(indent) * (deep_size(value, 1 << 62) + 1) if indent else 0
    return 0


def guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` (a Jinja filter) with its output estimated before and checked after the call."""
    pass_arg = getattr(func, "jinja_pass_arg", None)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        values = args[1:] if pass_arg is not None else args
        if name == "join" and values and not isinstance(values[0], str | Mapping):
            items = list(values[0])
            values = (items, *values[1:])
            args = (*args[: len(args) - len(values)], *values)
            separator = values[1] if len(values) > 1 else kwargs.get("d", "")
            size = join_size(separator, items)
        else:
            size = _filter_size(name, values, kwargs)
        if budget is None:  # folded at compile time: refuse to fold what may be large
            if size > RenderLimits.value_chars:
                raise TemplateLimitExceeded("too large to evaluate at compile time")
            return func(*args, **kwargs)
        budget.tick()
        budget.will_make(size)
        return budget.made(func(*args, **kwargs))

    guarded.__name__ = getattr(func, "__name__", name)
    if pass_arg is not None:
        guarded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return guarded


def counted(budget: Budget | None, items: Iterable[Any]) -> Iterator[Any]:
    """`items`, charging one operation to `budget` per item (a template's for loop)."""
    if budget is None:
        raise RuntimeError("a chat template ran outside a render budget")
    for item in items:
        budget.tick()
        yield item
