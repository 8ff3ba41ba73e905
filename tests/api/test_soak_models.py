"""Soak: models loaded and unloaded (memory budget, idle timeout, keep_alive 0) under
concurrent traffic and disconnects. Every request ends with an answer or a clear error, and
the server keeps serving every model afterwards."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import ollama
import openai
from openai.types.chat import ChatCompletionMessageParam

from inhouse.api.app import create_app
from inhouse.engine.client import AsyncEngine
from inhouse.engine.pool import ModelSpec
from inhouse.errors import ModelNotFound
from tests.conftest import admin_key, fake_engine, make_settings, serve
from tests.fakes import FakeRunner

MODELS = ("m0", "m1", "m2", "m3")
MODEL_MB = 30  # a budget of 64 MB holds two of them: loading a third unloads one
SOAK_S = 12.0
WORKERS = 8
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]


class Models:
    """Four fake models by name; m0 is the default (pinned)."""

    def resolve(self, name: str) -> ModelSpec:
        if name not in MODELS:
            raise ModelNotFound(f"The model '{name}' does not exist.", param="model")
        return ModelSpec(name=name, path=Path("/dev/null"), pinned=name == MODELS[0])

    def names(self) -> list[str]:
        return list(MODELS)

    def default(self) -> ModelSpec:
        return self.resolve(MODELS[0])


class Engines:
    """Builds a fake engine per load, keeping every runner to check it afterwards."""

    def __init__(self) -> None:
        self.runners: list[FakeRunner] = []
        self.lock = threading.Lock()

    def __call__(self, spec: ModelSpec) -> AsyncEngine:
        runner = FakeRunner(step_delay=0.003)
        runner.info = replace(runner.info, name=spec.name, memory_bytes=MODEL_MB << 20)
        with self.lock:
            self.runners.append(runner)
        return fake_engine(runner, max_running=3, max_queue=3)


class Traffic:
    """One worker's requests: each one is an answer, a 503/429, or a disconnect we made."""

    def __init__(self, base_url: str, key: str, seed: int) -> None:
        self.rng = random.Random(seed)
        self.oai = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
        self.impatient = self.oai.with_options(timeout=0.3)
        headers = {"Authorization": f"Bearer {key}"}
        self.olla = ollama.Client(host=base_url, headers=headers, timeout=60)
        self.outcomes: dict[str, int] = {}

    def note(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def one(self) -> None:
        model = self.rng.choice(MODELS)
        kind = self.rng.choice(("stream", "whole", "leave_stream", "leave_whole", "ollama"))
        try:
            getattr(self, kind)(model)
            self.note(kind)
        except openai.APIStatusError as exc:
            assert exc.status_code == 503 and exc.response.headers["retry-after"], exc
            self.note("503")
        except ollama.ResponseError as exc:
            assert exc.status_code == 503, exc
            self.note("503")

    def stream(self, model: str) -> None:
        chunks = self.oai.chat.completions.create(
            model=model,
            messages=HI,
            max_tokens=12,
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text == "hello world ", text

    def whole(self, model: str) -> None:
        reply = self.oai.completions.create(model=model, prompt="Hi", max_tokens=5)
        assert reply.choices[0].text == "hello"

    def leave_stream(self, model: str) -> None:
        chunks = self.oai.chat.completions.create(
            model=model,
            messages=HI,
            max_tokens=2000,
            stream=True,
        )
        for _, _ in zip(range(3), chunks, strict=False):
            pass
        chunks.close()

    def leave_whole(self, model: str) -> None:
        try:
            self.impatient.chat.completions.create(model=model, messages=HI, max_tokens=2000)
        except openai.APITimeoutError:
            return
        raise AssertionError("a 6 s answer came within the client's 0.3 s")

    def ollama(self, model: str) -> None:
        keep_alive = self.rng.choice((0, "1s", None))
        reply = self.olla.generate(
            model=model, prompt="Hi", keep_alive=keep_alive, options={"num_predict": 5}
        )
        assert reply.response == "hello"


def test_models_come_and_go_under_traffic_and_every_request_ends(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, engine={"memory_budget_mb": 64, "keep_alive_s": 0.5, "max_queue": 3}
    )
    engines = Engines()
    app = create_app(settings, resolver=Models(), build=engines)
    with serve(app, admin_key(app)) as served:
        deadline = time.monotonic() + SOAK_S
        workers = [Traffic(served.base_url, served.key, seed) for seed in range(WORKERS)]
        failures: list[BaseException] = []

        def work(traffic: Traffic) -> None:
            try:
                while time.monotonic() < deadline:
                    traffic.one()
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SOAK_S + 60)
        assert not any(t.is_alive() for t in threads), "a request never ended"
        assert not failures, failures[0]

        pool = app.state.inhouse.pool
        deadline = time.monotonic() + 20
        while pool.num_pending or any(m.engine.core.num_running for m in pool.loaded):
            assert time.monotonic() < deadline, "leases or sequences were left behind"
            time.sleep(0.05)
        assert httpx.get(served.base_url + "/health").status_code == 200
        for model in MODELS:  # every model still answers
            reply = workers[0].oai.completions.create(model=model, prompt="Hi", max_tokens=5)
            assert reply.choices[0].text == "hello"
        totals: dict[str, int] = {}
        for traffic in workers:
            for outcome, count in traffic.outcomes.items():
                totals[outcome] = totals.get(outcome, 0) + count
        print("soak outcomes:", totals, "engines built:", len(engines.runners))
        assert len(engines.runners) > len(MODELS)  # models were unloaded and loaded again
        assert totals.get("stream", 0) and totals.get("leave_whole", 0)
    assert all(runner.live_samplers == 0 for runner in engines.runners)
