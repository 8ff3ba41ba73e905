"""Turns a sequence's sampled tokens into text that is safe to send.

Two things are held back until they are resolved: bytes that end in the middle of a UTF-8
character, and text that could be the start of a stop string.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field


def held_back_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    longest = max((len(s) for s in stops), default=0)
    for k in range(min(len(text), longest - 1), 0, -1):
        tail = text[-k:]
        if any(s.startswith(tail) for s in stops):
            return k
    return 0


@dataclass
class OutputText:
    """Per-sequence text state: UTF-8 reassembly, stop strings, what was already sent."""

    stops: tuple[str, ...]
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _pending: str = ""
    stopped: bool = False

    def feed(self, piece: bytes) -> str:
        """Add a token's bytes; return the text that can be sent now."""
        self._pending += self._decoder.decode(piece)
        return self._release()

    def flush(self) -> str:
        """The sequence ended without a stop string: send everything that is left."""
        self._pending += self._decoder.decode(b"", final=True)
        text, self._pending = self._pending, ""
        return text

    def _release(self) -> str:
        hits = [at for stop in self.stops if (at := self._pending.find(stop)) >= 0]
        if hits:
            self.stopped = True
            text, self._pending = self._pending[: min(hits)], ""
            return text
        keep = held_back_len(self._pending, self.stops)
        cut = len(self._pending) - keep
        text, self._pending = self._pending[:cut], self._pending[cut:]
        return text
