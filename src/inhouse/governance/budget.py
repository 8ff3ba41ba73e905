"""What a request may spend, reserved before it runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """A request's worst case: its prompt and the most tokens it may generate."""

    prompt_tokens: int
    max_new_tokens: int = 0
    streams: int = 1  # generated sequences whose end is expected (0: none, e.g. embeddings)
    prompt_text: str = ""  # kept only when content logging is on

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.max_new_tokens


def token_bound(texts: list[str]) -> int:
    """At least as many tokens as the texts can make: none is shorter than one byte."""
    return sum(len(text.encode("utf-8", "surrogatepass")) + 2 for text in texts)
