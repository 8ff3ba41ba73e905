"""Which collections a principal may read, as a SQL condition every retrieval query carries."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import ColumnElement, Select, and_, select, true

from inhouse.auth.policy import Principal, Role
from inhouse.config import KnowledgeSettings
from inhouse.store.tables import GroupCollection, KnowledgeCollection


def may_read(principal: Principal, settings: KnowledgeSettings) -> ColumnElement[bool]:
    """Condition on KnowledgeCollection: the principal may read this collection's content.

    Nobody reads by role alone: an admin reads what their groups are granted (unless
    `admins_read_all`), and a key's collection scope narrows whatever the user may read.
    Without auth (the local operator) there is no one to tell apart, so all is readable.
    """
    if principal.via == "local":
        return true()
    condition: ColumnElement[bool] = true()
    if principal.role is Role.ADMIN and not settings.admins_read_all:
        granted = select(GroupCollection.collection).where(
            GroupCollection.group_id.in_(principal.group_ids)
        )
        condition = KnowledgeCollection.name.in_(granted)
    if principal.collections is not None:
        condition = and_(condition, KnowledgeCollection.name.in_(sorted(principal.collections)))
    return condition


def readable_ids(
    principal: Principal, settings: KnowledgeSettings, names: Collection[str] | None
) -> Select[int]:
    """Ids of the collections named (None: all) that the principal may read."""
    query = select(KnowledgeCollection.id).where(may_read(principal, settings))
    if names is not None:
        query = query.where(KnowledgeCollection.name.in_(sorted(names)))
    return query
