"""The air-gap guard: outbound attempts are refused and recorded; loopback and IPC still work.

An audit hook cannot be removed, so every test that installs it runs in a child Python process;
the pure allow-list logic is tested in-process on a fresh, uninstalled AirGap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from inhouse.airgap import OFFLINE_ENV, AirGap, apply_offline_env

PRELUDE = """
import json, socket, sys
from inhouse.airgap import AIR_GAP, AirGapRefusal

AIR_GAP.configure({allow})
AIR_GAP.install()
result = {{}}

def refusal(call):
    # the guard's message, or None when the guard let the call through (wherever it ended)
    try:
        call()
    except AirGapRefusal as exc:
        assert isinstance(exc, PermissionError)
        return str(exc)
    except OSError:
        pass  # not the guard: e.g. no DNS or no route in the test machine
    return None
"""


def run_guarded(body: str, allow: list[str] | None = None, **env: str) -> dict[str, Any]:
    """Run `body` in a child process with the guard installed; returns its `result` dict."""
    script = PRELUDE.format(allow=json.dumps(allow or [])) + textwrap.dedent(body)
    script += "\nprint(json.dumps(result))\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def test_connect_to_a_public_address_is_refused_naming_it() -> None:
    result = run_guarded("""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        result["tcp"] = refusal(lambda: sock.connect(("203.0.113.1", 443)))
        result["mapped"] = refusal(
            lambda: socket.socket(socket.AF_INET6).connect(("::ffff:203.0.113.1", 443))
        )
    """)
    assert result["tcp"] == (
        "inhouse air-gap: outbound connection to 203.0.113.1:443 refused; "
        "allow it with INHOUSE_NETWORK__ALLOW_HOSTS"
    )
    assert "203.0.113.1" in result["mapped"]


def test_host_names_are_refused_before_any_dns_lookup() -> None:
    result = run_guarded("""
        result["create"] = refusal(lambda: socket.create_connection(("example.com", 443), 2))
        result["lookup"] = refusal(lambda: socket.getaddrinfo("api.example.net", 443))
        result["by_name"] = refusal(lambda: socket.gethostbyname("example.org"))
        result["reverse"] = refusal(lambda: socket.gethostbyaddr("198.51.100.20"))
    """)
    assert "example.com:443" in result["create"]
    assert "api.example.net" in result["lookup"]
    assert "example.org" in result["by_name"]
    assert "198.51.100.20" in result["reverse"]


def test_connecting_by_name_is_refused_naming_the_name() -> None:
    # connect() resolves a name in C before its audit event (a limit the module documents);
    # 3221225986 is a name glibc resolves offline (to 192.0.2.2), so the connect gets that far
    result = run_guarded("""
        result["connect"] = refusal(lambda: socket.socket().connect(("3221225986", 80)))
    """)
    assert "3221225986:80" in result["connect"]


def test_loopback_tcp_still_works() -> None:
    result = run_guarded("""
        pairs = [("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"), ("127.0.0.2",) * 2]
        for host, bind in pairs:
            with socket.create_server((bind, 0)) as server:
                port = server.getsockname()[1]
                with socket.create_connection((host, port), timeout=5) as client:
                    peer, _ = server.accept()
                    client.sendall(b"ping")
                    result[host] = peer.recv(4).decode()
                    peer.close()
    """)
    assert result["127.0.0.1"] == result["localhost"] == result["127.0.0.2"] == "ping"
    assert "refused" not in result["stderr"]


def test_unix_sockets_still_work(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    result = run_guarded(f"""
        with socket.socket(socket.AF_UNIX) as server:
            server.bind({str(path)!r})
            server.listen(1)
            with socket.socket(socket.AF_UNIX) as client:
                client.connect({str(path)!r})
                peer, _ = server.accept()
                client.sendall(b"ipc")
                result["got"] = peer.recv(3).decode()
                peer.close()
    """)
    assert result["got"] == "ipc"


def test_udp_to_a_public_address_is_refused_and_to_loopback_is_not() -> None:
    result = run_guarded("""
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        result["public"] = refusal(lambda: udp.sendto(b"x", ("198.51.100.7", 53)))
        result["loopback"] = refusal(lambda: udp.sendto(b"x", ("127.0.0.1", 9)))
        result["connect"] = refusal(lambda: udp.connect(("198.51.100.7", 53)))
    """)
    assert "198.51.100.7:53" in result["public"]
    assert result["loopback"] is None
    assert "198.51.100.7:53" in result["connect"]


def test_each_refusal_is_drained_once_for_the_audit_trail() -> None:
    result = run_guarded("""
        refusal(lambda: socket.socket().connect(("203.0.113.9", 8443)))
        refusal(lambda: socket.getaddrinfo("example.com", "https"))
        result["first"] = [
            [r.host, r.port, r.event, r.ts > 0] for r in AIR_GAP.drain_refused()
        ]
        result["second"] = AIR_GAP.drain_refused()
    """)
    assert result["first"] == [
        ["203.0.113.9", 8443, "socket.connect", True],
        ["example.com", None, "socket.getaddrinfo", True],
    ]
    assert result["second"] == []


def test_httpx_surfaces_a_connect_error_and_the_log_keeps_no_query_string() -> None:
    result = run_guarded("""
        import asyncio
        import httpx

        try:
            httpx.get("http://203.0.113.1/v1/models?token=s3cret", timeout=5)
        except httpx.ConnectError as exc:
            result["sync"] = str(exc)

        async def fetch():
            async with httpx.AsyncClient(timeout=5) as client:
                await client.get("https://example.com/?api_key=s3cret")

        try:
            asyncio.run(fetch())
        except httpx.ConnectError as exc:
            result["async"] = str(exc)
    """)
    assert "inhouse air-gap" in result["sync"] and "203.0.113.1:80" in result["sync"]
    assert "example.com:443" in result["async"]
    assert "203.0.113.1:80 refused" in result["stderr"]  # the warning on inhouse.airgap
    assert "s3cret" not in result["stderr"]


def test_an_allowed_name_and_the_addresses_it_resolves_to_are_reachable() -> None:
    # glibc resolves the 32-bit number 3221225986 to 192.0.2.2 without asking DNS: a name
    # that is allowed, resolvable offline, and not loopback
    result = run_guarded(
        """
        result["lookup"] = [info[4][0] for info in socket.getaddrinfo("3221225986", 80)]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.connect(("192.0.2.2", 9))  # UDP connect sends nothing
            result["allowed"] = "connected"
        except AirGapRefusal as exc:
            result["allowed"] = str(exc)
        except OSError:
            result["allowed"] = "no route"  # not refused by the guard: the kernel has no route
        result["other"] = refusal(lambda: udp.connect(("192.0.2.3", 9)))
        """,
        allow=["3221225986"],
    )
    assert set(result["lookup"]) == {"192.0.2.2"}
    assert result["allowed"] in ("connected", "no route")
    assert "192.0.2.3:9" in result["other"]


def test_guard_from_settings_allows_both_lists_and_sets_offline_switches() -> None:
    result = run_guarded(
        """
        from inhouse.airgap import guard_from_settings
        from inhouse.config import load_settings
        import os

        guard = guard_from_settings(load_settings())
        result["allow"] = guard.allow_list
        result["enforcing"] = guard.enforcing
        result["env"] = {name: os.environ[name] for name in ("HF_HUB_OFFLINE", "DO_NOT_TRACK")}
        result["pull"] = refusal(lambda: socket.getaddrinfo("cdn.models.example.org", 443))
        result["other"] = refusal(lambda: socket.getaddrinfo("example.net", 443))
        """,
        INHOUSE_NETWORK__ALLOW_HOSTS='["example.com"]',
        INHOUSE_MODELS__ALLOW_PULL_HOSTS='["models.example.org"]',
        HF_HUB_OFFLINE="0",
    )
    assert result["allow"] == ["example.com", "models.example.org"]
    assert result["enforcing"] is True
    assert result["env"] == {"HF_HUB_OFFLINE": "0", "DO_NOT_TRACK": "1"}  # admin's choice kept
    assert result["pull"] is None  # went to the resolver (which may know nothing offline)
    assert "example.net:443" in result["other"]


def test_allow_list_matches_names_their_subdomains_and_exact_addresses() -> None:
    guard = AirGap()  # never installed: is_allowed is pure
    guard.configure(["Example.COM.", "192.0.2.10"])
    assert guard.is_allowed("example.com")
    assert guard.is_allowed("api.example.com")
    assert guard.is_allowed("API.Example.com.")
    assert guard.is_allowed("192.0.2.10")
    assert not guard.is_allowed("example.com.evil.test")
    assert not guard.is_allowed("notexample.com")
    assert not guard.is_allowed("192.0.2.1")
    assert not guard.is_allowed("203.0.113.1")
    assert guard.allow_list == ["192.0.2.10", "example.com"]


def test_loopback_is_always_allowed() -> None:
    guard = AirGap()
    for host in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "localhost", "localhost."):
        assert guard.is_allowed(host), host
    for host in ("0.0.0.0", "::"):  # connecting to the unspecified address reaches this host
        assert guard.is_allowed(host), host
    assert not guard.is_allowed("localhost.example.com")
    assert not guard.is_allowed("::ffff:203.0.113.1")


def test_configure_replaces_the_previous_allow_list() -> None:
    guard = AirGap()
    guard.configure(["example.com"])
    guard.configure(["example.org"])
    assert not guard.is_allowed("example.com")
    assert guard.is_allowed("www.example.org")
    assert not guard.enforcing


def test_offline_switches_fill_what_is_unset_and_keep_the_admins_choice() -> None:
    environ = {"HF_HUB_OFFLINE": "0", "PATH": "/usr/bin"}
    applied = apply_offline_env(environ)
    assert environ["HF_HUB_OFFLINE"] == "0"
    assert "HF_HUB_OFFLINE" not in applied
    assert environ["TRANSFORMERS_OFFLINE"] == "1"
    assert environ["DO_NOT_TRACK"] == "1"
    assert all(environ[name] == value for name, value in applied.items())
    assert set(applied) == set(OFFLINE_ENV) - {"HF_HUB_OFFLINE"}
    assert apply_offline_env(environ) == {}
