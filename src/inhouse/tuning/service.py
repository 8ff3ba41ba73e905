"""The tuning data sets API that the CLI and the HTTP API call.

Adding a data set checks every example first: a data set with any bad line, or none, is
refused and nothing is stored. Examples and their split are written with the data set's row
in one audited transaction. Reading examples is for those `access.may_read` lets in;
managing (listing sizes, deleting) is for the owner and for admins.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.auth.directory import Directory
from inhouse.auth.names import check_name
from inhouse.auth.policy import Permission, Principal, allows
from inhouse.config import KnowledgeSettings
from inhouse.errors import Conflict
from inhouse.ledger.periods import parse_since
from inhouse.store.db import Database
from inhouse.store.tables import TuningDataset, TuningDatasetShare, TuningExample
from inhouse.tuning.access import may_read
from inhouse.tuning.catalog import DatasetNotFound, find, summary
from inhouse.tuning.datasets import (
    Example,
    Format,
    InvalidTrainingFile,
    Prepared,
    parse,
    prepare,
)
from inhouse.tuning.sources import collection_examples, feedback_examples

TRAIN, EVAL = "train", "eval"


@dataclass(frozen=True)
class Options:
    """How a new data set is made and who may read it besides its owner."""

    eval_split: float = 0.0
    redact: bool = False
    owner: str | None = None  # a user name; None: the caller (the operator in the CLI)
    share: Sequence[str] = ()  # group names
    actor: str | None = None  # as the audit trail names the caller; None: the principal's


class DatasetService:
    def __init__(self, db: Database, audit: AuditTrail, knowledge: KnowledgeSettings) -> None:
        self.db = db
        self.audit = audit
        self.knowledge = knowledge

    # ----- adding ------------------------------------------------------------------------

    def add(
        self,
        principal: Principal,
        name: str | None,
        data: bytes,
        kind: Format,
        source: str,
        options: Options = Options(),
        ip: str | None = None,
    ) -> dict[str, Any]:
        """Check, redact, deduplicate and split `data`, then store it (name None: its id)."""
        prepared = prepare(parse(data, kind), options.eval_split, options.redact)
        return self._store(principal, name, kind, source, prepared, options, ip)

    def from_feedback(
        self,
        principal: Principal,
        name: str,
        since: str,
        min_rating: int = 1,
        options: Options = Options(),
    ) -> dict[str, Any]:
        """A chat data set of rated answers (corrections preferred) since `since` (`30d`)."""
        start = parse_since(since, time.time())
        with self.db.read() as session:
            examples = feedback_examples(session, start, min_rating)
        if not examples:
            raise InvalidTrainingFile(
                [
                    f"it holds no example: no answer rated {min_rating} or above, or corrected, "
                    f"since {since} with its prompt kept (setting tuning.keep_feedback_text)"
                ]
            )
        prepared = prepare(examples, options.eval_split, options.redact)
        source = f"feedback:since={since},min_rating={min_rating}"
        return self._store(principal, name, Format.CHAT, source, prepared, options)

    def from_feedback_range(
        self,
        principal: Principal,
        name: str,
        after_id: int,
        upto_id: int,
        min_rating: int = 1,
        options: Options = Options(),
    ) -> dict[str, Any]:
        """A chat data set of the rated answers with `after_id < id <= upto_id` (continual
        learning: the feedback that arrived since the last run)."""
        with self.db.read() as session:
            examples = feedback_examples(session, 0.0, min_rating, after_id, upto_id)
        if not examples:
            raise InvalidTrainingFile([f"no usable feedback with id {after_id + 1} to {upto_id}"])
        prepared = prepare(examples, options.eval_split, options.redact)
        source = f"feedback:ids={after_id + 1}-{upto_id},min_rating={min_rating}"
        return self._store(principal, name, Format.CHAT, source, prepared, options)

    def from_collection(
        self, principal: Principal, name: str, collection: str, options: Options = Options()
    ) -> dict[str, Any]:
        """A text data set of the passages of a knowledge collection the principal may read."""
        with self.db.read() as session:
            examples = collection_examples(session, principal, self.knowledge, collection)
        prepared = prepare(examples, options.eval_split, options.redact)
        source = f"collection:{collection}"
        return self._store(principal, name, Format.TEXT, source, prepared, options)

    def _store(
        self,
        principal: Principal,
        name: str | None,
        kind: Format,
        source: str,
        prepared: Prepared,
        options: Options,
        ip: str | None = None,
    ) -> dict[str, Any]:
        public_id = "file-" + secrets.token_hex(12)
        name = check_name("data set", name) if name is not None else public_id
        actor = options.actor or principal.actor
        with self.db.write() as session:
            if session.scalar(select(TuningDataset.id).where(TuningDataset.name == name)):
                raise Conflict(f"a data set named {name!r} exists already")
            directory = Directory(session, self.audit, actor, ip)
            owner = directory.user(options.owner).id if options.owner else principal.user_id
            groups = [directory.group(g).id for g in options.share]
            dataset = TuningDataset(
                public_id=public_id,
                name=name,
                owner_user_id=owner,
                format=kind.value,
                source=source[:1024],
                size=_size(prepared),
                train_count=len(prepared.train),
                eval_count=len(prepared.eval),
                duplicates=prepared.duplicates,
                redacted=prepared.redacted,
                created_by=actor,
                created_at=time.time(),
            )
            session.add(dataset)
            session.flush()
            session.add_all(TuningDatasetShare(dataset_id=dataset.id, group_id=g) for g in groups)
            _add_examples(session, dataset.id, prepared)
            view = summary(session, dataset)
            detail = {k: view[k] for k in ("id", "format", "examples", "duplicates", "redacted")}
            detail |= {"source": source, "shared_with": list(options.share)}
            self.audit.record(session, actor, "tuning.dataset.add", name, detail, ip)
            return view

    # ----- reading and managing ----------------------------------------------------------

    def datasets(self, principal: Principal) -> list[dict[str, Any]]:
        """The data sets the principal may read; a manager (admin) sees every one's sizes."""
        with self.db.read() as session:
            query = select(TuningDataset).order_by(TuningDataset.created_at, TuningDataset.id)
            if not _manages(principal):
                query = query.where(may_read(principal))
            return [summary(session, d) for d in session.scalars(query)]

    def show(self, principal: Principal, ident: str) -> dict[str, Any]:
        with self.db.read() as session:
            return summary(session, self._visible(session, principal, ident))

    def examples(self, principal: Principal, ident: str) -> list[tuple[str, Example]]:
        """(split, example) of a data set the principal may read, in order; others: 404."""
        with self.db.read() as session:
            dataset = self._readable(session, principal, ident)
            rows = session.execute(
                select(TuningExample.split, TuningExample.data)
                .where(TuningExample.dataset_id == dataset.id)
                .order_by(TuningExample.ordinal)
            )
            return [(split, data) for split, data in rows]

    def remove(
        self, principal: Principal, ident: str, ip: str | None = None, actor: str | None = None
    ) -> dict[str, Any]:
        """Delete a data set the principal owns or manages, with its examples and shares; on
        SQLite the freed pages are zeroed and the WAL truncated, so no copy of the text stays."""
        with self.db.write() as session:
            dataset = self._visible(session, principal, ident)
            if not (_manages(principal) or dataset.owner_user_id == principal.user_id):
                raise DatasetNotFound(f"no data set {ident!r}")  # shared with them: read only
            view = summary(session, dataset)
            if self.db.dialect == "sqlite":
                session.execute(text("PRAGMA secure_delete = ON"))
            session.execute(delete(TuningExample).where(TuningExample.dataset_id == dataset.id))
            session.execute(
                delete(TuningDatasetShare).where(TuningDatasetShare.dataset_id == dataset.id)
            )
            session.delete(dataset)
            detail = {"id": view["id"], "examples": view["examples"]}
            who = actor or principal.actor
            self.audit.record(session, who, "tuning.dataset.delete", view["name"], detail, ip)
        if self.db.dialect == "sqlite":
            with self.db.engine.connect() as connection:  # outside SQLAlchemy's transaction
                raw = connection.connection.dbapi_connection
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        return view

    def _readable(self, session: Session, principal: Principal, ident: str) -> TuningDataset:
        dataset = find(session, ident)
        allowed = session.scalar(
            select(TuningDataset.id).where(TuningDataset.id == dataset.id, may_read(principal))
        )
        if allowed is None:
            raise DatasetNotFound(f"no data set {ident!r}")
        return dataset

    def _visible(self, session: Session, principal: Principal, ident: str) -> TuningDataset:
        """The data set, if the principal may read it or manages data sets; else 404, in the
        words used when it does not exist."""
        if _manages(principal):
            return find(session, ident)
        return self._readable(session, principal, ident)


def _manages(principal: Principal) -> bool:
    return allows(principal, Permission.TUNING_MANAGE)


def _add_examples(session: Session, dataset_id: int, prepared: Prepared) -> None:
    splits = [(TRAIN, e) for e in prepared.train] + [(EVAL, e) for e in prepared.eval]
    session.add_all(
        TuningExample(dataset_id=dataset_id, ordinal=i, split=split, data=example)
        for i, (split, example) in enumerate(splits)
    )


def _size(prepared: Prepared) -> int:
    lines = (json.dumps(e, ensure_ascii=False) + "\n" for e in prepared.train + prepared.eval)
    return sum(len(line.encode("utf-8", "surrogatepass")) for line in lines)
