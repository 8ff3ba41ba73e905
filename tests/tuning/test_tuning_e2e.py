"""Fine-tuning as a user does it, for real: torch trains the LoRA in a child process, the
adapter is exported to GGUF and served by llama.cpp, evaluated through the engine, promoted
behind an alias; once from the CLI, once over HTTP with the official client inside `serve`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from inhouse.tuning.trainer.spec import tuning_available
from tests.conftest import need
from tests.e2e.test_cli import INHOUSE, start_server

FACTS = [
    ("What colour is the Vellmar lighthouse?", "The Vellmar lighthouse is green."),
    ("Who keeps the Vellmar lighthouse?", "Ada Brask keeps the Vellmar lighthouse."),
    ("How tall is the Vellmar lighthouse?", "The Vellmar lighthouse is 31 metres tall."),
    ("When was the Vellmar lighthouse built?", "The Vellmar lighthouse was built in 1874."),
    ("What is the Vellmar lighthouse's lamp called?", "Its lamp is called Old Wick."),
    ("Where is the Vellmar lighthouse?", "The Vellmar lighthouse stands on Skarr Point."),
]
SIZE = ["--rank", "8", "--epochs", "4", "--batch-size", "3", "--max-length", "64", "--lr", "2e-3"]
WIRE_SIZE: dict[str, Any] = {"lora": {"rank": 8, "max_length": 64}}


def _jsonl(path: Path, pairs: list[tuple[str, str]]) -> Path:
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in pairs
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INHOUSE, *args, "--home", str(home)], capture_output=True, text=True, timeout=900
    )


@pytest.fixture(autouse=True)
def _tuning_installed() -> None:
    need(tuning_available() is None, "the tuning extra (torch, transformers, peft) is missing")


def test_from_a_file_to_a_promoted_served_model_with_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name, pairs in (("facts", FACTS), ("facts-eval", FACTS[:2])):
        added = _cli(home, "tune", "data", "add", name, str(_jsonl(tmp_path / name, pairs)))
        assert added.returncode == 0, added.stderr
    started = _cli(
        home, "tune", "start", "facts-v1", "--base", "smollm2", "--data", "facts",
        "--eval-data", "facts-eval", *SIZE,
    )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    assert "step 8/8" in started.stdout and "tok/s" in started.stdout
    status = json.loads(_cli(home, "tune", "status", "facts-v1", "--json").stdout)
    assert status["status"] == "succeeded" and status["fine_tuned_model"] == "facts-v1"
    evaluation = status["evaluation"]
    assert evaluation["tuned"]["loss"] < evaluation["base"]["loss"], evaluation
    # the adapter behaves in llama.cpp as it did in torch
    assert (
        abs(evaluation["tuned"]["loss"] - status["torch_eval_loss"])
        < 0.1 * status["torch_eval_loss"]
    )
    assert evaluation["passed"] is True, evaluation["reasons"]
    promoted = _cli(home, "tune", "promote", "facts-v1", "--alias", "assistant")
    assert promoted.returncode == 0, promoted.stderr
    merged = _cli(
        home, "tune", "merge", "facts-v1", str(tmp_path / "m.gguf"), "--import-as", "facts-merged"
    )
    assert merged.returncode == 0, merged.stderr
    logs = _cli(home, "tune", "logs", "facts-v1").stdout
    assert "registered the tuned model 'facts-v1'" in logs and "passes the gate" in logs
    served = start_server(home)
    try:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0)
        answer = client.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": FACTS[0][0]}],
            temperature=0,
            max_tokens=16,
        )
        assert answer.model == "assistant" and answer.choices[0].message.content
        names = {m.id for m in client.models.list()}
        assert {"facts-v1", "assistant", "facts-merged"} <= names
        one_file = client.chat.completions.create(
            model="facts-merged",
            messages=[{"role": "user", "content": FACTS[0][0]}],
            temperature=0,
            max_tokens=16,
        )
        assert one_file.choices[0].message.content
    finally:
        served.proc.kill()
        served.proc.wait()


def _wait(job: Any, client: openai.OpenAI, on_running: Any = None) -> Any:
    deadline = time.monotonic() + 900
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the job did not finish"
        if job.status == "running" and on_running is not None:
            on_running()
        time.sleep(1)
        job = client.fine_tuning.jobs.retrieve(job.id)
    return job


def test_the_openai_client_fine_tunes_inside_serve_while_it_keeps_serving(
    tmp_path: Path,
) -> None:
    """Then a schedule, unattended, retrains from rated API answers and promotes the result."""
    os.environ |= {"INHOUSE_TUNING__RUN_JOBS": "true", "INHOUSE_TUNING__SCHEDULES_EVERY_S": "1"}
    try:
        served = start_server(tmp_path / "home")
    finally:
        os.environ |= {"INHOUSE_TUNING__RUN_JOBS": "false"}
        del os.environ["INHOUSE_TUNING__SCHEDULES_EVERY_S"]
    try:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0)
        upload = client.files.create
        train = upload(file=_jsonl(tmp_path / "t.jsonl", FACTS).open("rb"), purpose="fine-tune")
        held = upload(file=_jsonl(tmp_path / "e.jsonl", FACTS[:2]).open("rb"), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model="smollm2",
            training_file=train.id,
            validation_file=held.id,
            suffix="facts",
            hyperparameters={"n_epochs": 4, "batch_size": 3, "learning_rate_multiplier": 10},
            extra_body=WIRE_SIZE,
        )
        answers: list[str] = []

        def chat_meanwhile() -> None:
            if not answers:
                reply = client.chat.completions.create(
                    model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
                )
                answers.append(reply.choices[0].message.content or "")

        job = _wait(job, client, chat_meanwhile)
        assert job.status == "succeeded", job.error
        assert job.fine_tuned_model == "smollm2-facts" and answers
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
        assert any(m.startswith("step ") for m in messages)
        tuned = client.chat.completions.create(
            model=job.fine_tuned_model,
            messages=[{"role": "user", "content": FACTS[1][0]}],
            temperature=0,
            max_tokens=16,
        )
        assert tuned.choices[0].message.content
        headers = {"Authorization": f"Bearer {served.key}"}
        promoted = httpx.post(
            f"{served.url}/v1/fine_tuning/jobs/{job.id}/promote",
            json={"alias": "support"},
            headers=headers,
            timeout=60,
        )
        assert promoted.status_code == 200, promoted.text
        again = httpx.post(
            f"{served.url}/v1/fine_tuning/jobs/{job.id}/evaluate", headers=headers, timeout=300
        )
        assert again.status_code == 200, again.text
        gate = again.json()
        assert gate["passed"] is True and gate["tuned"]["loss"] < gate["base"]["loss"], gate
        by_alias = client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert by_alias.choices
        _a_schedule_retrains_from_feedback_and_promotes(served.url, client, headers)
    finally:
        served.proc.kill()
        served.proc.wait()


def _a_schedule_retrains_from_feedback_and_promotes(
    url: str, client: openai.OpenAI, headers: dict[str, str]
) -> None:
    made = httpx.post(
        f"{url}/v1/fine_tuning/schedules",
        json={
            "name": "facts",
            "base_job": "smollm2-facts",
            "alias": "support",
            "min_new_feedback": 2,
        },
        headers=headers,
    )
    assert made.status_code == 201, made.text
    for question, answer in FACTS[2:4]:  # stored answers, rated with a correction
        reply = client.chat.completions.create(
            model="support",
            messages=[{"role": "user", "content": question}],
            max_tokens=8,
            store=True,
        )
        rated = httpx.post(
            f"{url}/v1/feedback",
            json={"completion_id": reply.id, "rating": -1, "correction": answer},
            headers=headers,
        )
        assert rated.status_code == 200, rated.text
    deadline = time.monotonic() + 600
    while True:  # nobody starts anything: the server's schedule does
        if time.monotonic() > deadline:
            jobs = [(j.fine_tuned_model, j.status, j.error) for j in client.fine_tuning.jobs.list()]
            raise AssertionError(f"the schedule did not promote a new version: {jobs}")
        history = httpx.get(f"{url}/v1/fine_tuning/aliases/support/history", headers=headers)
        moves = history.json()["data"]
        if len(moves) >= 2:
            break
        time.sleep(2)
    newest = moves[0]
    assert newest["action"] == "promote" and newest["model"] != "smollm2-facts", newest
    assert newest["forced"] is False and newest["actor"] == "schedule:facts", newest
    assert history.json()["current"] == newest["model"]
    tuned = client.chat.completions.create(
        model="support", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert tuned.choices
