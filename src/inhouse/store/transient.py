"""Which database errors are worth retrying: the store was busy or the connection broke,
not something wrong with what was written."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

SQLITE_BUSY = ("database is locked", "database is busy", "database table is locked")
# serialization_failure, deadlock_detected, lock_not_available, admin/crash shutdown,
# cannot_connect_now, too_many_connections; class 08 (below) is every connection exception
PG_TRANSIENT = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})


def is_transient(exc: BaseException) -> bool:
    """True when the same write may well succeed if tried again a little later."""
    if isinstance(exc, DisconnectionError | PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    state = getattr(exc.orig, "sqlstate", None)
    if isinstance(state, str):
        return state in PG_TRANSIENT or state.startswith("08")
    if not isinstance(exc, OperationalError):
        return False
    if any(text in str(exc.orig).lower() for text in SQLITE_BUSY):
        return True
    # psycopg raises OperationalError without a SQLSTATE when it cannot reach the server
    return type(exc.orig).__module__.startswith("psycopg")
