"""Who may read a data set's content, as a SQL condition on TuningDataset.

A data set is read by its owner and by the members of the groups it is shared with; an
admin manages every data set (lists, shows its sizes, deletes it) but reads only these,
as knowledge does. Without auth (the local operator) all is readable.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, or_, select, true

from inhouse.auth.policy import Principal
from inhouse.store.tables import TuningDataset, TuningDatasetShare


def may_read(principal: Principal) -> ColumnElement[bool]:
    """Condition on TuningDataset: the principal may read this data set's examples."""
    if principal.via == "local":
        return true()
    shared = select(TuningDatasetShare.dataset_id).where(
        TuningDatasetShare.group_id.in_(principal.group_ids)
    )
    owned = (
        TuningDataset.owner_user_id == principal.user_id
        if principal.user_id is not None
        else false()
    )
    return or_(owned, TuningDataset.id.in_(shared))
