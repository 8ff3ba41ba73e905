"""The evaluation gate: base vs tuned numbers from the real engine on a few tiny examples,
answers that are what /v1/chat/completions returns, and the gate's decision."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from inhouse.config import EngineSettings
from inhouse.engine.pool import ModelSpec
from inhouse.engine.scoring import score_examples
from inhouse.errors import InvalidRequest
from inhouse.models.default import DefaultModelMissing, default_model_path
from inhouse.tuning.evaluate import (
    EvalOptions,
    EvalResult,
    PoolAnswerer,
    SideResult,
    evaluate,
    local_answerer,
    passes_gate,
)
from inhouse.tuning.lora_check import random_lora
from inhouse.tuning.lora_export import LoraConfig, export_lora
from inhouse.tuning.scorers import InvalidScorer
from tests.conftest import Served, need

CONFIG = LoraConfig(rank=4, alpha=8.0, target_modules=("q_proj", "v_proj"))
EXAMPLES: list[dict[str, Any]] = [
    {
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris"},
        ]
    },
    {
        "messages": [
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": "What colour is the sky on a clear day?"},
            {"role": "assistant", "content": "Blue"},
        ]
    },
    {"text": "Acme Rockets was founded in 1962 in Tucson."},
]
SMALL = EngineSettings(kv_cells=1024, max_running=1, n_batch=64, n_threads=2, max_queue=4)


@pytest.fixture(scope="module")
def base() -> ModelSpec:
    try:
        return ModelSpec("smollm2", default_model_path())
    except DefaultModelMissing as exc:
        need(False, str(exc))
        raise


@pytest.fixture(scope="module")
def tuned(base: ModelSpec, tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    lora = random_lora(base.path, (0, 10, 20), CONFIG, seed=7, std=0.08)
    adapter = export_lora(lora, CONFIG, base.path, tmp_path_factory.mktemp("lora") / "t.gguf")
    return ModelSpec("smollm2-tuned", base.path, ((adapter, 1.0),))


@pytest.fixture(scope="module")
def answerer() -> Iterator[PoolAnswerer]:
    with local_answerer(SMALL) as pool_answerer:
        yield pool_answerer


def side(loss: float | None, score: float | None) -> SideResult:
    perplexity = None if loss is None else math.exp(loss)
    return SideResult("m", loss, perplexity, score, 3, 30, 2, (), 0.1)


def test_evaluate_gives_both_sides_numbers_from_the_engine(
    base: ModelSpec, tuned: ModelSpec, answerer: PoolAnswerer
) -> None:
    seen: list[tuple[str, int, int]] = []
    options = EvalOptions(scorer="contains", max_length=128, max_tokens=16, n_threads=2)
    result = evaluate(base, tuned, EXAMPLES, answerer, options, lambda *p: seen.append(p))
    for got, spec in ((result.base, base), (result.tuned, tuned)):
        assert got.model == spec.name and got.n == 3 and got.answered == 2
        scored = score_examples(spec, EXAMPLES, max_length=128, n_threads=2)
        assert got.tokens == sum(s.n_tokens for s in scored) > 10
        assert got.loss == pytest.approx(sum(s.nll_sum for s in scored) / got.tokens)
        assert got.loss is not None and got.perplexity == pytest.approx(math.exp(got.loss))
        assert got.score in (0.0, 0.5, 1.0)
        assert [s.prompt for s in got.shown] == [
            "What is the capital of France?",
            "What colour is the sky on a clear day?",
        ]
        assert [s.expected for s in got.shown] == ["Paris", "Blue"]
    assert result.base.loss != result.tuned.loss
    assert all(s.output for s in result.base.shown)  # the base model answers something
    assert ("answers smollm2-tuned", 1, 2) in seen and ("loss smollm2", 0, 3) in seen
    assert result.as_dict()["tuned"]["model"] == "smollm2-tuned"


def test_answers_are_what_chat_completions_returns(
    real_server: Served, answerer: PoolAnswerer, base: ModelSpec
) -> None:
    """Greedy answers through the pool (lease + generate) are the text that the served
    /v1/chat/completions gives at temperature 0 for the same messages."""
    client = OpenAI(base_url=real_server.v1, api_key=real_server.key)
    for example in EXAMPLES[:2]:
        messages = example["messages"][:-1]
        served = client.chat.completions.create(
            model="smollm2", messages=messages, temperature=0, max_tokens=16
        )
        assert answerer.answer(base, messages, 16) == served.choices[0].message.content


def test_unusable_input_is_refused_before_any_work(base: ModelSpec, answerer: PoolAnswerer) -> None:
    missing = ModelSpec("gone", Path("/nonexistent.gguf"))  # never loaded: refused first
    with pytest.raises(InvalidScorer):
        evaluate(missing, missing, EXAMPLES, answerer, EvalOptions(scorer="regex:("))
    with pytest.raises(InvalidRequest, match="no evaluation examples"):
        evaluate(missing, missing, [], answerer)
    with pytest.raises(InvalidRequest, match="max_tokens"):
        EvalOptions(max_tokens=0)
    with pytest.raises(InvalidRequest, match="max_length"):
        EvalOptions(max_length=1)


def test_the_gate_passes_only_a_better_version_that_behaves_as_trained() -> None:
    better = EvalResult(side(2.0, 0.5), side(1.5, 0.5), "exact")
    assert passes_gate(better) == (True, [])
    assert passes_gate(better, torch_loss=1.45) == (True, [])
    ok, reasons = passes_gate(better, torch_loss=1.0)
    assert not ok and reasons == [
        "the exported adapter does not behave as trained: its loss in the engine is 1.5000, "
        "in torch 1.0000 (more than 10% apart)"
    ]
    assert not passes_gate(better, torch_loss=math.nan)[0]
    assert passes_gate(better, torch_loss=1.0, tolerance=0.6)[0]

    ok, reasons = passes_gate(EvalResult(side(2.0, 0.5), side(2.0, 0.9), "exact"))
    assert not ok and reasons == ["the held-out loss did not improve: tuned 2.0000 >= base 2.0000"]
    ok, reasons = passes_gate(EvalResult(side(2.0, 0.5), side(1.0, 0.4), "contains"))
    assert not ok and reasons == ["the contains score fell: tuned 0.400 < base 0.500"]
    ok, reasons = passes_gate(EvalResult(side(2.0, 0.6), side(2.5, 0.1), "exact"), 1.0)
    assert not ok and len(reasons) == 3
    # text data: no answers to score, the loss decides
    assert passes_gate(EvalResult(side(2.0, None), side(1.9, None), "exact")) == (True, [])
    ok, reasons = passes_gate(EvalResult(side(None, None), side(None, None), "exact"))
    assert not ok and reasons == ["no held-out token to compare the losses on"]
