"""`inhouse` as a user runs it: a real process, the real model, the official client."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import free_port

INHOUSE = [sys.executable, "-m", "inhouse"]


@dataclass
class Process:
    proc: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        match = re.search(r"admin key (ih-\S+)", "".join(self.output))
        assert match, "".join(self.output)
        return match.group(1)


def start_server(home: Path, *extra: str) -> Process:
    port = free_port()
    proc = subprocess.Popen(
        [*INHOUSE, "serve", "--home", str(home), "--port", str(port), "--threads", "2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Process(proc, f"http://127.0.0.1:{port}")

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            served.output.append(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("server exited:\n" + "".join(served.output))
        try:
            if httpx.get(served.url + "/health").status_code == 200:
                return served
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not become healthy:\n" + "".join(served.output))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Process]:
    served = start_server(tmp_path / "home")
    yield served
    if served.proc.poll() is None:
        served.proc.kill()
        served.proc.wait()


def test_serve_prints_a_key_once_and_the_openai_client_streams(
    server: Process, tmp_path: Path
) -> None:
    text = "".join(server.output)
    assert "/v1" in text and "smollm2" in text and str(tmp_path / "home") in text
    assert "135M demo model" in text and "inhouse models import ./model.gguf --name" in text
    assert f"web app   {server.url}/" in text and "inhouse users passwd" in text
    assert httpx.get(server.url + "/login").is_success  # the sign-in page it points to
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=16,
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    again = start_server(tmp_path / "home")
    try:
        assert "admin key ih-" not in "".join(again.output)
        client = openai.OpenAI(base_url=again.url + "/v1", api_key=server.key, max_retries=0)
        assert next(m.id for m in client.models.list()) == "smollm2"
    finally:
        again.proc.kill()
        again.proc.wait()


def test_sigterm_lets_in_flight_requests_finish(server: Process) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Write a long story."}],
        max_tokens=300,
        temperature=0,
        stream=True,
    )
    chunks = iter(stream)
    next(chunks)
    server.proc.send_signal(signal.SIGTERM)
    with pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    assert refused.value.status_code == 503
    rest = list(chunks)
    assert rest[-1].choices[0].finish_reason in ("stop", "length")
    assert server.proc.wait(30) == 0
    assert "shutting down" in "".join(server.output)


def test_terminal_chat_talks_to_the_server(server: Process) -> None:
    result = subprocess.run(
        [*INHOUSE, "chat", "--url", server.url + "/v1", "--max-tokens", "16"],
        input="What is 2+2?\n/exit\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={"INHOUSE_API_KEY": server.key, "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    answer = result.stdout.split("> ", 1)[1]
    assert answer.strip()


def test_models_list_shows_the_embedded_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [*INHOUSE, "models", "list", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "smollm2" in result.stdout and "Q4_1" in result.stdout


def test_no_auth_is_refused_off_loopback(tmp_path: Path) -> None:
    result = subprocess.run(
        [*INHOUSE, "serve", "--home", str(tmp_path), "--no-auth", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_the_admin_api_doctor_proves_the_servers_air_gap(server: Process) -> None:
    headers = {"Authorization": f"Bearer {server.key}"}
    reply = httpx.get(server.url + "/admin/doctor", headers=headers, timeout=60)
    assert reply.status_code == 200, reply.text
    checks = {(c["area"], c["name"]): c for c in reply.json()["checks"]}
    assert checks["air-gap", "dns lookup"]["status"] == "ok"
    assert checks["air-gap", "connect"]["status"] == "ok"
    assert reply.json()["ok"] is True, reply.text
    assert httpx.get(server.url + "/admin/doctor").status_code == 401


GRACEFUL_S = 5.0
# the process's own teardown (engine stop, store close, exit) on a loaded 2-core machine
TEARDOWN_S = 4.0


def stall_a_body(url: str, key: str) -> socket.socket:
    """A connection that announces a 1,000-byte body and sends none of it."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
    )
    return sock


def test_sigterm_exits_within_the_graceful_time_whatever_is_still_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INHOUSE_SERVER__GRACEFUL_SHUTDOWN_S", str(GRACEFUL_S))
    monkeypatch.setenv("INHOUSE_SERVER__BODY_TIMEOUT_S", "600")
    server = start_server(tmp_path / "home")
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
        # counting goes on well past the graceful time; the streams are left unread
        streams = [
            client.completions.create(
                model="smollm2",
                prompt="1, 2, 3, 4, 5,",
                max_tokens=500,
                temperature=0,
                stream=True,
            )
            for _ in range(4)
        ]
        for stream in streams:
            next(iter(stream))
        stalled = [stall_a_body(server.url, server.key) for _ in range(50)]
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(60)
        took = time.monotonic() - began
        for sock in stalled:
            sock.close()
        # before: the drain's graceful time, then uvicorn's own again (twice the setting)
        assert took < GRACEFUL_S + TEARDOWN_S, f"exited {took:.1f} s after SIGTERM"
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


@pytest.mark.parametrize(
    ("flags", "context"),
    [
        (("--kv-cells", "4096", "--max-running", "4"), 1024),  # streams: an even share each
        (("--kv-cells", "4096", "--kv-layout", "unified"), 4096),  # one pool: all of it
    ],
    ids=["streams", "unified"],
)
def test_the_kv_layout_flag_sets_what_one_request_may_hold(
    tmp_path: Path, flags: tuple[str, ...], context: int
) -> None:
    served = start_server(tmp_path / "home", *flags)
    try:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.key)
        assert client.models.retrieve("smollm2").to_dict()["context_length"] == context
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model="smollm2", prompt="Hi", max_tokens=context)
        assert refused.value.code == "context_length_exceeded"
    finally:
        served.proc.kill()
        served.proc.wait()
