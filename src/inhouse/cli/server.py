"""Run the app under uvicorn with a graceful, observable shutdown."""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from inhouse.api.deps import AppState

log = logging.getLogger("inhouse")


FLUSH_S = 0.5


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: new requests get 503 at once, in-flight ones run to their end.

    The listener stays open while draining, so a client (or a load balancer) gets a clear
    503 with Retry-After rather than a refused connection; a second signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, state: AppState, graceful_s: float) -> None:
        super().__init__(config)
        self.state = state
        self.graceful_s = graceful_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.state.draining:
            self._exit(sig, frame)
            return
        self.state.draining = True
        log.warning(
            "shutting down: finishing %d in-flight requests (up to %.0f s); new ones get 503",
            self.state.pool.num_pending,
            self.graceful_s,
        )
        threading.Thread(target=self._drain, args=(sig, frame), daemon=True).start()

    def _drain(self, sig: int, frame: FrameType | None) -> None:
        deadline = time.monotonic() + self.graceful_s
        while self.state.pool.num_pending and time.monotonic() < deadline:
            time.sleep(0.05)
        # the engine is done; give the responses a moment to send their last chunks
        time.sleep(min(FLUSH_S, max(0.0, deadline - time.monotonic())))
        # uvicorn then waits for open connections (a stream's last bytes, a body that never
        # comes) before it cancels them: only for what is left of this one deadline, not
        # for a second graceful_s of its own
        self.config.timeout_graceful_shutdown = math.ceil(max(0.0, deadline - time.monotonic()))
        self._exit(sig, frame)

    def _exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after its shutdown; a drained server exits with 0
        self._captured_signals.clear()


def run_server(app: FastAPI, host: str, port: int, graceful_s: float) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=max(1, int(graceful_s)),
        lifespan="on",
        loop="asyncio",  # uvloop's sockets bypass the audit hook the air-gap relies on
        proxy_headers=False,  # X-Forwarded-For is client-controlled: audit the socket's peer
    )
    DrainingServer(config, app.state.inhouse, graceful_s).run()
