"""A stored model that llama.cpp cannot load gets a typed error, and the server keeps serving.

Import refuses such files (tests/unit/test_model_store.py); this covers one that reached the
store another way (an older inhouse, a file replaced on disk): issue 13 item 11.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from inhouse.api.app import create_app, llama_builder
from inhouse.engine.client import AsyncEngine
from inhouse.engine.pool import ModelSpec
from inhouse.errors import ModelNotFound
from tests.conftest import admin_key, fake_engine, make_settings, serve
from tests.fakes import FakeRunner
from tests.gguf_files import write_model


class FakeAndBroken:
    """`fake` (the default, a FakeRunner) and `broken` (a GGUF llama.cpp refuses)."""

    def __init__(self, broken: Path) -> None:
        self.specs = {
            "fake": ModelSpec(name="fake", path=Path("/dev/null"), pinned=True),
            "broken": ModelSpec(name="broken", path=broken),
        }

    def resolve(self, name: str) -> ModelSpec:
        if name not in self.specs:
            raise ModelNotFound(f"no model {name!r}", param="model")
        return self.specs[name]

    def names(self) -> list[str]:
        return list(self.specs)

    def default(self) -> ModelSpec:
        return self.specs["fake"]


def test_a_model_that_cannot_load_gets_a_typed_error_and_others_keep_answering(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "home")
    real = llama_builder(settings)

    def build(spec: ModelSpec) -> AsyncEngine:
        return fake_engine(FakeRunner()) if spec.name == "fake" else real(spec)

    broken = write_model(tmp_path / "no-heads.gguf", head_count=0)
    app = create_app(settings, resolver=FakeAndBroken(broken), build=build)
    with serve(app, admin_key(app)) as served:
        headers = {"Authorization": f"Bearer {served.key}"}

        def chat(model: str) -> httpx.Response:
            body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
            return httpx.post(served.v1 + "/chat/completions", headers=headers, json=body)

        failed = chat("broken")
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "model_load_failed"
        assert "llama.cpp could not load" in failed.json()["error"]["message"]
        assert chat("fake").status_code == 200
        assert httpx.get(served.base_url + "/health").status_code == 200
