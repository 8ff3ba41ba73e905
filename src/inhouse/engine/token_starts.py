"""The vocabulary grouped by how tokens start, so a grammar filters a fraction of it.

llama.cpp's grammar filter decodes and matches every token of the vocabulary against every
parse stack. But a grammar that refuses the token " a" refuses every token starting with
" a": checking the ~300 tokens that are exactly such a start (one ASCII byte, or a space and
one) tells which groups can be left out, and only the rest goes through the full check. The
outcome is the same mask, at a fraction of the cost wherever the grammar is selective.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import llama_cpp as ll
import numpy as np
import numpy.typing as npt

TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
Ids = npt.NDArray[np.int32]


def token_array(data: npt.NDArray[Any]) -> Any:
    """A llama_token_data_array over a numpy array of TOKEN_DATA."""
    return ll.llama_token_data_array(
        data=data.ctypes.data_as(ll.llama_token_data_p), size=len(data), selected=-1, sorted=False
    )


def _is_start(piece: bytes) -> bool:
    """Whether a token that is exactly `piece` can stand for a group: whole ASCII characters."""
    if len(piece) == 1:
        return piece[0] < 0x80
    return len(piece) == 2 and piece[0] == 0x20 and piece[1] < 0x80


class TokenStarts:
    """Token ids grouped by their start, with the token that is exactly each start."""

    def __init__(self, pieces: list[bytes], is_eog: Callable[[int], bool]) -> None:
        """`pieces`: each token's bytes, by id; `is_eog`: whether a token ends generation."""
        vocab_size = len(pieces)
        self.pieces = pieces
        exact = {p: t for t, p in enumerate(self.pieces) if _is_start(p)}
        groups: dict[bytes, list[int]] = {}
        for token, piece in enumerate(self.pieces):
            key = piece[:2] if piece[:2] in exact else piece[:1]
            # the others (no start token, or ending generation) are checked every time
            if key in exact and not is_eog(token):
                groups.setdefault(key, []).append(token)
        self.probe = np.array([exact[k] for k in groups], dtype=np.int32)
        # each token's group, the loose ones in an extra last group that is always open
        self.group_of = np.full(vocab_size, len(groups), dtype=np.int32)
        for index, ids in enumerate(groups.values()):
            self.group_of[ids] = index
        self.everything = np.arange(vocab_size, dtype=np.int32)

    def candidates(self, grammar: Any) -> Ids:
        """The tokens `grammar` may accept: all but the groups whose start it refuses."""
        probe = np.zeros(len(self.probe), dtype=TOKEN_DATA)
        probe["id"] = self.probe
        ll.llama_sampler_apply(grammar, ctypes.byref(token_array(probe)))
        open_ = np.append(np.isfinite(probe["logit"]), True)
        if open_.all():  # e.g. inside a free string: nothing to leave out
            return self.everything
        # in id order: llama.cpp's filter runs markedly slower on shuffled ids
        return np.flatnonzero(open_[self.group_of]).astype(np.int32)


def incomplete_tail(data: bytes) -> bytes:
    """The bytes ending `data` that begin a UTF-8 character not complete yet (b"" if none)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return b""
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data[-back:] if back < need else b""
    return data[-4:]  # continuation bytes only: treat as unfinished (the full check follows)
