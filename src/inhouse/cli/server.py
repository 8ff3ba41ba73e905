"""Run the app under uvicorn with a graceful, observable shutdown."""

from __future__ import annotations

import ipaddress
import logging
from types import FrameType

import uvicorn
from fastapi import FastAPI

from inhouse.api.deps import AppState

log = logging.getLogger("inhouse")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT: new requests get 503 at once, in-flight ones run to their end."""

    def __init__(self, config: uvicorn.Config, state: AppState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.state.draining:
            pending = self.state.engine.num_pending
            log.warning("shutting down: finishing %d in-flight requests", pending)
        self.state.draining = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after its shutdown; a drained server exits with 0
        self._captured_signals.clear()


def run_server(app: FastAPI, host: str, port: int, graceful_s: float) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=int(graceful_s),
        lifespan="on",
    )
    DrainingServer(config, app.state.inhouse).run()
