"""SQL database connectors: a collection fed by a SELECT (or tables) on another database,
synced on demand or on a schedule, with its bookkeeping (last run, counts, last error).

At `connect` the source is opened read-only, the query checked to be one SELECT, its id and
updated-at columns looked up, and a user who could write refused unless allowed; the URL is
stored without its password, which is sealed (vault.py). A sync claims its connector (one at
a time per connector), reads the rows (row_sync.py) and records how it ended; a source that
fails mid-sync leaves the index as it was, row by row, and the error, scrubbed of secrets.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from inhouse.audit.trail import AuditTrail
from inhouse.errors import Conflict, InhouseError, InvalidRequest, NotFound
from inhouse.knowledge.ingest import Ingestor, Target
from inhouse.knowledge.row_sync import Plan, Progress, RowSync, Tally
from inhouse.knowledge.sql_source import (
    Part,
    check_select,
    columns,
    parse_url,
    read_only,
    source_engine,
    table_part,
    write_access,
)
from inhouse.knowledge.vault import Vault, scrub, shown
from inhouse.store.db import Database
from inhouse.store.tables import KnowledgeCollection, KnowledgeConnector

log = logging.getLogger(__name__)

RUNNING, OK, FAILED = "running", "ok", "failed"
HEARTBEAT_ROWS = 50  # rows between two progress writes
STALE_S = 900.0  # a running sync with no progress for this long died: another may start
MAX_ERROR_CHARS = 2000
MIN_EVERY_S = 1.0
INTERVAL = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[smhd]?)")
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class SourceConfig:
    """What `connect` was given."""

    url: str
    query: str | None = None
    tables: Sequence[str] = ()
    id_column: str = "id"
    updated_column: str | None = None
    every_s: float | None = None
    allow_writable: bool = False


class SyncStopped(InhouseError):
    """Raised by a progress callback to end a sync early (the server is shutting down)."""


class Connectors:
    """Connect, sync and report on the SQL connectors of every collection."""

    def __init__(self, db: Database, audit: AuditTrail, ingestor: Ingestor, vault: Vault) -> None:
        self.db = db
        self.audit = audit
        self.ingestor = ingestor
        self.vault = vault

    # ----- connect -----------------------------------------------------------------------

    def check(self, config: SourceConfig) -> URL:
        """The parsed URL once the source proved readable, its columns present and (unless
        allowed) its user unable to write; InvalidRequest otherwise."""
        url = parse_url(config.url)
        if config.every_s is not None and config.every_s < MIN_EVERY_S:
            raise InvalidRequest(f"--every must be at least {MIN_EVERY_S:g}s", param="every")
        parts = _parts(url.get_backend_name(), config.query, config.tables)
        hidden = [url.password or ""]
        engine = source_engine(url)
        try:
            with read_only(engine) as connection:
                for part in parts:
                    _check_columns(columns(connection, part), part, config)
                writes = [] if config.allow_writable else write_access(connection)
        except SQLAlchemyError as exc:
            reason = _reason(exc, hidden)
            raise InvalidRequest(f"cannot read the source: {reason}", param="url") from None
        finally:
            engine.dispose()
        if writes:
            raise InvalidRequest(
                f"the URL's user can write ({'; '.join(writes)}): connect as a read-only user, "
                "or pass --allow-writable",
                param="url",
            )
        return url

    def save(self, actor: str, name: str, config: SourceConfig, url: URL) -> None:
        """Store the connector of collection `name` (replacing one it had: the next sync then
        reads every row again), with the password sealed; audited with the URL masked."""
        with self.db.write() as session:
            collection = _collection(session, name)
            connector = _connector(session, collection)
            replaced = connector is not None
            if connector is None:
                connector = KnowledgeConnector(collection_id=collection.id, created_at=time.time())
                session.add(connector)
            connector.url = url.set(password=None).render_as_string(hide_password=False)
            connector.secret = self.vault.seal(url.password) if url.password else None
            connector.query, connector.tables = config.query, list(config.tables)
            connector.id_column, connector.updated_column = config.id_column, config.updated_column
            connector.every_s, connector.allow_writable = config.every_s, config.allow_writable
            connector.marks = {}
            detail = _config_view(connector) | {"replaced": replaced}
            self.audit.record(session, actor, "knowledge.connect", name, detail)

    # ----- sync --------------------------------------------------------------------------

    def sync(self, actor: str, name: str, progress: Progress | None = None) -> dict[str, Any]:
        """Sync collection `name` from its source; returns its status. A source that fails
        is recorded (status failed, last_error), not raised; Conflict if one already runs."""
        target, plan, url = self._claim(actor, name)
        rows = RowSync(self.ingestor, target, plan, self._heartbeat(target, progress))
        error, marks, engine = None, None, None
        try:
            engine = source_engine(url)
            with read_only(engine) as connection:
                marks = rows.run(connection)
        except Exception as exc:  # whatever ends a sync is recorded, never left "running"
            error = _reason(exc, [url.password or ""])
            if not isinstance(exc, SQLAlchemyError | InhouseError):
                log.exception("the sync of %s failed unexpectedly", name)
        finally:
            if engine is not None:
                engine.dispose()
        self._finish(target, rows.tally, marks, error)
        return self.status(name)

    def _claim(self, actor: str, name: str) -> tuple[Target, Plan, URL]:
        with self.db.write() as session:
            collection = _collection(session, name)
            connector = _connector(session, collection, lock=True)
            if connector is None:
                raise NotFound(f"the collection {name!r} has no connector")
            now = time.time()
            if connector.status == RUNNING and (connector.progress_at or 0) > now - STALE_S:
                raise Conflict(f"a sync of {name!r} is running already")
            url = make_url(connector.url)
            if connector.secret is not None:
                url = url.set(password=self.vault.open(connector.secret))
            parts = _parts(url.get_backend_name(), connector.query, connector.tables)
            plan = Plan(parts, connector.id_column, connector.updated_column, connector.marks)
            connector.status, connector.started_at, connector.progress_at = RUNNING, now, now
            _count(connector, Tally())
            connector.last_error = None
            return Target(collection.id, name, actor), plan, url

    def _heartbeat(self, target: Target, progress: Progress | None) -> Progress:
        """The per-row callback: the caller's, plus the counts saved every few rows."""

        def beat(tally: Tally) -> None:
            if tally.seen % HEARTBEAT_ROWS == 0:
                with self.db.write() as session:
                    connector = _by_collection(session, target.collection_id)
                    if connector is not None:
                        _count(connector, tally)
                        connector.progress_at = time.time()
            if progress is not None:
                progress(tally)

        return beat

    def _finish(
        self, target: Target, tally: Tally, marks: dict[str, Any] | None, error: str | None
    ) -> None:
        with self.db.write() as session:
            connector = _by_collection(session, target.collection_id)
            if connector is None:  # the collection was deleted meanwhile
                return
            _count(connector, tally)
            connector.status, connector.last_error = (FAILED, error) if error else (OK, None)
            connector.finished_at = time.time()
            if marks is not None:
                connector.marks = marks
            detail = {"status": connector.status, **_counts(tally), "error": error}
            self.audit.record(session, target.actor, "knowledge.sync", target.collection, detail)
        if error:
            log.warning("sync of %s failed: %s", target.collection, error)
        else:
            log.info("sync of %s: %s", target.collection, _counts(tally))

    # ----- reporting ---------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        """The connector of collection `name`: its source (password masked) and last sync."""
        with self.db.read() as session:
            connector = _connector(session, _collection(session, name))
            if connector is None:
                raise NotFound(f"the collection {name!r} has no connector")
            return {"collection": name, **view(connector)}

    def due(self, now: float) -> tuple[list[str], float | None]:
        """The collections whose scheduled sync is due at `now`, and when the next falls due."""
        with self.db.read() as session:
            query = (
                select(KnowledgeCollection.name, KnowledgeConnector)
                .join(KnowledgeConnector)
                .where(KnowledgeConnector.every_s.is_not(None))
                .order_by(KnowledgeCollection.name)
            )
            due, upcoming = [], None
            for name, connector in session.execute(query):
                when = next_run(connector)
                if when is None or _running(connector, now):
                    continue
                if when <= now:
                    due.append(name)
                else:
                    upcoming = when if upcoming is None else min(upcoming, when)
            return due, upcoming


def parse_interval(text: str) -> float:
    """Seconds in an interval like `90`, `30s`, `15m`, `2h` or `1d`."""
    match = INTERVAL.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidRequest(
            f"{text!r} is not an interval: a number with s, m, h or d (15m, 1h)", param="every"
        )
    return float(match["n"]) * UNITS[match["unit"] or "s"]


def view(connector: KnowledgeConnector) -> dict[str, Any]:
    """A connector's source and sync bookkeeping, as the CLI and API show it."""
    return _config_view(connector) | {
        "status": connector.status,
        "started_at": connector.started_at,
        "finished_at": connector.finished_at,
        "rows_seen": connector.rows_seen,
        "rows_changed": connector.rows_changed,
        "rows_removed": connector.rows_removed,
        "rows_failed": connector.rows_failed,
        "last_error": connector.last_error,
        "next_run_at": next_run(connector),
    }


def connector_view(session: Session, collection_id: int) -> dict[str, Any] | None:
    """The sync view of a collection's connector, or None if it has none."""
    connector = _by_collection(session, collection_id)
    return view(connector) if connector is not None else None


def next_run(connector: KnowledgeConnector) -> float | None:
    """When the scheduler runs it next (None: only on demand); never run: at once."""
    if connector.every_s is None:
        return None
    if connector.started_at is None:
        return connector.created_at
    return connector.started_at + connector.every_s


def _running(connector: KnowledgeConnector, now: float) -> bool:
    return connector.status == RUNNING and (connector.progress_at or 0) > now - STALE_S


def _config_view(connector: KnowledgeConnector) -> dict[str, Any]:
    return {
        "kind": "sql",
        "url": shown(make_url(connector.url), connector.secret is not None),
        "query": connector.query,
        "tables": list(connector.tables),
        "id_column": connector.id_column,
        "updated_column": connector.updated_column,
        "every_s": connector.every_s,
        "allow_writable": connector.allow_writable,
    }


def _parts(backend: str, query: str | None, tables: Sequence[str]) -> list[Part]:
    if bool(query) == bool(tables):
        raise InvalidRequest("give either a query or a list of tables", param="query")
    if query:
        return [Part("query", check_select(query, backend))]
    if len(set(tables)) != len(tables):
        raise InvalidRequest("a table is named twice", param="table")
    return [table_part(t, backend) for t in tables]


def _check_columns(names: list[str], part: Part, config: SourceConfig) -> None:
    for column, option in ((config.id_column, "id-column"), (config.updated_column, None)):
        if column is not None and column not in names:
            raise InvalidRequest(
                f"{part.label} has no column {column!r} (it has {', '.join(names)})",
                param=option or "updated-column",
            )


def _reason(exc: BaseException, hidden: list[str]) -> str:
    """Why a sync or a connect failed, for people: no password, no URL credentials."""
    if isinstance(exc, InhouseError):
        message = exc.message
    elif isinstance(exc, SQLAlchemyError):
        original = getattr(exc, "orig", None)
        message = str(original if original is not None else exc).strip()
    else:
        message = f"{type(exc).__name__}: {exc}"
    return scrub(message, hidden)[:MAX_ERROR_CHARS]


def _count(connector: KnowledgeConnector, tally: Tally) -> None:
    connector.rows_seen, connector.rows_changed = tally.seen, tally.changed
    connector.rows_removed, connector.rows_failed = tally.removed, tally.failed


def _counts(tally: Tally) -> dict[str, int]:
    return {
        "rows_seen": tally.seen,
        "rows_changed": tally.changed,
        "rows_removed": tally.removed,
        "rows_failed": tally.failed,
    }


def _collection(session: Session, name: str) -> KnowledgeCollection:
    found = session.scalar(select(KnowledgeCollection).where(KnowledgeCollection.name == name))
    if found is None:
        raise NotFound(f"no collection named {name!r}")
    return found


def _connector(
    session: Session, collection: KnowledgeCollection, lock: bool = False
) -> KnowledgeConnector | None:
    return _by_collection(session, collection.id, lock)


def _by_collection(
    session: Session, collection_id: int, lock: bool = False
) -> KnowledgeConnector | None:
    query = select(KnowledgeConnector).where(KnowledgeConnector.collection_id == collection_id)
    return session.scalar(query.with_for_update() if lock else query)
