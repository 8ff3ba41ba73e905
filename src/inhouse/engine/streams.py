"""StreamScheduler: continuous batching over one llama.cpp KV stream per slot.

With `kv_unified = false` llama.cpp gives every sequence id its own KV stream of
`stream_cells` cells, and a decoded token attends only over its own stream, not over the used
range of every sequence as in one unified pool. That keeps long prompts at many users fast.

- A running sequence owns one stream; requests are capped to `stream_cells` tokens (prompt +
  completion), so generation never runs the memory dry and nothing is preempted. Admission
  only needs a free stream; the rest wait in arrival order.
- A finished sequence's stream stays behind as a prefix-cache entry (like llama-server's
  idle slots). A new prompt continues the entry that shares the most tokens with it (the
  tail trimmed), or, while a free stream exists, copies that prefix into it (llama.cpp copies
  whole streams; the tail is trimmed after the copy) and the entry stays for the next one.
- A prefix can also come from a running sequence: a prompt that shares a longer prefix with
  a sequence still in prefill waits for that prefill, then copies it, so requests that arrive
  together with the same long system prompt compute it once.
"""

from __future__ import annotations

from inhouse.engine.scheduler import (
    CacheEntry,
    Scheduler,
    SeqStatus,
    Sequence,
    StepPlan,
    common_prefix_len,
)

# a prompt waits for a running prefill only when that saves at least this many tokens
MIN_SHARED_WAIT = 32

Source = CacheEntry | Sequence


class StreamScheduler(Scheduler):
    def __init__(
        self,
        *,
        stream_cells: int,
        n_streams: int,
        max_running: int,
        n_batch: int,
    ) -> None:
        if n_streams < max_running:
            raise ValueError("every running sequence needs its own KV stream")
        # kv_cells is what one request can hold: the AsyncEngine caps max_context to it
        super().__init__(
            kv_cells=stream_cells,
            max_running=max_running,
            n_batch=n_batch,
            cache_slots=n_streams - max_running,
        )

    # ----- admission ---------------------------------------------------------------------

    def _admit_waiting(self, plan: StepPlan, budget: int) -> None:
        """Admit in arrival order; a prompt whose prefix is still being computed waits for it."""
        for seq in list(self.waiting):
            if budget == 0 or len(self.running) >= self.max_running:
                return
            source, shared = self._best_source(seq)
            if self._awaits_prefill(seq, shared):
                continue
            if not self._admit_from(seq, source, shared, plan):
                return
            self.waiting.remove(seq)
            budget -= self._start(seq, plan, budget)

    def _best_source(self, seq: Sequence) -> tuple[Source | None, int]:
        """The stream holding the longest computed prefix of `seq` (an idle entry or a runner)."""
        best: Source | None = None
        best_len = 0
        for entry in self.cache:
            n = common_prefix_len(entry.tokens, seq.tokens)
            if n > best_len or (n == best_len and isinstance(best, Sequence)):
                best, best_len = entry, n
        for other in self.running:
            n = min(common_prefix_len(other.tokens, seq.tokens), other.num_computed)
            if n > best_len:
                best, best_len = other, n
        # at least the last token is decoded: its logits give the next token
        shared = min(best_len, len(seq.tokens) - 1)
        return (best, shared) if shared > 0 else (None, 0)

    def _awaits_prefill(self, seq: Sequence, shared: int) -> bool:
        """True while a running prefill will soon hold a much longer prefix of `seq`."""
        for other in self.running:
            if other.num_computed >= other.num_prompt:
                continue
            n = min(common_prefix_len(other.tokens, seq.tokens), other.num_prompt)
            if min(n, len(seq.tokens) - 1) >= shared + MIN_SHARED_WAIT:
                return True
        return False

    def _admit_from(
        self, seq: Sequence, source: Source | None, shared: int, plan: StepPlan
    ) -> bool:
        if isinstance(source, CacheEntry):
            source.last_used = self._clock  # pinned: not evicted while this step copies it
        if isinstance(source, CacheEntry) and not self._free_slots:
            # no free stream: continue the entry's own stream, dropping its tail
            self.cache.remove(source)
            slot = source.slot
            plan.trims.append((slot, shared))
        else:
            taken = self._take_slot(plan)
            if taken is None:
                return False
            slot = taken
            if source is not None:
                assert source.slot is not None
                plan.copies.append((source.slot, slot, shared))
        seq.slot = slot
        seq.status = SeqStatus.RUNNING
        seq.num_computed = shared
        if seq.num_output == 0:
            seq.cached_tokens = shared
        self.running.append(seq)
        return True

    def _take_slot(self, plan: StepPlan) -> int | None:
        """The lowest free stream: llama.cpp decodes runs of consecutive seq ids together."""
        if not self._free_slots and not self._evict_one(plan):
            return None
        self._free_slots.sort(reverse=True)
        return self._free_slots.pop()

    def _evict_one(self, plan: StepPlan) -> bool:
        idle = [e for e in self.cache if e.last_used != self._clock]
        if not idle:
            return False
        victim = min(idle, key=lambda e: e.last_used)
        self.cache.remove(victim)
        plan.clear_slots.append(victim.slot)
        self._free_slots.append(victim.slot)
        return True

    # ----- running and finishing ---------------------------------------------------------

    def _make_room(self, need: int, plan: StepPlan, requester: Sequence) -> bool:
        """A stream always has room: no request is longer than a stream."""
        return True

    def _release(self, seq: Sequence) -> None:
        """The finished sequence's stream becomes an idle prefix-cache entry."""
        assert seq.slot is not None
        if seq.num_computed == 0:
            self._drop_kv(seq, self._clear)
            return
        tokens = tuple(seq.tokens[: seq.num_computed])
        self.cache.append(CacheEntry(slot=seq.slot, tokens=tokens, last_used=self._clock))
        seq.slot, seq.num_computed = None, 0
