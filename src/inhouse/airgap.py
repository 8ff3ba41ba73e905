"""Air-gap: this process connects to loopback and the admin's allow-list, and nowhere else.

One `sys.addaudithook` hook sees CPython's socket audit events before the operation runs:
`socket.connect` (TCP and UDP), `socket.sendto`/`socket.sendmsg` with an address, and the name
lookups (`getaddrinfo`, `gethostbyname[_ex]`, `gethostbyaddr`, `getnameinfo`), so a name that
is not allowed never reaches DNS either. Loopback is 127.0.0.0/8, ::1 (also IPv4-mapped), the
unspecified address (connecting to it reaches this host), `localhost`, and this machine's own
host name, exactly (its addresses are this machine's).

A refused operation raises `AirGapRefusal` (a `PermissionError`, which socket, urllib, httpx
and asyncio callers report as a connection error), logs a warning on `inhouse.airgap` (host
and port only: the hook never sees URLs, queries or credentials) and is queued for
`drain_refused()`, which the server writes into the audit trail from a normal thread (never
database work inside the hook).

Allowed names: a lookup of an allowed name is resolved once more inside the hook and its
addresses are remembered (a bounded cache), so the connect to the numeric address that follows
is allowed. A name whose DNS answers change between those two lookups (round-robin, geo-DNS)
may be refused; list its IPv4 address in the allow-list too.

Limits, by design of audit hooks:
- native code that opens sockets without Python's socket module is not seen: libpq (psycopg;
  the database URL is admin-configured), libcurl, uvloop/libuv event loops (run the server on
  asyncio's loop), ctypes;
- `sock.connect((name, port))` and `sendto` with a host *name* resolve it in C before their
  audit event: that one lookup reaches the resolver, then the connection is refused (urllib,
  httpx, asyncio and `socket.create_connection` look names up first, which is refused);
- child processes inherit `OFFLINE_ENV` and the INHOUSE_* settings but not the hook: a Python
  child that may touch the network must call `guard_from_settings` itself;
- it stops accidental and library-driven egress (telemetry, model hubs, update checks); it is
  not a sandbox against hostile native code: pair it with a firewall for that.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inhouse.config import Settings

log = logging.getLogger("inhouse.airgap")

# Offline and telemetry switches of libraries inhouse or its users' stacks load in-process or
# in child processes (which inherit the environment but not the audit hook).
OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",  # huggingface_hub: no hub requests, local cache only
    "TRANSFORMERS_OFFLINE": "1",  # transformers (older releases read this one)
    "HF_DATASETS_OFFLINE": "1",  # datasets
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",  # the cross-tool convention many CLIs and SDKs honour
    "ANONYMIZED_TELEMETRY": "False",  # chromadb
    "SCARF_NO_ANALYTICS": "true",  # unstructured and other Scarf-instrumented packages
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HAYSTACK_TELEMETRY_ENABLED": "False",
    "RAY_USAGE_STATS_ENABLED": "0",  # Ray Serve replicas (cluster/)
    "VLLM_NO_USAGE_STATS": "1",
    "WANDB_MODE": "offline",  # trainers report to Weights & Biases when it is installed
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
}

ALLOW_HINT = "INHOUSE_NETWORK__ALLOW_HOSTS"
MAX_REFUSED = 1000  # refusals kept between drains; a flood keeps the newest
MAX_RESOLVED = 4096  # addresses remembered for allowed names
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "", "127.0.0.1", "::1", "0.0.0.0"})
_LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname")  # the latter also for gethostbyname_ex
_REVERSE_LOOKUPS = ("socket.gethostbyaddr", "socket.getnameinfo")
_SENDS = ("socket.connect", "socket.sendto", "socket.sendmsg")
_LOCAL_FAMILIES = frozenset(
    f for f in (getattr(socket, "AF_UNIX", None), getattr(socket, "AF_NETLINK", None)) if f
)
_IP_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class RefusedConnection:
    """One refused outbound attempt: destination, the audit event that carried it, when."""

    host: str
    port: int | None
    event: str
    ts: float


class AirGapRefusal(PermissionError):
    """Raised by the hook for a destination that is neither loopback nor allowed."""

    def __init__(self, message: str, record: RefusedConnection) -> None:
        super().__init__(message)
        self.record = record


def apply_offline_env(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set each OFFLINE_ENV switch the environment lacks; returns those it set.

    An admin's explicit value wins (e.g. HF_HUB_OFFLINE=0 with an allowed internal hub mirror):
    the switches only make libraries fail fast instead of retrying; the hook is what enforces.
    """
    env = os.environ if environ is None else environ
    applied = {name: value for name, value in OFFLINE_ENV.items() if name not in env}
    env.update(applied)
    return applied


def allowed_hosts(settings: Settings) -> list[str]:
    """Every host the settings allow: network.allow_hosts, then models.allow_pull_hosts."""
    return list(dict.fromkeys([*settings.network.allow_hosts, *settings.models.allow_pull_hosts]))


def guard_from_settings(settings: Settings) -> AirGap:
    """Apply the offline switches and install the process guard with the settings' allow-list."""
    apply_offline_env()
    AIR_GAP.configure(allowed_hosts(settings))
    AIR_GAP.install()
    return AIR_GAP


class AirGap:
    """The allow-list and the audit hook enforcing it; `install()` once per process."""

    def __init__(self) -> None:
        self._names: frozenset[str] = frozenset()
        self._ips: frozenset[str] = frozenset()
        self._this_host = ""
        self._resolved: OrderedDict[str, None] = OrderedDict()
        self._refused: deque[RefusedConnection] = deque(maxlen=MAX_REFUSED)
        self._lock = threading.Lock()
        self._local = threading.local()  # `busy`: this thread is inside the hook's own work
        self._installed = False
        self._handlers: dict[str, Callable[[str, tuple[Any, ...]], None]] = {
            **dict.fromkeys(_SENDS, self._on_send),
            **dict.fromkeys(_LOOKUPS, self._on_lookup),
            **dict.fromkeys(_REVERSE_LOOKUPS, self._on_reverse_lookup),
        }
        self.configure(())

    @property
    def enforcing(self) -> bool:
        """True once the hook is installed: from then on, until the process ends."""
        return self._installed

    @property
    def allow_list(self) -> list[str]:
        """The configured hosts (names and IPv4 addresses), sorted."""
        return sorted(self._names | self._ips)

    def configure(self, allow_hosts: Iterable[str]) -> None:
        """Replace the allow-list; names also allow their subdomains, case-insensitively."""
        names: set[str] = set()
        ips: set[str] = set()
        for entry in allow_hosts:
            host = entry.strip().lower().rstrip(".")
            ip = _parse_ip(host)
            if ip is not None:
                ips.add(str(ip))
            elif host:
                names.add(host)
        this_host = socket.gethostname().lower().rstrip(".")
        with self._lock:
            self._names, self._ips = frozenset(names), frozenset(ips)
            self._this_host = this_host
            self._resolved.clear()  # addresses of names no longer allowed must not linger

    def install(self) -> None:
        """Register the audit hook, once for the process (an audit hook cannot be removed)."""
        with self._lock:
            if self._installed:
                return
            sys.addaudithook(self._hook)
            self._installed = True

    def drain_refused(self) -> list[RefusedConnection]:
        """The attempts refused since the last drain, oldest first; each is returned once."""
        with self._lock:
            refused = list(self._refused)
            self._refused.clear()
        return refused

    def is_allowed(self, host: str) -> bool:
        """Whether `host` (name or address) is loopback, allowed, or an allowed name's address."""
        name = host.strip().lower()
        if name in _LOOPBACK_NAMES:
            return True
        name = name.rstrip(".")
        ip = _parse_ip(name)
        if ip is not None:
            return _is_loopback(ip) or str(ip) in self._ips or str(ip) in self._resolved
        return name in ("localhost", self._this_host) or any(
            name == allowed or name.endswith("." + allowed) for allowed in self._names
        )

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        handler = self._handlers.get(event)  # every audit event comes here: keep the miss cheap
        if handler is not None:
            handler(event, args)

    def _on_send(self, event: str, args: tuple[Any, ...]) -> None:
        sock, address = args[0], args[1]
        if address is None:  # sendmsg on a connected socket: its connect was checked
            return
        if (
            type(address) is tuple
            and address
            and type(address[0]) is str
            and address[0] in _LOOPBACK_NAMES
        ):
            return  # the server's own loopback traffic: the common case, decided first
        family = getattr(sock, "family", None)
        if family in _LOCAL_FAMILIES:
            return
        if family in _IP_FAMILIES and type(address) is tuple and len(address) >= 2:
            host, port = _text(address[0]), address[1]
            if not self.is_allowed(host):
                self._refuse(host, port if isinstance(port, int) else None, event)
            return
        self._refuse(_text(address), None, event)  # raw packets, vsock, bluetooth, ...

    def _on_lookup(self, event: str, args: tuple[Any, ...]) -> None:
        if args[0] is None:  # getaddrinfo(None, ...): the wildcard or loopback address
            return
        host = _text(args[0])
        port = _port(args[1]) if len(args) > 1 else None
        if _parse_ip(host.strip().lower().rstrip(".")) is not None:
            return  # numeric: no name goes to DNS; the connect that follows decides
        if not self.is_allowed(host):
            self._refuse(host, port, event)
        if not _is_loopback_name(host):
            self._remember(host)  # an allowed name, or this machine's own

    def _on_reverse_lookup(self, event: str, args: tuple[Any, ...]) -> None:
        target = args[0]
        host = _text(target[0] if isinstance(target, tuple) and target else target)
        if not self.is_allowed(host):
            self._refuse(host, None, event)

    def _remember(self, name: str) -> None:
        """Resolve an allowed name ourselves, so the connect to its address is allowed."""
        if getattr(self._local, "busy", False):
            return  # our own lookup below re-enters the hook
        self._local.busy = True
        try:
            infos = socket.getaddrinfo(name, None)
        except (OSError, UnicodeError, ValueError):
            return  # the caller's own lookup will fail the same way
        finally:
            self._local.busy = False
        with self._lock:
            for info in infos:
                ip = _parse_ip(str(info[4][0]))
                if ip is not None:
                    self._resolved[str(ip)] = None
                    self._resolved.move_to_end(str(ip))
            while len(self._resolved) > MAX_RESOLVED:
                self._resolved.popitem(last=False)

    def _refuse(self, host: str, port: int | None, event: str) -> None:
        host = "".join(c if c.isprintable() else "?" for c in host[:255])
        record = RefusedConnection(host=host, port=port, event=event, ts=time.time())
        with self._lock:
            self._refused.append(record)
        destination = _destination(host, port)
        if not getattr(self._local, "busy", False):
            # a logging handler that itself connects somewhere must not recurse into logging
            self._local.busy = True
            try:
                log.warning(
                    "outbound connection to %s refused (%s); allow it with %s",
                    destination,
                    event,
                    ALLOW_HINT,
                )
            finally:
                self._local.busy = False
        raise AirGapRefusal(
            f"inhouse air-gap: outbound connection to {destination} refused; "
            f"allow it with {ALLOW_HINT}",
            record,
        )


def _parse_ip(host: str) -> IPAddress | None:
    """The address `host` spells (IPv4-mapped IPv6 as IPv4), or None for a name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_loopback(ip: IPAddress) -> bool:
    # connecting to the unspecified address (0.0.0.0, ::) reaches this host on Linux
    return ip.is_loopback or ip.is_unspecified


def _is_loopback_name(host: str) -> bool:
    name = host.strip().lower()
    return name in _LOOPBACK_NAMES or name.rstrip(".") == "localhost"


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return str(value)


def _port(value: object) -> int | None:
    if isinstance(value, int):
        return value
    try:
        return int(_text(value))
    except ValueError:
        return None  # None or a service name such as "https"


def _destination(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


# The one piece of module-level state: an audit hook lives as long as the process and cannot be
# removed, so the allow-list it reads must be the process's single instance too.
AIR_GAP = AirGap()
