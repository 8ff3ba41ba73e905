"""`inhouse doctor`: prove the air-gap by trying, and check storage, audit, models and keys.

Every check returns a `Check`; none raises and none downloads anything. The air-gap checks
install the process guard (it stays installed: fine for the CLI, and the server runs it anyway).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from inhouse.airgap import (
    AIR_GAP,
    OFFLINE_ENV,
    AirGap,
    AirGapRefusal,
    allowed_hosts,
    guard_from_settings,
)
from inhouse.config import Settings

if TYPE_CHECKING:
    from inhouse.models.store import ModelRecord
    from inhouse.store.db import Database

Status = Literal["ok", "warn", "fail"]

PROBE_NAMES = ("example.com", "example.net", "example.org")  # public names nobody allows
PROBE_IPS = ("1.1.1.1", "9.9.9.9", "192.0.2.1")
PROBE_PORT = 443
PROBE_TIMEOUT_S = 2.0
GIB = 1 << 30
MIN_FREE_BYTES = 2 * GIB
EXPIRY_WARNING_S = 7 * 24 * 3600
LEGACY_ADMIN_KEY_FILE = "admin_key.sha256"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


@dataclass(frozen=True)
class Check:
    """One finding: `status` is "ok", "warn" (works, but look) or "fail" (broken)."""

    area: str
    name: str
    status: Status
    detail: str


def run_checks(settings: Settings, *, install: bool = True) -> list[Check]:
    """Every check in order: air-gap, storage, audit, models, keys; never raises.

    `install=False` (a running server) probes with the guard the process already has, and
    fails the air-gap if it has none, rather than installing one for good."""
    checks = _safely("air-gap", "guard", partial(_airgap_checks, settings, install))
    checks += _safely("storage", "data dir", partial(_home_checks, settings.home))
    database, db = _open_database(settings)
    checks.append(database)
    try:
        checks += _safely("audit", "chain", partial(_audit_checks, settings, db))
        checks += _safely("models", "served model", partial(_served_model_checks, settings))
        checks += _safely("models", "store", partial(_store_checks, settings.home))
        checks += _safely("keys", "api keys", partial(_key_checks, db))
        checks += _safely("keys", "key files", partial(_key_file_checks, settings))
    finally:
        if db is not None:
            db.close()
    return checks


def _safely(area: str, name: str, run: Callable[[], Sequence[Check]]) -> list[Check]:
    """A check that raised is a failed check, its message scrubbed of passwords."""
    try:
        return list(run())
    except Exception as exc:
        return [Check(area, name, "fail", _message(exc))]


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return _scrub(text[0] if text else type(exc).__name__)


def _scrub(text: str) -> str:
    """`text` without the password of any URL in it."""
    return _PASSWORD_IN_URL.sub(r"\1***@", text)


# air-gap


def _airgap_checks(settings: Settings, install: bool) -> list[Check]:
    if not install and not AIR_GAP.enforcing:
        detail = "this process runs without the air-gap guard (not started by `inhouse serve`)"
        return [_allow_list_check(settings), Check("air-gap", "guard", "fail", detail)]
    guard = guard_from_settings(settings) if install else AIR_GAP
    return [
        _allow_list_check(settings),
        _lookup_probe(guard),
        _connect_probe(guard),
        _loopback_probe(),
        _offline_env_check(),
        *_event_loop_check(),
    ]


def _allow_list_check(settings: Settings) -> Check:
    hosts = allowed_hosts(settings)
    detail = f"loopback and {', '.join(hosts)}" if hosts else "loopback only"
    return Check("air-gap", "allow-list", "ok", detail)


def _lookup_probe(guard: AirGap) -> Check:
    name = next((n for n in PROBE_NAMES if not guard.is_allowed(n)), None)
    if name is None:
        return Check("air-gap", "dns lookup", "warn", "not tried: every probe name is allowed")
    try:
        infos = socket.getaddrinfo(name, PROBE_PORT, type=socket.SOCK_STREAM)
    except AirGapRefusal:
        return Check("air-gap", "dns lookup", "ok", f"lookup of {name} refused and recorded")
    except OSError as exc:
        detail = f"lookup of {name} was not stopped by the guard: the resolver answered {exc}"
        return Check("air-gap", "dns lookup", "fail", detail)
    detail = f"{name} resolved to {infos[0][4][0]}: name lookups leave this process"
    return Check("air-gap", "dns lookup", "fail", detail)


def _connect_probe(guard: AirGap) -> Check:
    ip = next((i for i in PROBE_IPS if not guard.is_allowed(i)), None)
    if ip is None:
        return Check("air-gap", "connect", "warn", "not tried: every probe address is allowed")
    target = f"{ip}:{PROBE_PORT}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(PROBE_TIMEOUT_S)
        try:
            sock.connect((ip, PROBE_PORT))
        except AirGapRefusal:
            return Check(
                "air-gap", "connect", "ok", f"TCP connect to {target} refused and recorded"
            )
        except OSError as exc:
            detail = (
                f"the connect to {target} was not stopped by the guard; it left the process "
                f"and failed elsewhere ({str(exc) or type(exc).__name__})"
            )
            return Check("air-gap", "connect", "fail", detail)
    return Check("air-gap", "connect", "fail", f"connected to {target}: outbound traffic flows")


def _loopback_probe() -> Check:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        address = listener.getsockname()
        try:
            with socket.create_connection(address, timeout=PROBE_TIMEOUT_S):
                pass
        except OSError as exc:
            return Check("air-gap", "loopback", "fail", f"127.0.0.1 unreachable: {exc}")
    return Check("air-gap", "loopback", "ok", "connections to 127.0.0.1 work")


def _offline_env_check() -> Check:
    changed = [
        f"{name}={os.environ.get(name, '')}"
        for name, value in OFFLINE_ENV.items()
        if not _same_switch(os.environ.get(name), value)
    ]
    if changed:
        detail = f"set otherwise by the environment: {', '.join(changed)}"
        return Check("air-gap", "offline switches", "warn", detail)
    detail = f"{len(OFFLINE_ENV)} library switches set ({', '.join(OFFLINE_ENV)})"
    return Check("air-gap", "offline switches", "ok", detail)


def _same_switch(current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    a, b = current.strip().lower(), wanted.lower()
    return a == b or (a in _TRUE and b in _TRUE) or (a in _FALSE and b in _FALSE)


def _event_loop_check() -> list[Check]:
    if importlib.util.find_spec("uvloop") is None:
        return []
    detail = "uvloop is installed; its sockets bypass the guard: serve on asyncio's loop"
    return [Check("air-gap", "event loop", "warn", detail)]


# storage


def _home_checks(home: Path) -> list[Check]:
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=home):
        pass  # writable: the server writes its database, models and keys here
    free = shutil.disk_usage(home).free
    space = f"{free / GIB:.1f} GiB free"
    low = free < MIN_FREE_BYTES
    return [
        Check("storage", "data dir", "ok", f"{home} is writable"),
        Check(
            "storage",
            "free space",
            "warn" if low else "ok",
            f"{space}; imports and the database need room" if low else space,
        ),
    ]


def _open_database(settings: Settings) -> tuple[Check, Database | None]:
    from inhouse.store.db import open_database

    url = _scrub(settings.database_url())
    try:
        db = open_database(settings.database_url())
    except Exception as exc:
        return Check("storage", "database", "fail", f"{url}: {_message(exc)}"), None
    try:
        revision = db.revision() or "none"
    except Exception as exc:
        return Check("storage", "database", "fail", f"{url}: {_message(exc)}"), db
    return Check("storage", "database", "ok", f"{db.dialect}, revision {revision}: {url}"), db


# audit


def _audit_checks(settings: Settings, db: Database | None) -> list[Check]:
    if db is None:
        return [Check("audit", "chain", "warn", "not checked: the database did not open")]
    from inhouse.audit.check import trail_is_empty, verify
    from inhouse.audit.trail import load_audit_key

    path = settings.audit_key_path()
    if not path.is_file():
        if not trail_is_empty(db):
            detail = f"the key file {path} is missing: the trail's signatures cannot be checked"
            return [Check("audit", "chain", "fail", detail)]
        return [Check("audit", "chain", "ok", f"empty; its key {path} is made on first start")]
    result = verify(db, load_audit_key(path))
    if not result.ok:
        detail = f"broken at entry {result.first_bad_seq}: {result.problem}"
        return [Check("audit", "chain", "fail", detail)]
    detail = f"{result.entries} entries and {result.checkpoints} checkpoints verified"
    return [Check("audit", "chain", "ok", detail)]


# models


def _served_model_checks(settings: Settings) -> list[Check]:
    from inhouse.models.default import DefaultModelMissing, default_model_path
    from inhouse.models.inspect import inspect_file

    path = settings.engine.model_path
    if path is None:
        try:
            path = default_model_path()
        except DefaultModelMissing as exc:
            return [Check("models", "served model", "fail", str(exc))]
    if not path.is_file():
        return [Check("models", "served model", "fail", f"{path} is not a file")]
    info = inspect_file(path)
    detail = f"{path.name}: {info.architecture}, {info.quantization}, {info.file_size / 1e6:.0f} MB"
    return [Check("models", "served model", "ok", detail)]


def _store_checks(home: Path) -> list[Check]:
    from inhouse.models.store import ModelStore

    records = ModelStore(home).list()
    broken = [record.name for record in records if not _files_intact(record)]
    if broken:
        detail = f"files missing or changed in size: {', '.join(broken)}"
        return [Check("models", "store", "fail", detail)]
    if not records:
        return [Check("models", "store", "ok", "empty; the default model is added on first start")]
    names = ", ".join(record.name for record in records)
    return [Check("models", "store", "ok", f"{len(records)} models and adapter sets: {names}")]


def _files_intact(record: ModelRecord) -> bool:
    if not record.path.is_file():
        return False
    # the built-in default lives in its package; an upgrade changes it and start re-registers it
    if not record.builtin and record.path.stat().st_size != record.model.size:
        return False
    return all(adapter.path.is_file() for adapter in record.adapters)


# keys


def _key_checks(db: Database | None) -> list[Check]:
    if db is None:
        return [Check("keys", "api keys", "warn", "not checked: the database did not open")]
    from inhouse.auth.inventory import active_keys, enabled_admins

    now = time.time()
    keys = active_keys(db, now)
    admins = enabled_admins(db)
    keyed = {key.user_id for key in keys}
    signable = [a for a in admins if a.has_password or a.user_id in keyed]
    soon = sorted(
        k.public_id for k in keys if k.expires_at and k.expires_at <= now + EXPIRY_WARNING_S
    )
    lasting = sum(1 for k in keys if k.expires_at is None)
    return [
        Check("keys", "api keys", "ok", f"{len(keys)} active, {lasting} of them without expiry"),
        _expiring_check(soon),
        _admins_check(len(admins), len(signable)),
    ]


def _expiring_check(public_ids: list[str]) -> Check:
    if not public_ids:
        return Check("keys", "expiring", "ok", "no active key expires within 7 days")
    shown = ", ".join(public_ids[:5]) + (", ..." if len(public_ids) > 5 else "")
    return Check("keys", "expiring", "warn", f"{len(public_ids)} expire within 7 days: {shown}")


def _admins_check(admins: int, signable: int) -> Check:
    if admins == 0:
        detail = "no admin account yet: `inhouse serve` creates one on first start"
        return Check("keys", "admins", "warn", detail)
    if signable == 0:
        detail = "no admin has an active key or a password: `inhouse serve --new-admin-key`"
        return Check("keys", "admins", "warn", detail)
    return Check("keys", "admins", "ok", f"{admins} admin(s), {signable} able to sign in")


def _key_file_checks(settings: Settings) -> list[Check]:
    files = [settings.home / LEGACY_ADMIN_KEY_FILE, settings.audit_key_path()]
    present = [path for path in files if path.is_file()]
    if not present:
        return [Check("keys", "key files", "ok", "none yet")]
    loose = [p for p in present if stat.S_IMODE(p.stat().st_mode) & 0o077]
    if loose:
        modes = ", ".join(f"{p} ({stat.S_IMODE(p.stat().st_mode):o})" for p in loose)
        return [Check("keys", "key files", "warn", f"readable by others: {modes}; chmod 600")]
    return [Check("keys", "key files", "ok", ", ".join(f"{p} (owner only)" for p in present))]
