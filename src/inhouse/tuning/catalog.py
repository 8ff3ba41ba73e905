"""Finding data sets and showing them (sizes, owner, readers; never their examples)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inhouse.errors import NotFound
from inhouse.store.tables import Group, TuningDataset, TuningDatasetShare, User


class DatasetNotFound(NotFound):
    code = "file_not_found"


def find(session: Session, ident: str) -> TuningDataset:
    """The data set named `ident`, or whose file id it is; DatasetNotFound otherwise."""
    column = TuningDataset.public_id if ident.startswith("file-") else TuningDataset.name
    found = session.scalar(select(TuningDataset).where(column == ident))
    if found is None:
        raise DatasetNotFound(f"no data set {ident!r}")
    return found


def readers(session: Session, dataset_id: int) -> list[str]:
    query = (
        select(Group.name)
        .join(TuningDatasetShare, TuningDatasetShare.group_id == Group.id)
        .where(TuningDatasetShare.dataset_id == dataset_id)
        .order_by(Group.name)
    )
    return list(session.scalars(query))


def summary(session: Session, dataset: TuningDataset) -> dict[str, Any]:
    owner = session.get(User, dataset.owner_user_id) if dataset.owner_user_id else None
    return {
        "id": dataset.public_id,
        "name": dataset.name,
        "owner": owner.name if owner else None,
        "shared_with": readers(session, dataset.id),
        "format": dataset.format,
        "source": dataset.source,
        "bytes": dataset.size,
        "examples": dataset.train_count + dataset.eval_count,
        "train": dataset.train_count,
        "eval": dataset.eval_count,
        "duplicates": dataset.duplicates,
        "redacted": dataset.redacted,
        "created_by": dataset.created_by,
        "created_at": dataset.created_at,
    }
