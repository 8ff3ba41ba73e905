"""/v1/fine_tuning/jobs with the official openai client (SQLite and PostgreSQL): create, list,
retrieve, cancel and events in OpenAI's shape; refusals that name what is wrong; another
member's job is a 404; `?stream=true` follows a job's events until it has ended."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest
from sqlalchemy import select
from starlette.requests import Request

from inhouse.api.app import create_app
from inhouse.api.tuning.jobs import follow
from inhouse.auth.authenticate import local_operator
from inhouse.models.resolver import StoreResolver
from inhouse.models.store import DEFAULT_NAME, ModelStore
from inhouse.store.db import Database
from inhouse.store.tables import TuningJob
from inhouse.tuning.jobs import JobService, add_event
from inhouse.tuning.trainer import spec as trainer_spec
from tests.conftest import Served, admin_key, fake_engine, make_settings, need, serve
from tests.fakes import FakeRunner
from tests.tuning.test_files_api import GOOD, _member
from tests.tuning.test_jobs_service import (
    ADAPTER_SET,
    CANCELLED_EVENT,
    OTHER_ARCH,
    add_other_records,
)

STREAM_GUARD_S = 60.0  # against a hang only: a stream that never ends fails the test


@dataclass
class Site:
    served: Served
    clients: dict[str, openai.OpenAI]  # ann, bob (members), root (the admin)
    keys: dict[str, str]

    @property
    def db(self) -> Database:
        db: Database = self.served.app.state.inhouse.db
        return db

    def upload(self, who: str = "ann") -> str:
        return self.clients[who].files.create(file=("t.jsonl", GOOD), purpose="fine-tune").id


@pytest.fixture
def site(db_url: str, tmp_path: Path) -> Iterator[Site]:
    """A server on the model store (the default model and two records tuning refuses)."""
    need(trainer_spec.tuning_available() is None, "the tuning extra is not installed")
    home = tmp_path / "home"
    store = ModelStore(home)
    store.ensure_default()
    add_other_records(store)
    app = create_app(
        make_settings(home, store={"url": db_url}),
        resolver=StoreResolver(store),
        build=lambda spec: fake_engine(FakeRunner()),
    )
    with serve(app, admin_key(app)) as served:
        keys = {"ann": _member(served, "ann"), "bob": _member(served, "bob"), "root": served.key}
        clients = {
            name: openai.OpenAI(base_url=served.v1, api_key=key, max_retries=0)
            for name, key in keys.items()
        }
        yield Site(served, clients, keys)


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict), body
    return body


def test_create_list_retrieve_cancel_and_events(site: Site) -> None:
    ann, file_id = site.clients["ann"], site.upload()
    job = ann.fine_tuning.jobs.create(
        model=DEFAULT_NAME, training_file=file_id, hyperparameters={"n_epochs": 2}, suffix="faq"
    )
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert (job.status, job.model, job.training_file) == ("queued", DEFAULT_NAME, file_id)
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 8
    assert job.hyperparameters.learning_rate_multiplier == 1.0
    assert job.fine_tuned_model is None and job.finished_at is None and job.seed == 0
    assert job.method is not None and job.method.type == "supervised"
    assert (job.model_extra or {})["name"] == f"{DEFAULT_NAME}-faq"
    assert [j.id for j in ann.fine_tuning.jobs.list()] == [job.id]
    assert ann.fine_tuning.jobs.retrieve(job.id).status == "queued"
    assert ann.fine_tuning.jobs.retrieve(f"{DEFAULT_NAME}-faq").id == job.id  # by its name
    events = ann.fine_tuning.jobs.list_events(job.id)
    assert [e.message for e in events.data] == [f"queued: train {DEFAULT_NAME} on {file_id}"]
    assert events.data[0].object == "fine_tuning.job.event" and events.has_more is False

    cancelled = ann.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert ann.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    newest = ann.fine_tuning.jobs.list_events(job.id).data[0]
    assert newest.message == CANCELLED_EVENT
    with pytest.raises(openai.ConflictError) as again:
        ann.fine_tuning.jobs.cancel(job.id)
    error = _error(again.value)
    assert error["code"] == "conflict" and "already cancelled" in error["message"]


def test_the_method_form_and_inhouse_fields(site: Site) -> None:
    ann, file_id = site.clients["ann"], site.upload()
    job = ann.fine_tuning.jobs.create(
        model=DEFAULT_NAME,
        training_file=file_id,
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "n_epochs": 1,
                    "batch_size": "auto",
                    "learning_rate_multiplier": 0.5,
                }
            },
        },
        seed=7,
        extra_body={
            "name": "support-v1",
            "lora": {"rank": 4, "alpha": 8, "max_length": 64},
            "eval_split": 0.2,
            "scorer": "exact",
        },
    )
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size, job.seed) == (1, 8, 7)
    assert job.hyperparameters.learning_rate_multiplier == 0.5
    assert job.method is not None and job.method.supervised is not None
    assert job.method.supervised.hyperparameters is not None
    assert job.method.supervised.hyperparameters.n_epochs == 1
    extra = job.model_extra or {}
    assert (extra["name"], extra["scorer"]) == ("support-v1", "exact")
    lora = (job.method.model_extra or {})["lora"]
    assert (lora["rank"], lora["alpha"], lora["max_length"]) == (4, 8.0, 64)
    assert (lora["learning_rate"], lora["eval_split"]) == (1e-4, 0.2)


def test_a_validation_file_holds_the_examples_the_job_is_evaluated_on(site: Site) -> None:
    ann, train, held_out = site.clients["ann"], site.upload(), site.upload()
    job = ann.fine_tuning.jobs.create(
        model=DEFAULT_NAME, training_file=train, validation_file=held_out
    )
    assert (job.training_file, job.validation_file) == (train, held_out)
    assert ann.fine_tuning.jobs.retrieve(job.id).validation_file == held_out
    with pytest.raises(openai.NotFoundError) as not_found:  # another member's file
        ann.fine_tuning.jobs.create(
            model=DEFAULT_NAME, training_file=train, validation_file=site.upload("bob")
        )
    assert _error(not_found.value)["code"] == "file_not_found"


def test_refusals_name_what_is_wrong_and_the_server_goes_on(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, file_id = site.clients["ann"], site.upload()
    create = ann.fine_tuning.jobs.create
    bad_requests: list[tuple[dict[str, Any], str | None, str]] = [
        ({"method": {"type": "dpo", "dpo": {}}}, "method.type", "'supervised'"),
        ({"metadata": {"team": "support"}}, "metadata", "metadata"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs", "epochs"),
        ({"hyperparameters": {"n_epochs": 1000}}, "hyperparameters.n_epochs", "epochs"),
        ({"hyperparameters": {"n_epochs": "3"}}, "hyperparameters.n_epochs", "whole number"),
        (
            {"hyperparameters": {"learning_rate_multiplier": 0}},
            "hyperparameters.learning_rate_multiplier",
            "above 0",
        ),
        (
            {"hyperparameters": {"learning_rate_multiplier": 10_000}},
            "hyperparameters.learning_rate_multiplier",
            "learning_rate must be",
        ),
        ({"extra_body": {"lora": {"rank": 0}}}, "lora.rank", "rank"),
        ({"model": OTHER_ARCH}, None, "llama-architecture"),
        ({"model": ADAPTER_SET}, "model", "adapter set"),
        ({"suffix": "Not A Name!"}, "name", "invalid model name"),
    ]
    for fields, param, said in bad_requests:
        arguments: dict[str, Any] = {"model": DEFAULT_NAME, "training_file": file_id} | fields
        with pytest.raises(openai.BadRequestError) as refused:
            create(**arguments)
        error = _error(refused.value)
        assert said in error["message"], (fields, error)
        if param is not None:
            assert error["param"] == param, (fields, error)
    with pytest.raises(openai.BadRequestError) as arch:
        create(model=OTHER_ARCH, training_file=file_id)
    assert _error(arch.value)["code"] == "unsupported_base_model"
    for missing in ("file-0123456789abcdef", "no-such-set"):
        with pytest.raises(openai.NotFoundError) as not_found:
            create(model=DEFAULT_NAME, training_file=missing)
        assert _error(not_found.value)["code"] == "file_not_found"
    with pytest.raises(openai.NotFoundError):
        create(model="no-such-model", training_file=file_id)
    with pytest.raises(openai.ConflictError):
        create(model=DEFAULT_NAME, training_file=file_id, extra_body={"name": DEFAULT_NAME})

    monkeypatch.setattr(trainer_spec, "TUNING_PACKAGES", ("torch", "no_such_package_here"))
    with pytest.raises(openai.BadRequestError) as unavailable:
        create(model=DEFAULT_NAME, training_file=file_id)
    error = _error(unavailable.value)
    assert error["code"] == "tuning_unavailable" and "pip install" in error["message"]
    assert list(ann.fine_tuning.jobs.list()) == []  # nothing was queued
    assert ann.models.list().data  # the server still answers


def test_another_members_job_is_not_found_and_an_admin_sees_it(site: Site) -> None:
    ann, bob, root = (site.clients[n] for n in ("ann", "bob", "root"))
    file_id = site.upload()
    with pytest.raises(openai.NotFoundError):  # nor may bob train on ann's file
        bob.fine_tuning.jobs.create(model=DEFAULT_NAME, training_file=file_id)
    job = ann.fine_tuning.jobs.create(model=DEFAULT_NAME, training_file=file_id)
    for attempt in (
        bob.fine_tuning.jobs.retrieve,
        bob.fine_tuning.jobs.cancel,
        bob.fine_tuning.jobs.list_events,
    ):
        with pytest.raises(openai.NotFoundError) as refused:
            attempt(job.id)
        assert _error(refused.value)["code"] == "fine_tuning_job_not_found"
    assert list(bob.fine_tuning.jobs.list()) == []
    headers = {"Authorization": f"Bearer {site.keys['bob']}"}
    url = f"{site.served.v1}/fine_tuning/jobs/{job.id}/events?stream=true"
    assert httpx.get(url, headers=headers, timeout=30).status_code == 404
    assert [j.id for j in root.fine_tuning.jobs.list()] == [job.id]
    assert (root.fine_tuning.jobs.retrieve(job.id).model_extra or {})["owner"] == "ann"
    assert root.fine_tuning.jobs.cancel(job.id).status == "cancelled"


def test_jobs_and_events_page_as_the_client_expects(site: Site) -> None:
    ann, file_id = site.clients["ann"], site.upload()
    made = [ann.fine_tuning.jobs.create(model=DEFAULT_NAME, training_file=file_id) for _ in "abc"]
    first = ann.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in first.data] == [made[2].id, made[1].id] and first.has_more
    # iterating pages on through the `after` cursor
    assert [j.id for j in ann.fine_tuning.jobs.list(limit=2)] == [m.id for m in made[::-1]]
    ann.fine_tuning.jobs.cancel(made[0].id)
    page = ann.fine_tuning.jobs.list_events(made[0].id, limit=1)
    assert page.has_more and page.data[0].message == CANCELLED_EVENT
    assert [e.message for e in ann.fine_tuning.jobs.list_events(made[0].id, limit=1)] == [
        CANCELLED_EVENT,
        f"queued: train {DEFAULT_NAME} on {file_id}",
    ]
    for cursor in ("not-an-event", "ftevent-\u00b2"):  # a superscript two is a digit to isdigit
        with pytest.raises(openai.BadRequestError) as refused:
            ann.fine_tuning.jobs.list_events(made[0].id, after=cursor)
        assert _error(refused.value)["param"] == "after"


def _read_stream(site: Site, job_id: str, lines: queue.Queue[str | None]) -> None:
    """Read the job's event stream line by line into `lines` (None at its end)."""
    headers = {"Authorization": f"Bearer {site.keys['ann']}"}
    url = f"{site.served.v1}/fine_tuning/jobs/{job_id}/events"
    with httpx.stream(
        "GET", url, params={"stream": "true"}, headers=headers, timeout=STREAM_GUARD_S
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line:
                lines.put(line)
    lines.put(None)


def _next(lines: queue.Queue[str | None]) -> dict[str, Any] | str:
    line = lines.get(timeout=STREAM_GUARD_S)
    assert line is not None and line.startswith("data: "), line
    payload = line.removeprefix("data: ")
    return payload if payload == "[DONE]" else json.loads(payload)


def test_the_event_stream_follows_a_job_until_it_ends(site: Site) -> None:
    ann = site.clients["ann"]
    job = ann.fine_tuning.jobs.create(model=DEFAULT_NAME, training_file=site.upload())
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_stream, args=(site, job.id, lines), daemon=True)
    reader.start()
    first = _next(lines)
    assert isinstance(first, dict) and first["message"].startswith("queued: train")
    with site.db.write() as session:  # as the runner writes a step's metrics
        job_row = session.scalars(select(TuningJob.id).where(TuningJob.public_id == job.id)).one()
        add_event(session, job_row, "step 1/4: loss 2.5000", data={"step": 1, "loss": 2.5})
    step = _next(lines)
    assert isinstance(step, dict) and step["data"] == {"step": 1, "loss": 2.5}
    assert step["type"] == "metrics" and step["object"] == "fine_tuning.job.event"
    ann.fine_tuning.jobs.cancel(job.id)
    cancelled = _next(lines)
    assert isinstance(cancelled, dict) and cancelled["message"] == CANCELLED_EVENT
    final = _next(lines)
    assert isinstance(final, dict) and final["object"] == "fine_tuning.job"
    assert (final["id"], final["status"]) == (job.id, "cancelled")
    assert _next(lines) == "[DONE]"
    assert lines.get(timeout=STREAM_GUARD_S) is None
    reader.join(STREAM_GUARD_S)

    # a finished job's stream replays what comes after the cursor, then ends at once
    headers = {"Authorization": f"Bearer {site.keys['ann']}"}
    url = f"{site.served.v1}/fine_tuning/jobs/{job.id}/events"
    after = {"stream": "true", "after": f"ftevent-{step['seq']}"}
    body = httpx.get(url, params=after, headers=headers, timeout=STREAM_GUARD_S).text
    shown = [line.removeprefix("data: ") for line in body.split("\n\n") if line]
    assert json.loads(shown[0])["message"] == CANCELLED_EVENT
    assert json.loads(shown[1])["status"] == "cancelled" and shown[2:] == ["[DONE]"]


def test_a_key_scoped_to_other_models_may_not_tune_this_one(site: Site) -> None:
    file_id = site.upload()
    headers = {"Authorization": f"Bearer {site.served.key}"}
    with httpx.Client(base_url=site.served.base_url, headers=headers, timeout=30) as admin:
        reply = admin.post("/admin/keys", json={"user": "ann", "models": [OTHER_ARCH]})
        assert reply.status_code == 201, reply.text
    scoped = openai.OpenAI(base_url=site.served.v1, api_key=reply.json()["key"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        scoped.fine_tuning.jobs.create(model=DEFAULT_NAME, training_file=file_id)
    assert _error(refused.value)["param"] == "model"
    assert list(site.clients["ann"].fine_tuning.jobs.list()) == []


def test_the_stream_stops_polling_when_its_client_has_gone(site: Site) -> None:
    job = site.clients["ann"].fine_tuning.jobs.create(
        model=DEFAULT_NAME, training_file=site.upload()
    )
    state = site.served.app.state.inhouse
    service = JobService(state.db, state.audit, state.resolver.store)

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def read_all() -> list[bytes]:
        request = Request({"type": "http", "method": "GET", "headers": []}, gone)
        with anyio.fail_after(STREAM_GUARD_S):  # a stream that polls on would hang here
            return [c async for c in follow(request, service, local_operator(), job.id, 0)]

    chunks = anyio.run(read_all)
    assert len(chunks) == 1 and b"queued: train" in chunks[0]  # no job and no [DONE] follow
