"""One admin action = one transaction, acting as the request's principal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from inhouse.api.deps import app_state
from inhouse.api.guard import client_ip, principal_of
from inhouse.auth.directory import Directory
from inhouse.auth.limits import LIMIT_FIELDS, UNCHANGED, LimitsUpdate


@contextmanager
def directory_for(request: Request, *, write: bool) -> Iterator[Directory]:
    state = app_state(request)
    transaction = state.db.write() if write else state.db.read()
    with transaction as session:
        yield Directory(session, state.audit, principal_of(request).actor, client_ip(request))


class LimitsBody(BaseModel):
    """Quota fields of a PATCH: absent keeps a limit, null clears it, a number sets it."""

    model_config = ConfigDict(extra="forbid")

    tokens_per_day: int | None = Field(default=None, ge=0)
    tokens_per_month: int | None = Field(default=None, ge=0)
    requests_per_minute: int | None = Field(default=None, ge=0)

    def update(self) -> LimitsUpdate:
        given = self.model_fields_set
        return LimitsUpdate(
            **{name: getattr(self, name) if name in given else UNCHANGED for name in LIMIT_FIELDS}
        )
