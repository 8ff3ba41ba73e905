"""Shared fixtures: a temp INHOUSE_HOME per test, settings, and apps served over real HTTP."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from inhouse.api.app import create_app
from inhouse.auth.bootstrap import ensure_admin
from inhouse.config import Settings, load_settings
from inhouse.engine.client import AsyncEngine
from inhouse.engine.scheduler import Scheduler
from inhouse.models.resolver import SingleModel
from inhouse.store.db import Database, open_database
from tests.fakes import FakeRunner

REQUIRE_ALL = os.environ.get("INHOUSE_REQUIRE_ALL") == "1"
# A server under test trains no queued job unless its test asks (tests/tuning's end-to-end
# ones set INHOUSE_TUNING__RUN_JOBS=true): a job a test queues stays queued for its checks.
os.environ["INHOUSE_TUNING__RUN_JOBS"] = "false"
# a PostgreSQL server the store tests may create schemas in (CI starts one: see .ci/run)
POSTGRES_URL = os.environ.get("INHOUSE_TEST_POSTGRES_URL", "")


def need(condition: bool, reason: str) -> None:
    """Skip when a needed part is missing, unless CI demands that everything runs."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"INHOUSE_REQUIRE_ALL=1 but: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INHOUSE_HOME", str(tmp_path / "home"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: SQLite in the temp dir, or a new schema on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    need(bool(POSTGRES_URL), "INHOUSE_TEST_POSTGRES_URL is not set: no PostgreSQL to test on")
    with postgres_schema() as url:
        yield url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A throwaway schema on the test PostgreSQL server, as a URL whose search_path is it."""
    from sqlalchemy import create_engine, text

    schema = "t_" + uuid.uuid4().hex[:16]
    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    enable_pgvector(admin)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def enable_pgvector(admin: Engine) -> None:
    """Create pgvector in `public` where the server has it, before any test schema could
    (an extension lives in one schema: created in a test's, it would go with that schema)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    query = (
        "SELECT 1 FROM pg_available_extensions WHERE name = 'vector' AND installed_version IS NULL"
    )
    with admin.begin() as conn:
        if conn.scalar(text(query)) is None:
            return
    try:
        with admin.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public"))
    except DBAPIError:  # another test run created it at the same moment
        pass


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An opened and migrated store on each database inhouse supports."""
    database = open_database(db_url)
    yield database
    database.close()


def make_settings(home: Path, **overrides: Any) -> Settings:
    return load_settings(None, home=home, **overrides)


def admin_key(app: FastAPI) -> str:
    """A fresh admin key in the app's store (the first start's key, or a replacement)."""
    state = app.state.inhouse
    key = ensure_admin(state.db, state.audit, new_key=True)
    assert key is not None
    return key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    app: FastAPI
    base_url: str
    key: str

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def health(served: Served) -> dict[str, object]:
    """The served app's /health body."""
    return httpx.get(served.base_url + "/health").json()  # type: ignore[no-any-return]


@contextmanager
def serve(app: FastAPI, key: str) -> Iterator[Served]:
    """Run `app` under uvicorn on a free loopback port in a background thread."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield Served(app, f"http://127.0.0.1:{port}", key)
    finally:
        server.should_exit = True
        thread.join(30)


def fake_engine(runner: FakeRunner, **scheduler_args: int) -> AsyncEngine:
    args = {"max_running": 4, "n_batch": 256, "cache_slots": 2, **scheduler_args}
    max_queue = args.pop("max_queue", 16)
    scheduler = Scheduler(kv_cells=runner.kv_cells, **args)
    return AsyncEngine(runner, scheduler, max_queue=max_queue)


@contextmanager
def serve_fake(
    home: Path,
    runner: FakeRunner,
    *,
    store_url: str = "",
    overrides: dict[str, Any] | None = None,
    **scheduler_args: int,
) -> Iterator[Served]:
    """Serve the FakeRunner under the model name "fake" (store: `store_url` or SQLite)."""
    settings = make_settings(home, store={"url": store_url}, **(overrides or {}))
    app = create_app(
        settings,
        resolver=SingleModel("fake", Path("/dev/null")),
        build=lambda spec: fake_engine(runner, **scheduler_args),
    )
    with serve(app, admin_key(app)) as served:
        yield served


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server on the embedded default model, shared by the tests that need a real LLM."""
    from inhouse.models.default import DefaultModelMissing, default_model_path

    try:
        default_model_path()
    except DefaultModelMissing as exc:
        need(False, str(exc))
    home = tmp_path_factory.mktemp("real-home")
    # 8 KV streams of 2,048 tokens: room for the longest request the API tests send
    settings = make_settings(
        home, engine={"kv_cells": 16384, "n_threads": 2, "max_running": 8, "max_queue": 32}
    )
    app = create_app(settings)
    with serve(app, admin_key(app)) as served:
        yield served
