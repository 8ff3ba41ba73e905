"""Model names and aliases: a small safe alphabet, so a name is never a path."""

from __future__ import annotations

import re

from inhouse.errors import InvalidRequest

MAX_NAME = 64
NAME_RULE = (
    f"1-{MAX_NAME} characters: lowercase letters, digits, '.', '_' and '-', starting with a "
    "letter or digit, optionally followed by ':tag' in the same characters; no '..'"
)
_PART = r"[a-z0-9][a-z0-9._-]*"
_NAME = re.compile(rf"{_PART}(?::{_PART})?")
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


def check_name(name: str, what: str = "model name") -> str:
    """Return `name` if it follows NAME_RULE; otherwise raise InvalidRequest stating the rule."""
    if len(name) <= MAX_NAME and ".." not in name and _NAME.fullmatch(name):
        return name
    raise InvalidRequest(f"invalid {what} {name!r}: a name is {NAME_RULE}", param="name")


def name_from_filename(filename: str) -> str:
    """A valid name from a file name: "Qwen2.5-0.5B.Q4_K_M.gguf" -> "qwen2.5-0.5b.q4_k_m"."""
    stem = filename.rsplit("/", 1)[-1]
    if stem.lower().endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    name = _UNSAFE.sub("-", stem.lower())
    name = re.sub(r"\.{2,}", ".", name).lstrip("._-")[:MAX_NAME].rstrip("._-")
    if not name:
        raise InvalidRequest(f"cannot derive a model name from {filename!r}; give one with --name")
    return check_name(name)
