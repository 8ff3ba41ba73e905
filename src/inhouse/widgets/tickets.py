"""Frame tickets: short-lived proof that a widget's frame was served to one allowed origin.

The frame page is only served to a browser that says (Referer, and CSP frame-ancestors
enforces it) that an allowed origin embeds it; the page carries a ticket naming that origin,
and the chat endpoint answers only requests that carry a valid one. Tickets are HMAC-signed
with a key derived from the audit key, so every gateway sharing the store accepts them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from inhouse.errors import Forbidden

TICKET_TTL_S = 3600.0
CONTEXT = b"inhouse widget frame ticket v1"
MAX_TICKET_CHARS = 1024


class Tickets:
    """Issues and checks frame tickets with a key of their own (derived, never stored)."""

    def __init__(self, master_key: bytes) -> None:
        self._key = hmac.new(master_key, CONTEXT, hashlib.sha256).digest()

    def issue(self, widget_id: str, origin: str, now: float | None = None) -> str:
        """A ticket for `widget_id` embedded by `origin`, valid for TICKET_TTL_S."""
        expires = int((now if now is not None else time.time()) + TICKET_TTL_S)
        payload = f"{widget_id}|{origin}|{expires}".encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(payload)}"

    def check(self, ticket: str, widget_id: str, now: float | None = None) -> str:
        """The origin a valid, unexpired ticket of this widget was issued for, or Forbidden."""
        body, _, mac = ticket[:MAX_TICKET_CHARS].partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            payload = b""
        if not payload or len(ticket) > MAX_TICKET_CHARS or not _same(mac, self._sign(payload)):
            raise Forbidden("this widget frame's ticket is not valid", code="ticket_invalid")
        ticket_widget, origin, expires = payload.decode().split("|")
        if ticket_widget != widget_id:
            raise Forbidden("this widget frame's ticket is not valid", code="ticket_invalid")
        if float(expires) <= (now if now is not None else time.time()):
            raise Forbidden("this widget session has expired; reload it", code="ticket_expired")
        return origin

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()


def _same(sent: str, expected: str) -> bool:
    """Constant-time comparison that also takes text that is not ASCII (never equal then)."""
    return hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode())
