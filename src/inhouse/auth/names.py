"""User and group names: short, lowercase, safe in URLs, logs and CLI output."""

from __future__ import annotations

import re

from inhouse.errors import InvalidRequest

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_name(kind: str, name: str) -> str:
    if not NAME.match(name):
        raise InvalidRequest(
            f"{kind} name {name!r} must be 1-64 characters: lowercase letters, digits, '.', "
            "'_' or '-', starting with a letter or digit",
            param="name",
        )
    return name
