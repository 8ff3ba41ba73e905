"""Web origins as browsers send them (`scheme://host[:port]`), checked and normalized."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from inhouse.errors import InvalidRequest

DEFAULT_PORTS = {"http": 80, "https": 443}
HOST = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
MAX_ORIGINS = 32


def normalize_origin(value: str) -> str:
    """`value` as a browser's Origin header would say it (lowercase, no default port), or
    InvalidRequest: only http(s), a host (ASCII: punycode for IDNs) and an optional port."""
    refused = InvalidRequest(
        f"{value[:200]!r} is not an origin: write scheme://host[:port], e.g. "
        "https://www.example.com, without a path",
        param="origins",
    )
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise refused from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in DEFAULT_PORTS or parts.username is not None or parts.password is not None:
        raise refused
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise refused
    if not (HOST.match(host) or _ipv6(host)) or len(host) > 253:
        raise refused
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        return f"{scheme}://{shown}:{port}"
    return f"{scheme}://{shown}"


def normalize_origins(values: list[str]) -> list[str]:
    """Each origin normalized, without repeats; at least one and at most MAX_ORIGINS."""
    origins = sorted({normalize_origin(v) for v in values})
    if not 1 <= len(origins) <= MAX_ORIGINS:
        raise InvalidRequest(f"a widget needs 1 to {MAX_ORIGINS} allowed origins", param="origins")
    return origins


def origin_of(url: str | None) -> str | None:
    """The origin of a URL such as a Referer header; None when there is none or it is odd."""
    if not url:
        return None
    parts = urlsplit(url)
    try:
        return normalize_origin(f"{parts.scheme}://{parts.netloc}")
    except (InvalidRequest, ValueError):
        return None


def _ipv6(host: str) -> bool:
    return ":" in host and re.fullmatch(r"[0-9a-f:.]+", host) is not None
