"""Client fixtures: one FakeRunner app (model "fake") served for a module, its admin key, and
a member of it; the embedder is real wherever knowledge is used."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from inhouse.auth.directory import Directory
from inhouse.embeddings.minilm import EmbedderUnavailable, installed_card
from tests.conftest import Served, need, serve_fake, wait_for
from tests.fakes import FakeRunner

MEMBER = "mia"


@dataclass
class Site:
    served: Served
    member_key: str  # a key of the member "mia", in group "staff"

    @property
    def url(self) -> str:
        return self.served.base_url

    @property
    def admin_key(self) -> str:
        return self.served.key


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("client") / "home"
    with serve_fake(home, FakeRunner()) as served:
        state = served.app.state.inhouse
        with state.db.write() as session:
            directory = Directory(session, state.audit, "cli:test")
            directory.add_group("staff")
            directory.add_user(MEMBER, groups=["staff"])
            _, member_key = directory.create_key(MEMBER)
        yield Site(served, member_key)


def chat(served: Served, key: str, times: int = 2) -> None:
    """Send `times` chat requests to the fake model and wait until the ledger holds them."""
    client = openai.OpenAI(base_url=served.v1, api_key=key, max_retries=0)
    before = _requests(served)
    for _ in range(times):
        client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    wait_for(lambda: _requests(served) >= before + times)


def _requests(served: Served) -> int:
    response = httpx.get(
        served.base_url + "/admin/usage",
        params={"by": "model"},
        headers={"Authorization": f"Bearer {served.key}"},
    )
    return sum(row["requests"] for row in response.json()["rows"])


def need_embedder() -> None:
    """Skip (fail in CI) when the MiniLM embedder's packages are not installed."""
    try:
        installed_card()
    except EmbedderUnavailable as exc:
        need(False, f"the embedding model is not installed: {exc.message}")
