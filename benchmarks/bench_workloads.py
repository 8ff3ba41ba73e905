"""The chat messages of serve_bench.py's workloads: short chat and ~900-token prompts.

- short: one short question per request (the chat benchmark's prompts).
- shared-warm: the same ~900-token system prompt for every request (warmed by the warm-up
  request), then a short question.
- shared-cold: like shared-warm, but the system prompt is new in every round and level, so
  the requests that arrive together find nothing cached.
- distinct-long: a distinct ~900-token prompt per request (grounding passages, as RAG sends).
- mixed: every other request short, the others distinct-long.

Prompts depend on (workload, round, level, request index) only, so every server gets the
same ones and no round finds the previous round's prompts in a cache.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORKLOADS = ("short", "shared-warm", "shared-cold", "distinct-long", "mixed")
LONG_WORDS = 640  # about 900 tokens of SmolLM2's tokenizer, with the template

_TEXT = (
    "the system reads each record and checks the field against the policy before it writes "
    "a new entry to the ledger while every user key carries a quota for tokens and requests "
    "per day so the gateway can refuse work that would exceed the budget of a team or project "
    "model weights load once and stay in memory until an idle timer unloads them and the "
    "scheduler batches prompts from many clients into one step that decodes a token for each "
    "running sequence then fills the rest with chunks of waiting prompts in arrival order "
    "audit trails are signed with a key so that any change to past entries shows up when an "
    "operator verifies the chain during a review of access to sensitive documents"
)
WORDS = tuple(_TEXT.split())

QUESTIONS = (
    "What is the capital of France?",
    "Explain photosynthesis in two sentences.",
    "Give me three tips for writing clean Python code.",
    "Why is the sky blue?",
    "Write a haiku about the ocean.",
    "What is the difference between a list and a tuple in Python?",
    "Summarize the plot of Romeo and Juliet.",
    "How do vaccines train the immune system?",
)

Message = dict[str, str]


def passages(seed: str, n_words: int) -> str:
    """Deterministic pseudo-documents: numbered passages of plain sentences."""
    rng = random.Random(seed)
    out: list[str] = []
    words = 0
    number = 1
    while words < n_words:
        sentences = []
        for _ in range(rng.randint(3, 6)):
            n = rng.randint(8, 16)
            sentence = " ".join(rng.choice(WORDS) for _ in range(n))
            sentences.append(sentence[0].upper() + sentence[1:] + ".")
            words += n
        out.append(f"[{number}] " + " ".join(sentences))
        number += 1
    return "\n".join(out)


@dataclass(frozen=True)
class Workload:
    name: str
    long_words: int = LONG_WORDS

    def messages(self, round_index: int, level: str, index: int) -> list[Message]:
        question = QUESTIONS[index % len(QUESTIONS)]
        if self.name == "short" or (self.name == "mixed" and index % 2 == 0):
            return [{"role": "user", "content": question}]
        if self.name in ("shared-warm", "shared-cold"):
            return [self._system(round_index, level), {"role": "user", "content": question}]
        grounding = passages(f"distinct/{round_index}/{level}/{index}", self.long_words)
        content = f"Answer from these passages.\n{grounding}\n\nQuestion: {question}"
        return [{"role": "user", "content": content}]

    def warm_up_messages(self, round_index: int, level: str) -> list[Message]:
        """What the warm-up request sends: it warms the shared prefix only for shared-warm."""
        if self.name == "shared-warm":
            return self.messages(round_index, level, 0)
        return [{"role": "user", "content": "Say hello."}]

    def requests(self, concurrency: int, default: int) -> int:
        """shared-cold sends one wave: every request arrives with the prefix still cold."""
        return concurrency if self.name == "shared-cold" else default

    def _system(self, round_index: int, level: str) -> Message:
        seed = "shared" if self.name == "shared-warm" else f"cold/{round_index}/{level}"
        text = "You are the assistant of a company. Ground every answer in these passages.\n"
        return {"role": "system", "content": text + passages(seed, self.long_words)}
