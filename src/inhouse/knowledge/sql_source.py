"""The SQL connector's database side: a source opened read-only, its query checked to be one
SELECT, its user checked for write access, and its rows read.

Read-only is enforced by the database, not trusted to the query check: PostgreSQL sessions
start with `default_transaction_read_only` and every transaction is `SET TRANSACTION READ
ONLY`; SQLite files are opened with `mode=ro` and `query_only`. The query text that runs is
the one sqlglot parsed and checked (regenerated from its tree), so no parser difference
between the check and the database can smuggle a second statement through.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlglot
from sqlalchemy import Connection, Engine, bindparam, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool
from sqlglot import exp

from inhouse.errors import InvalidRequest

DIALECTS = {"postgresql": "postgres", "sqlite": "sqlite"}  # SQLAlchemy -> sqlglot
CONNECT_TIMEOUT_S = 10
READ_ONLY_OPTION = "-c default_transaction_read_only=on"
WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Command,
    exp.Into,
    exp.Lock,
)
# what the user of a PostgreSQL URL may change: any of these found means "can write"
POSTGRES_WRITE_ACCESS = text(
    "SELECT 'superuser' FROM pg_roles WHERE rolname = current_user AND rolsuper "
    "UNION ALL "
    "SELECT 'INSERT/UPDATE/DELETE/TRUNCATE on ' || quote_ident(n.nspname) || '.' "
    "|| quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'v', 'f') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' "
    "AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') "
    "UNION ALL "
    "SELECT 'CREATE on schema ' || quote_ident(nspname) FROM pg_namespace "
    "WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname !~ '^pg_' "
    "AND has_schema_privilege(oid, 'CREATE') "
    "UNION ALL "
    "SELECT 'CREATE on database ' || quote_ident(current_database()) "
    "WHERE has_database_privilege(current_database(), 'CREATE') "
    "LIMIT 5"
)


@dataclass(frozen=True)
class Part:
    """One query of a source: `label` names its rows' documents (a table, or `query`)."""

    label: str
    sql: str  # a checked single SELECT


def parse_url(raw: str) -> URL:
    """The URL, refused unless it names PostgreSQL or an SQLite file and keeps its password
    in the user:password part (where it is sealed)."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise InvalidRequest(
            "not a database URL (dialect://user:password@host/db)", param="url"
        ) from None
    backend = url.get_backend_name()
    if backend not in DIALECTS:
        raise InvalidRequest(
            f"{backend!r} sources are not supported: read-only access can be enforced only on "
            "postgresql and sqlite",
            param="url",
        )
    if "password" in url.query:
        raise InvalidRequest("put the password in the URL's user:password part", param="url")
    if backend == "sqlite" and (not url.database or url.database == ":memory:"):
        raise InvalidRequest("an SQLite source is a file: sqlite:///path/to/file.db", param="url")
    return url


def check_select(query: str, backend: str) -> str:
    """The query as one checked SELECT (regenerated SQL); InvalidRequest for anything else."""
    dialect = DIALECTS[backend]
    try:
        statements = [s for s in sqlglot.parse(query, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "a syntax error"
        raise InvalidRequest(f"the query cannot be parsed: {reason}", param="query") from None
    if len(statements) != 1:
        raise InvalidRequest(
            f"the query must be a single SELECT, not {len(statements)} statements", param="query"
        )
    (statement,) = statements
    if not isinstance(statement, exp.Query):
        raise InvalidRequest("the query must be a SELECT", param="query")
    found = next(statement.find_all(*WRITES), None)
    if found is not None:
        raise InvalidRequest(
            f"the query must only read: it contains {found.key.upper()}", param="query"
        )
    return statement.sql(dialect=dialect)


def table_part(name: str, backend: str) -> Part:
    """`SELECT * FROM` the table `name` (optionally schema.table), quoted."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(p.strip() for p in parts) or "/" in name:
        raise InvalidRequest(f"{name!r} is not a table name (table or schema.table)", param="table")
    table = exp.table_(parts[-1], db=parts[0] if len(parts) == 2 else None, quoted=True)
    return Part(name, exp.select("*").from_(table).sql(dialect=DIALECTS[backend]))


def source_engine(url: URL) -> Engine:
    """An engine on the source that can only read (no pool: each sync connects afresh)."""
    if url.get_backend_name() == "postgresql":
        given = url.query.get("options")
        given = " ".join(given) if isinstance(given, tuple) else given
        options = f"{given} {READ_ONLY_OPTION}" if given else READ_ONLY_OPTION
        url = url.set(drivername="postgresql+psycopg").update_query_dict({"options": options})
        args = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "inhouse-connector"}
        return create_engine(url, poolclass=NullPool, connect_args=args)
    path = Path(url.database or "").expanduser().resolve()
    read_only = URL.create(
        "sqlite", database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"}
    )
    return create_engine(read_only, poolclass=NullPool)


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection inside a read-only transaction, rolled back at the end."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET TRANSACTION READ ONLY"))
        else:
            connection.exec_driver_sql("PRAGMA query_only = ON")
        yield connection
        connection.rollback()


def write_access(connection: Connection) -> list[str]:
    """What the connection's user could change (PostgreSQL); empty when it can only read."""
    if connection.dialect.name != "postgresql":
        return []  # an SQLite source is opened read-only, whatever the file's permissions
    return [str(row[0]) for row in connection.execute(POSTGRES_WRITE_ACCESS)]


def _wrapped(part: Part, what: str = "*") -> str:
    # a colon in the checked SQL is not a bind parameter of ours
    return f"SELECT {what} FROM ({part.sql.replace(':', chr(92) + ':')}) AS src"


def columns(connection: Connection, part: Part) -> list[str]:
    """The column names the part's query returns (runs it with no row)."""
    return list(connection.execute(text(_wrapped(part) + " WHERE 1 = 0")).keys())


def quoted(connection: Connection, column: str) -> str:
    return "src." + connection.dialect.identifier_preparer.quote(column)


def rows(
    connection: Connection, part: Part, since: tuple[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The part's rows as dicts, streamed; with `since` = (column, mark) only rows whose
    column is >= mark (ties are read again: the row hash then skips them)."""
    statement = text(_wrapped(part))
    if since is not None:
        column, mark = since
        statement = text(f"{_wrapped(part)} WHERE {quoted(connection, column)} >= :mark")
        statement = statement.bindparams(mark=mark)
    result = connection.execution_options(yield_per=100).execute(statement)
    for row in result.mappings():
        yield dict(row)


def ids(connection: Connection, part: Part, id_column: str) -> set[str]:
    """Every row id the part's query returns, as text."""
    column = quoted(connection, id_column)
    statement = text(_wrapped(part, column))
    result = connection.execution_options(yield_per=1000).execute(statement)
    return {str(value) for (value,) in result if value is not None}


def rows_by_id(
    connection: Connection, part: Part, id_column: str, wanted: Sequence[Any]
) -> Iterator[dict[str, Any]]:
    """The rows whose id is in `wanted`, in batches."""
    column = quoted(connection, id_column)
    statement = text(f"{_wrapped(part)} WHERE CAST({column} AS TEXT) IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    for start in range(0, len(wanted), 500):
        batch = list(wanted[start : start + 500])
        for row in connection.execute(statement, {"ids": batch}).mappings():
            yield dict(row)
