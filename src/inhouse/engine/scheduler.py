"""Continuous batching: which tokens of which sequences go into the next decode step.

Pure Python, no model: it only counts tokens, KV cells and sequence slots.

- Every step, each generating sequence gets one decode token, then prompts fill the rest of
  the batch (chunked prefill), oldest request first.
- KV cells come from one shared pool. A request is admitted when its whole prompt fits;
  if generation later runs the pool dry, the newest sequence is preempted (its cells freed,
  its tokens recomputed when it is readmitted), so older streams never stall.
- A finished sequence's cells stay behind as a prefix-cache entry; a new prompt that starts
  with an entry's tokens shares those cells (llama.cpp `seq_cp`) instead of recomputing them.
  The cache holds at most `cache_slots` entries and `cache_tokens` cells (when set); the least
  recently used idle entry goes first.

This is the unified-pool layout; engine/streams.py schedules one KV stream per sequence.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence as Sequence_
from dataclasses import dataclass, field
from typing import Any

from inhouse.engine.request import GenerationRequest


class SeqStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class CacheEntry:
    """KV cells of a finished sequence, kept in `slot` for prefix reuse.

    Entries form a tree: an entry that was forked from another shares its first
    `shared_len` cells with that parent, which stays pinned while the child lives.
    """

    slot: int
    tokens: tuple[int, ...]
    last_used: int
    refs: int = 0  # running sequences and child entries that share this entry's cells
    parent: CacheEntry | None = None
    shared_len: int = 0

    @property
    def own_cells(self) -> int:
        return len(self.tokens) - self.shared_len


@dataclass(eq=False)
class Sequence:
    """One request inside the engine: its tokens and how many of them sit in KV memory."""

    request: GenerationRequest
    arrival: int
    tokens: list[int]
    num_prompt: int
    status: SeqStatus = SeqStatus.WAITING
    slot: int | None = None
    num_computed: int = 0
    shared_len: int = 0
    parent: CacheEntry | None = None
    cached_tokens: int = 0
    sampler: Any = None
    state: Any = None  # per-sequence output state owned by the core (detokenizer, stops)

    @classmethod
    def create(cls, request: GenerationRequest, arrival: int) -> Sequence:
        tokens = list(request.prompt_tokens)
        return cls(request=request, arrival=arrival, tokens=tokens, num_prompt=len(tokens))

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def num_output(self) -> int:
        return len(self.tokens) - self.num_prompt

    @property
    def remaining(self) -> int:
        """Tokens still to feed before the next sample (1 while generating)."""
        return len(self.tokens) - self.num_computed

    @property
    def own_cells(self) -> int:
        return self.num_computed - self.shared_len


@dataclass(frozen=True)
class Chunk:
    """Consecutive tokens of one sequence for this step; `sample` on its last row."""

    seq: Sequence
    slot: int
    start_pos: int
    tokens: tuple[int, ...]
    sample: bool


@dataclass
class StepPlan:
    """What the runner does this step, in order: clear slots, copy prefixes, trim, decode."""

    clear_slots: list[int] = field(default_factory=list)
    copies: list[tuple[int, int, int]] = field(default_factory=list)  # (src, dst, n_tokens)
    trims: list[tuple[int, int]] = field(default_factory=list)  # (slot, tokens kept)
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(len(c.tokens) for c in self.chunks)


def common_prefix_len(a: Sequence_[int], b: Sequence_[int]) -> int:
    """Length of the longest common prefix, by slice comparisons (C speed, not per token)."""
    n = min(len(a), len(b))
    if tuple(a[:n]) == tuple(b[:n]):
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tuple(a[lo:mid]) == tuple(b[lo:mid]):
            lo = mid
        else:
            hi = mid
    return lo


class Scheduler:
    def __init__(
        self,
        *,
        kv_cells: int,
        max_running: int,
        n_batch: int,
        cache_slots: int,
        cache_tokens: int = 0,
    ) -> None:
        self.kv_cells = kv_cells
        self.cache_tokens = cache_tokens  # 0: the cache is bounded by slots and the pool only
        self.max_running = max_running
        self.n_batch = n_batch
        self.cache_slots = cache_slots
        self.n_slots = max_running + cache_slots
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.cache: list[CacheEntry] = []
        self._free_slots: list[int] = list(range(self.n_slots - 1, -1, -1))
        self._clear: list[int] = []
        self._clock = 0
        self._planned = 0
        self.num_preemptions = 0

    # ----- bookkeeping -------------------------------------------------------------------

    @property
    def used_cells(self) -> int:
        cached = sum(e.own_cells for e in self.cache)
        return cached + sum(s.own_cells for s in self.running) + self._planned

    @property
    def free_cells(self) -> int:
        return self.kv_cells - self.used_cells

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self._clear)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def find(self, request_id: str) -> Sequence | None:
        for seq in self.running:
            if seq.request_id == request_id:
                return seq
        for seq in self.waiting:
            if seq.request_id == request_id:
                return seq
        return None

    # ----- the step ----------------------------------------------------------------------

    def schedule(self) -> StepPlan:
        """Pick this step's tokens: decodes first, then prompt chunks, then admissions."""
        self._clock += 1
        self._planned = 0
        plan = StepPlan()
        budget = self.n_batch
        order = sorted(self.running, key=lambda s: (s.remaining > 1, s.arrival))
        for seq in order:
            if seq.status is not SeqStatus.RUNNING or budget == 0:
                continue
            n = min(seq.remaining, budget)
            if not self._make_room(n, plan, requester=seq):
                continue
            plan.chunks.append(self._chunk(seq, n))
            budget -= n
        self._admit_waiting(plan, budget)
        plan.clear_slots = self._clear + plan.clear_slots
        self._clear = []
        return plan

    def _admit_waiting(self, plan: StepPlan, budget: int) -> None:
        """Admit waiting requests in arrival order while the batch, the slots and KV allow."""
        while budget > 0 and self.waiting and len(self.running) < self.max_running:
            seq = self.waiting[0]
            if not self._admit(seq, plan):
                break
            self.waiting.popleft()
            budget -= self._start(seq, plan, budget)

    def _start(self, seq: Sequence, plan: StepPlan, budget: int) -> int:
        """Plan the first prompt chunk of a just admitted sequence; return its size."""
        n = min(seq.remaining, budget)
        plan.chunks.append(self._chunk(seq, n))
        return n

    def commit(self, plan: StepPlan) -> None:
        """The runner decoded `plan`: its tokens are now in KV memory."""
        self._planned = 0
        for chunk in plan.chunks:
            chunk.seq.num_computed += len(chunk.tokens)

    def rollback(self, plan: StepPlan) -> None:
        """The runner found no KV room for `plan`: preempt the newest sequence in it."""
        self._planned = 0
        victims = [c.seq for c in plan.chunks if c.seq.status is SeqStatus.RUNNING]
        applied = len(plan.clear_slots)
        if victims:
            self._preempt(max(victims, key=lambda s: s.arrival), plan)
        self._clear.extend(plan.clear_slots[applied:])

    def finish(self, seq: Sequence) -> None:
        """Take `seq` out of the engine; keep its KV cells as a prefix-cache entry if useful."""
        if seq.status is SeqStatus.WAITING:
            self.waiting.remove(seq)
        elif seq.status is SeqStatus.RUNNING:
            self.running.remove(seq)
            self._release(seq)
        seq.status = SeqStatus.FINISHED

    # ----- internals ---------------------------------------------------------------------

    def _chunk(self, seq: Sequence, n: int) -> Chunk:
        assert seq.slot is not None
        start = seq.num_computed
        self._planned += n
        return Chunk(
            seq=seq,
            slot=seq.slot,
            start_pos=start,
            tokens=tuple(seq.tokens[start : start + n]),
            sample=start + n == len(seq.tokens),
        )

    def _admit(self, seq: Sequence, plan: StepPlan) -> bool:
        entry, shared = self._best_prefix(seq)
        if entry is not None:
            entry.refs += 1
        slot = self._take_slot(plan)
        need = len(seq.tokens) - shared + 1
        if slot is None or not self._evict_until(need, plan):
            if slot is not None:
                self._free_slots.append(slot)
            if entry is not None:
                entry.refs -= 1
            return False
        seq.slot = slot
        seq.status = SeqStatus.RUNNING
        seq.num_computed = shared
        seq.shared_len = shared
        if seq.num_output == 0:
            seq.cached_tokens = shared
        if entry is not None:
            seq.parent = entry
            entry.last_used = self._clock
            plan.copies.append((entry.slot, slot, shared))
        self.running.append(seq)
        return True

    def _best_prefix(self, seq: Sequence) -> tuple[CacheEntry | None, int]:
        best: CacheEntry | None = None
        best_len = 0
        for entry in self.cache:
            n = common_prefix_len(entry.tokens, seq.tokens)
            if n > best_len:
                best, best_len = entry, n
        # at least the last token is decoded: its logits give the next token
        shared = min(best_len, len(seq.tokens) - 1)
        return (best, shared) if shared > 0 else (None, 0)

    def _take_slot(self, plan: StepPlan) -> int | None:
        if not self._free_slots and not self._evict_one(plan):
            return None
        return self._free_slots.pop()

    def _evict_one(self, plan: StepPlan) -> bool:
        idle = [e for e in self.cache if e.refs == 0]
        if not idle:
            return False
        victim = min(idle, key=lambda e: e.last_used)
        self.cache.remove(victim)
        if victim.parent is not None:
            victim.parent.refs -= 1
        plan.clear_slots.append(victim.slot)
        self._free_slots.append(victim.slot)
        return True

    def _evict_until(self, need: int, plan: StepPlan) -> bool:
        while self.free_cells < need:
            if not self._evict_one(plan):
                return False
        return True

    def _make_room(self, need: int, plan: StepPlan, requester: Sequence) -> bool:
        """Free `need` cells for `requester`: evict idle cache, then preempt newer sequences."""
        while self.free_cells < need:
            if self._evict_one(plan):
                continue
            victim = max(self.running, key=lambda s: s.arrival)
            self._preempt(victim, plan)
            if victim is requester:
                return False
        return True

    def _preempt(self, seq: Sequence, plan: StepPlan) -> None:
        self.num_preemptions += 1
        for chunk in [c for c in plan.chunks if c.seq is seq]:
            plan.chunks.remove(chunk)
            self._planned -= len(chunk.tokens)
        self.running.remove(seq)
        self._drop_kv(seq, plan.clear_slots)
        seq.status = SeqStatus.WAITING
        index = next((i for i, w in enumerate(self.waiting) if w.arrival > seq.arrival), None)
        self.waiting.insert(len(self.waiting) if index is None else index, seq)

    def _drop_kv(self, seq: Sequence, clear: list[int]) -> None:
        assert seq.slot is not None
        clear.append(seq.slot)
        self._free_slots.append(seq.slot)
        if seq.parent is not None:
            seq.parent.refs -= 1
        seq.slot, seq.parent, seq.num_computed, seq.shared_len = None, None, 0, 0

    def _release(self, seq: Sequence) -> None:
        assert seq.slot is not None
        parent = seq.parent
        tokens = tuple(seq.tokens[: seq.num_computed])
        if self.cache_slots == 0 or seq.num_computed == 0:
            self._drop_kv(seq, self._clear)
            return
        if parent is not None and parent.refs == 1 and seq.shared_len == len(parent.tokens):
            # seq extends its parent and nobody else shares the parent: seq replaces it,
            # taking over the parent's own place in the tree
            self.cache.remove(parent)
            self._clear.append(parent.slot)
            self._free_slots.append(parent.slot)
            seq.parent, seq.shared_len = parent.parent, parent.shared_len
        self._keep_as_entry(seq, tokens)

    def _keep_as_entry(self, seq: Sequence, tokens: tuple[int, ...]) -> None:
        """seq's cells become an entry; its reference on its parent passes to the entry."""
        assert seq.slot is not None
        if len(self.cache) >= self.cache_slots and not self._evict_one_into(self._clear):
            self._drop_kv(seq, self._clear)
            return
        entry = CacheEntry(
            slot=seq.slot,
            tokens=tokens,
            last_used=self._clock,
            parent=seq.parent,
            shared_len=seq.shared_len,
        )
        self.cache.append(entry)
        seq.slot, seq.num_computed, seq.parent, seq.shared_len = None, 0, None, 0
        while self.cache_tokens and sum(e.own_cells for e in self.cache) > self.cache_tokens:
            if not self._evict_one_into(self._clear):
                break

    def _evict_one_into(self, clear: list[int]) -> bool:
        plan = StepPlan()
        if not self._evict_one(plan):
            return False
        clear.extend(plan.clear_slots)
        return True
