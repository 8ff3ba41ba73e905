"""Chat-template benchmark: what the render limits and the control-token split cost.

A typical conversation (system prompt + 9 turns) is rendered with the default model's own
chat template (ChatML when the model package is missing) three ways:

- `sandbox only`: Jinja's immutable sandbox, no limits (how inhouse rendered before);
- `with limits`: ChatTemplate.render, every operation counted (template_limits);
- `prompt map`: render_prompt, which renders twice to map the caller's text.

With the default model it also times tokenizing: the whole prompt at once (before) against
tokenize_prompt (after: the same tokens plus a count of control tokens). Prints a table of
microseconds per call (median of rounds) and writes JSON. A tool, never a test.

    .venv/bin/python benchmarks/template_bench.py
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from inhouse.engine.prompt import render_prompt, tokenize_prompt
from inhouse.engine.templates import CHATML, ChatTemplate

RESULTS = Path(__file__).parent / "results" / "template_bench.json"
TURNS = (
    "Can you help me plan a three-day trip to Lisbon in spring?",
    "Sure! Day one: Alfama and the castle; day two: Belem; day three: Sintra.",
    "What should I eat there?",
    "Try pasteis de nata, bacalhau a bras, grilled sardines and bifana sandwiches.",
    "Is public transport good?",
    "Yes: trams, the metro and trains to Sintra and Cascais; get a Viva Viagem card.",
    "How much should I budget per day?",
    "Around 80 to 120 euros per day covers food, transport and museum tickets.",
    "Thanks! Any tips for avoiding crowds?",
)


def conversation() -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": "You are a helpful travel assistant."}]
    for i, text in enumerate(TURNS):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return messages


def model_template() -> tuple[str, str, Any]:
    """(template source, where it came from, a LlamaRunner or None)."""
    try:
        from inhouse.engine.runner import LlamaRunner
        from inhouse.models.default import default_model_path

        path = default_model_path()
    except Exception:  # no model package: ChatML, and no tokenizer timings
        return CHATML, "ChatML (built in)", None
    runner = LlamaRunner(path, "smollm2", kv_cells=512, n_batch=64, n_seq_max=1, n_threads=1)
    return runner.info.chat_template or CHATML, "SmolLM2-135M-Instruct's", runner


def micros(fn: Callable[[], object], rounds: int, number: int) -> float:
    runs = timeit.repeat(fn, repeat=rounds, number=number)
    return statistics.median(runs) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=500)
    args = parser.parse_args()
    source, origin, runner = model_template()
    messages = conversation()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    plain = env.from_string(source)
    limited = ChatTemplate(source)
    assert plain.render(messages=messages, add_generation_prompt=True) == limited.render(messages)
    rows: dict[str, float] = {
        "render, sandbox only (before)": micros(
            lambda: plain.render(messages=messages, add_generation_prompt=True),
            args.rounds,
            args.number,
        ),
        "render, with limits": micros(lambda: limited.render(messages), args.rounds, args.number),
        "render_prompt (2 renders + map)": micros(
            lambda: render_prompt(limited, messages), args.rounds, args.number
        ),
    }
    if runner is not None:
        prompt = render_prompt(limited, messages)
        rows["tokenize whole prompt (before)"] = micros(
            lambda: runner.tokenize(prompt.text, add_special=True, parse_special=True),
            args.rounds,
            args.number,
        )
        rows["tokenize_prompt (after)"] = micros(
            lambda: tokenize_prompt(runner, prompt), args.rounds, args.number
        )
        runner.close()
    print(f"template: {origin}; {len(messages)} messages; median of {args.rounds} rounds")
    print(f"{'step':<36} {'us per call':>12}")
    for name, value in rows.items():
        print(f"{name:<36} {value:>12.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {"template": origin, "messages": len(messages), "us_per_call": rows}
    report["machine"] = platform.platform()
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
