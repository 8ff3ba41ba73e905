"""An imported model and a LoRA adapter set served side by side with the default model.

A real `inhouse serve` process on a home where an admin imported a second GGUF (`tiny`, random
weights), added an adapter set (`smollm2-tuned` = SmolLM2 + a LoRA) and an alias (`assistant`),
driven by the official openai client while the admin keeps changing the store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import need
from tests.e2e.test_cli import INHOUSE, Process, start_server
from tests.model_files import write_smollm2_lora, write_tiny_llama

NAMES = ("smollm2", "tiny", "smollm2-tuned", "assistant")
PROMPT = "What is the capital of France?"
# small KV pools (4 streams of 256 cells), so that several models fit in a test machine's
# memory and the budget test below holds; one thread per engine (the last --threads wins), as
# the engines of several models share the cores
SERVE_ARGS = ("--kv-cells", "1024", "--max-running", "4", "--threads", "1")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from inhouse.models.default import DefaultModelMissing, default_model_path

    try:
        default_model_path()
    except DefaultModelMissing as exc:
        need(False, str(exc))
    folder = tmp_path_factory.mktemp("model-files")
    return write_tiny_llama(folder / "tiny.gguf"), write_smollm2_lora(folder / "adapter.gguf")


def models_cli(home: Path, *args: str) -> str:
    """Run `inhouse models ...` as the admin does, with no INHOUSE_* from the test's env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INHOUSE_")}
    result = subprocess.run(
        [*INHOUSE, "models", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def make_home(home: Path, files: tuple[Path, Path]) -> Path:
    tiny, adapter = files
    models_cli(home, "import", str(tiny), "--name", "tiny")
    models_cli(home, "adapter", "smollm2-tuned", "--base", "smollm2", "--lora", str(adapter))
    models_cli(home, "alias", "assistant", "smollm2")
    return home


@contextmanager
def running(home: Path, **env: str) -> Iterator[Process]:
    """`inhouse serve` on `home` with extra INHOUSE_* settings in its environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        served = start_server(home, *SERVE_ARGS)
    try:
        yield served
    finally:
        served.proc.kill()
        served.proc.wait()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, files: tuple[Path, Path]) -> Path:
    """A home set up once by the admin and never served: each server gets its own copy."""
    return make_home(tmp_path_factory.mktemp("pristine") / "home", files)


def copy_home(pristine: Path, folder: Path) -> Path:
    return Path(shutil.copytree(pristine, folder / "home"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, pristine: Path) -> Path:
    return copy_home(pristine, tmp_path_factory.mktemp("side-by-side"))


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Process]:
    with running(home) as served:
        yield served


def client_of(served: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0)


def ask(client: openai.OpenAI, model: str, prompt: str = PROMPT) -> str:
    """Greedy answer of `model`; the request must succeed and name the model it was sent to."""
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=12,
        temperature=0,
    )
    assert reply.model == model
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    return choice.message.content or ""


def loaded(served: Process) -> list[str]:
    body = httpx.get(served.url + "/health").json()
    assert body["status"] == "ok"
    names: list[str] = body["models"]
    return names


def test_models_lists_every_name_with_the_alias_target(server: Process) -> None:
    cards = {m.id: m.to_dict() for m in client_of(server).models.list()}
    assert set(NAMES) <= set(cards)
    assert cards["assistant"]["alias_of"] == "smollm2"
    assert "alias_of" not in cards["smollm2-tuned"]


def test_all_names_answer_interleaved_and_concurrently(server: Process) -> None:
    client = client_of(server)
    for name in (*NAMES, *reversed(NAMES)):
        ask(client, name)
    prompts = [f"Say one word about the number {i}." for i in range(len(NAMES) * 2)]
    jobs = [(NAMES[i % len(NAMES)], p) for i, p in enumerate(prompts)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(ask, client, name, prompt) for name, prompt in jobs]
        for future in futures:
            future.result()
    assert {"smollm2", "tiny", "smollm2-tuned"} <= set(loaded(server))


def test_the_adapter_changes_answers_and_the_alias_does_not(server: Process) -> None:
    client = client_of(server)
    base = ask(client, "smollm2")
    assert base.strip()
    assert ask(client, "smollm2-tuned") != base
    assert ask(client, "assistant") == base


def test_retargeting_the_alias_takes_effect_on_the_next_request(
    server: Process, home: Path
) -> None:
    client = client_of(server)
    tiny = ask(client, "tiny")
    assert tiny != ask(client, "smollm2")
    models_cli(home, "alias", "assistant", "tiny")
    try:
        assert ask(client, "assistant") == tiny
        assert client.models.retrieve("assistant").to_dict()["alias_of"] == "tiny"
    finally:
        models_cli(home, "alias", "assistant", "smollm2")
    assert ask(client, "assistant") == ask(client, "smollm2")


def test_a_model_removed_while_serving_is_not_found(
    server: Process, home: Path, files: tuple[Path, Path]
) -> None:
    models_cli(home, "import", str(files[0]), "--name", "scratch")
    client = client_of(server)
    ask(client, "scratch")
    models_cli(home, "rm", "scratch")
    with pytest.raises(openai.NotFoundError) as gone:
        ask(client, "scratch")
    assert gone.value.status_code == 404
    assert gone.value.code == "model_not_found"
    assert "scratch" not in {m.id for m in client.models.list()}
    ask(client, "tiny")  # the same file under another name is untouched


def test_a_tight_memory_budget_keeps_the_most_recently_used(pristine: Path, tmp_path: Path) -> None:
    # fits smollm2 (or its adapter set) plus tiny, never smollm2 plus smollm2-tuned
    budget_mb = 160
    home = copy_home(pristine, tmp_path)
    with running(home, INHOUSE_ENGINE__MEMORY_BUDGET_MB=str(budget_mb)) as served:
        client = client_of(served)
        tuned = ask(client, "smollm2-tuned")
        assert loaded(served) == ["smollm2-tuned"]  # the default went to make room
        ask(client, "tiny")
        ask(client, "smollm2")  # reloads the default; the adapter set is the LRU one
        assert sorted(loaded(served)) == ["smollm2", "tiny"]
        sizes = _sizes(served)
        assert sum(sizes.values()) <= budget_mb << 20 < 2 * sizes["smollm2"], sizes
        ask(client, "tiny")
        assert ask(client, "smollm2-tuned") == tuned  # reloaded, same answer
        assert loaded(served)[-1] == "smollm2-tuned"
        assert sum(_sizes(served).values()) <= budget_mb << 20


def _sizes(served: Process) -> dict[str, int]:
    """Memory of each loaded model, from Ollama's /api/ps."""
    ps = httpx.get(served.url + "/api/ps", headers={"Authorization": f"Bearer {served.key}"})
    assert ps.status_code == 200, ps.text
    return {m["model"]: m["size"] for m in ps.json()["models"]}


def test_an_idle_model_is_unloaded_after_keep_alive(pristine: Path, tmp_path: Path) -> None:
    home = copy_home(pristine, tmp_path)
    with running(home, INHOUSE_ENGINE__KEEP_ALIVE_S="1") as served:
        client = client_of(served)
        ask(client, "tiny")
        deadline = time.monotonic() + 10
        while "tiny" in loaded(served) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert loaded(served) == ["smollm2"]  # unloaded; the default stays
        ask(client, "tiny")  # and loads again on demand
