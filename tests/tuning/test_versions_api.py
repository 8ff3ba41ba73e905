"""Promotion over HTTP, served without a restart: after `POST .../promote` a chat through
/v1 that names the alias is answered by the tuned version, and after a rollback by the one
before; refusals are OpenAI-shaped errors; schedules are for those who manage tuning."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from inhouse.api.app import create_app
from inhouse.auth.directory import Directory
from inhouse.engine.pool import ModelSpec
from inhouse.models.resolver import StoreResolver
from inhouse.models.store import ModelStore
from tests.conftest import Served, admin_key, fake_engine, make_settings, need, serve
from tests.fakes import FakeRunner
from tests.tuning.versions_world import FinishedJob, build_store, failing, passing, write_job


@dataclass
class Site:
    served: Served
    member_key: str

    def call(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.served.key}"}
        return httpx.request(method, self.served.base_url + path, headers=headers, timeout=60, **kw)

    def answer(self, model: str) -> str:
        """The reply to a chat naming `model`: each engine answers with its model's name."""
        client = openai.OpenAI(base_url=self.served.v1, api_key=self.served.key, max_retries=0)
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        return reply.choices[0].message.content or ""

    def aliases(self) -> dict[str, str | None]:
        client = openai.OpenAI(base_url=self.served.v1, api_key=self.served.key, max_retries=0)
        return {m.id: (m.model_extra or {}).get("alias_of") for m in client.models.list()}


def _engine(spec: ModelSpec) -> Any:
    return fake_engine(FakeRunner(script=spec.name.encode()[:2] + b" "))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    home = build_store(tmp_path / "home")
    try:
        resolver = StoreResolver(ModelStore(home))
    except Exception as exc:  # the packaged default model is the store's first entry
        need(False, f"no default model: {exc}")
        raise
    app = create_app(
        make_settings(home, tuning={"run_jobs": False}), resolver=resolver, build=_engine
    )
    state = app.state.inhouse
    with state.db.write() as session:
        directory = Directory(session, state.audit, "cli:test")
        directory.add_user("mia")
        member_key = directory.create_key("mia")[1]
    write_job(state.db, FinishedJob("support-v1", None, "v1", passing()))
    write_job(state.db, FinishedJob("support-v2", None, "v2", failing("no better than v1")))
    with serve(app, admin_key(app)) as served:
        yield Site(served, member_key)


def test_a_promoted_version_answers_under_the_alias_at_once_and_rollback_restores(
    site: Site,
) -> None:
    made = site.call("POST", "/admin/models/aliases", json={"alias": "assistant", "target": "tiny"})
    assert made.status_code == 201, made.text
    assert site.answer("assistant").startswith("ti")
    promoted = site.call(
        "POST", "/v1/fine_tuning/jobs/support-v1/promote", json={"alias": "assistant"}
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["model"] == "v1" and promoted.json()["previous"] == "tiny"
    assert site.answer("assistant").startswith("v1")  # no restart
    assert site.aliases()["assistant"] == "v1"
    back = site.call("POST", "/v1/fine_tuning/aliases/assistant/rollback")
    assert back.status_code == 200, back.text
    assert site.answer("assistant").startswith("ti")
    history = site.call("GET", "/v1/fine_tuning/aliases/assistant/history").json()
    assert [(r["action"], r["model"]) for r in history["data"]] == [
        ("rollback", "tiny"),
        ("promote", "v1"),
    ]
    assert history["data"][1]["tuned_loss"] == 1.5


def test_a_failed_gate_is_a_409_in_openai_shape_and_force_overrides(site: Site) -> None:
    path = "/v1/fine_tuning/jobs/support-v2/promote"
    refused = site.call("POST", path, json={"alias": "assistant"})
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "evaluation_gate_not_passed" and "no better than v1" in error["message"]
    assert "assistant" not in site.aliases()
    forced = site.call("POST", path, json={"alias": "assistant", "force": True})
    assert forced.status_code == 200 and forced.json()["forced"] is True
    assert site.answer("assistant").startswith("v2")


def test_bad_requests_get_typed_errors(site: Site) -> None:
    nothing = site.call("POST", "/v1/fine_tuning/aliases/assistant/rollback")
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "nothing_to_roll_back"
    missing = site.call("POST", "/v1/fine_tuning/jobs/nope/promote", json={"alias": "a"})
    assert missing.status_code == 404
    extra = site.call(
        "POST", "/v1/fine_tuning/jobs/support-v1/promote", json={"alias": "a", "x": 1}
    )
    assert extra.status_code == 400
    unknown = site.call("GET", "/v1/fine_tuning/aliases/never/history")
    assert unknown.status_code == 404
    mine = site.call(
        "POST", "/v1/fine_tuning/jobs/support-v1/promote", key=site.member_key, json={"alias": "a"}
    )
    assert mine.status_code == 404  # the operator's job is not the member's to see


def test_schedules_are_managed_by_admins_only(site: Site) -> None:
    body = {
        "name": "support",
        "base_job": "support-v1",
        "alias": "assistant",
        "min_new_feedback": 50,
    }
    denied = site.call("POST", "/v1/fine_tuning/schedules", key=site.member_key, json=body)
    assert denied.status_code == 403
    made = site.call("POST", "/v1/fine_tuning/schedules", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["min_new_feedback"] == 50 and made.json()["new_feedback"] == 0
    twice = site.call("POST", "/v1/fine_tuning/schedules", json=body)
    assert twice.status_code == 409
    bad = site.call("POST", "/v1/fine_tuning/schedules", json=body | {"min_new_feedback": 0})
    assert bad.status_code == 400
    listed = site.call("GET", "/v1/fine_tuning/schedules").json()
    assert [s["name"] for s in listed["data"]] == ["support"]
    assert site.call("DELETE", "/v1/fine_tuning/schedules/support").json()["deleted"] is True
    assert site.call("DELETE", "/v1/fine_tuning/schedules/support").status_code == 404
