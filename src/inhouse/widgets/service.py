"""Widgets as admins manage them, and the access a publishable token gives.

Each widget is backed by a real API key owned by the admin who created it: scoped to the
widget's one model and its collections, carrying its limits (requests per minute, tokens per
day). Its traffic is therefore admitted by the same quota book, written to the same usage
ledger and audited in the same trail as any key's. That key's secret is never shown: the
widget's own token, a different credential stored hashed here, is the only way to use it,
and it works on the widget's chat route alone (it is no API key anywhere else)."""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.auth.authenticate import principal_for_key_id
from inhouse.auth.directory import Directory
from inhouse.auth.limits import UNCHANGED, LimitsUpdate
from inhouse.auth.policy import Principal
from inhouse.auth.tokens import token_hash
from inhouse.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from inhouse.store.tables import ApiKey, KnowledgeCollection, Widget

from .branding import check_branding
from .origins import normalize_origins

TOKEN_PREFIX = "ihw-"  # never "ih-": the API key check refuses it before any lookup
MAX_TOKEN_CHARS = 256
MAX_COLLECTIONS = 32


def new_widget_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class WidgetSpec:
    """A new widget as an admin describes it."""

    name: str
    model: str
    origins: Sequence[str]
    requests_per_minute: int
    tokens_per_day: int | None = None
    collections: Sequence[str] = ()
    branding: dict[str, str | None] | None = None


@dataclass(frozen=True)
class WidgetAccess:
    """What a valid token may do: chat as `principal` with `widget`'s model and collections."""

    widget: Widget
    principal: Principal


class Widgets:
    """The widget table as one transaction's caller (`actor`) may change it; audited."""

    def __init__(
        self, session: Session, audit: AuditTrail, actor: str, ip: str | None = None
    ) -> None:
        self.session = session
        self.audit = audit
        self.actor = actor
        self.ip = ip
        self.directory = Directory(session, audit, actor, ip)

    def _record(self, action: str, target: str, **detail: Any) -> None:
        self.audit.record(self.session, self.actor, action, target, detail, self.ip)

    def create(self, owner: str, spec: WidgetSpec) -> tuple[Widget, str]:
        """A new widget and its backing key (owned by `owner`); its token, returned here once."""
        name = _checked_name(spec.name)
        origins = normalize_origins(list(spec.origins))
        collections = self._existing(spec.collections)
        branding = check_branding(spec.branding or {})
        public_id = "wgt_" + secrets.token_hex(6)
        limits = LimitsUpdate(
            tokens_per_day=spec.tokens_per_day, requests_per_minute=_rpm(spec.requests_per_minute)
        )
        key, _unshown_secret = self.directory.create_key(
            owner,
            name=f"widget {public_id}",
            models=[spec.model],
            collections=collections,
            limits=limits,
        )
        token = new_widget_token()
        widget = Widget(
            public_id=public_id,
            name=name,
            token_hash=token_hash(token),
            key_id=key.id,
            model=spec.model,
            collections=collections,
            origins=origins,
            branding=branding,
            created_by=owner,
            created_at=time.time(),
            disabled=False,
        )
        self.session.add(widget)
        self.session.flush()
        self._record(
            "widget.create",
            public_id,
            name=name,
            model=spec.model,
            key=key.public_id,
            origins=origins,
            collections=collections,
        )
        return widget, token

    def all(self) -> list[Widget]:
        return list(self.session.scalars(select(Widget).order_by(Widget.created_at)))

    def get(self, public_id: str) -> Widget:
        found = self.session.scalar(select(Widget).where(Widget.public_id == public_id))
        if found is None:
            raise NotFound(f"no widget {public_id!r}")
        return found

    def key_of(self, widget: Widget) -> ApiKey:
        key = self.session.get(ApiKey, widget.key_id)
        assert key is not None  # the foreign key deletes the widget with its key
        return key

    def update(self, public_id: str, **changes: Any) -> Widget:
        """Change the given fields (name, model, origins, collections, branding, disabled,
        requests_per_minute, tokens_per_day); the backing key follows model, collections
        and limits."""
        widget = self.get(public_id)
        key = self.key_of(widget)
        applied: dict[str, Any] = {}
        for field, value in changes.items():
            applied[field] = self._apply(widget, key, field, value)
        limits = LimitsUpdate(
            tokens_per_day=changes.get("tokens_per_day", UNCHANGED),
            requests_per_minute=_rpm(changes.get("requests_per_minute", UNCHANGED)),
        )
        limits.apply(key)
        if applied:
            self._record("widget.update", public_id, **applied)
        return widget

    def _apply(self, widget: Widget, key: ApiKey, field: str, value: Any) -> Any:
        if field == "name":
            widget.name = _checked_name(value)
        elif field == "model":
            widget.model = value
            key.models = [value]
        elif field == "origins":
            widget.origins = normalize_origins(list(value))
        elif field == "collections":
            widget.collections = self._existing(value)
            key.collections = widget.collections
        elif field == "branding":
            widget.branding = check_branding(value)
        elif field == "disabled":
            widget.disabled = bool(value)
        elif field not in ("requests_per_minute", "tokens_per_day"):
            raise InvalidRequest(f"a widget has no field {field!r}", param=field)
        return getattr(widget, field, value)

    def delete(self, public_id: str) -> None:
        """Remove the widget; its key is revoked (kept, so usage by key still names it)."""
        widget = self.get(public_id)
        key = self.key_of(widget)
        self.session.delete(widget)
        self.directory.revoke_key(key.public_id)
        self._record("widget.delete", public_id, key=key.public_id)

    def _existing(self, names: Sequence[str]) -> list[str]:
        wanted = sorted(set(names))
        if len(wanted) > MAX_COLLECTIONS:
            raise InvalidRequest(f"at most {MAX_COLLECTIONS} collections", param="collections")
        query = select(KnowledgeCollection.name).where(KnowledgeCollection.name.in_(wanted))
        missing = set(wanted) - set(self.session.scalars(query))
        if missing:
            raise InvalidRequest(f"no collection named {sorted(missing)[0]!r}", param="collections")
        return wanted


def public_widget(session: Session, public_id: str) -> Widget:
    """An enabled widget, for its loader and frame (which need no token); else NotFound."""
    found = session.scalar(select(Widget).where(Widget.public_id == public_id))
    if found is None or found.disabled:
        raise NotFound(f"no widget {public_id!r}")
    return found


def widget_access(session: Session, public_id: str, token: str, now: float) -> WidgetAccess:
    """What `token` may do with widget `public_id`, or why not (404, 401, 403)."""
    widget = public_widget(session, public_id)
    refused = Unauthorized("this widget token is not valid", code="invalid_widget_token")
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
        raise refused
    if not hmac.compare_digest(token_hash(token), widget.token_hash):
        raise refused
    try:  # the backing key, checked as any presented key is: revoked, expired, disabled
        owner = principal_for_key_id(session, widget.key_id, now)
    except Unauthorized as exc:
        raise Forbidden(f"this widget's key is no longer valid ({exc.message})",
                        code="widget_revoked") from None  # fmt: skip
    # The owner's principal (key, user and group limits, billing group; the owner's role,
    # which here decides only what may be read), narrowed to the widget's one model and to
    # the widget's collections among those the owner may read.
    collections = frozenset(widget.collections)
    if owner.collections is not None:
        collections &= owner.collections
    principal = dataclasses.replace(
        owner, via="widget", models=frozenset({widget.model}), collections=collections
    )
    return WidgetAccess(widget, principal)


def _checked_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 128:
        raise InvalidRequest("a widget's name must be 1 to 128 characters", param="name")
    return name


def _rpm(value: Any) -> Any:
    """A widget always has a request rate limit: 1 to 100,000 per minute."""
    if value is UNCHANGED:
        return value
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100_000:
        raise InvalidRequest(
            "requests_per_minute must be a whole number from 1 to 100000",
            param="requests_per_minute",
        )
    return value
