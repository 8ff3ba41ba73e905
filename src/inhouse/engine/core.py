"""EngineCore: the step loop (schedule -> run -> postprocess) on one dedicated thread."""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from inhouse.engine.backend import ModelRunner, Sampled
from inhouse.engine.output import OutputText
from inhouse.engine.request import FinishReason, GenerationRequest, TokenEvent
from inhouse.engine.scheduler import Scheduler, Sequence

log = logging.getLogger(__name__)

EventSink = Callable[[list[TokenEvent]], None]


@dataclass(frozen=True)
class _Add:
    request: GenerationRequest


@dataclass(frozen=True)
class _Abort:
    request_id: str


@dataclass(frozen=True)
class _Stop:
    pass


_Command = _Add | _Abort | _Stop

STOPPED = "the engine stopped (its model was unloaded or the server is shutting down)"


def _stopped_event(request_id: str) -> TokenEvent:
    return TokenEvent(request_id, "", finish_reason=FinishReason.ERROR, error=STOPPED)


class EngineCore:
    """Owns the runner; every call into llama.cpp's context happens on this thread."""

    def __init__(self, runner: ModelRunner, scheduler: Scheduler, sink: EventSink) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self._sink = sink
        self._inbox: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._arrivals = itertools.count()
        self._thread = threading.Thread(target=self._run, name="inhouse-engine", daemon=True)
        self._stopping = False
        # _gate orders submissions against the thread's exit, and closing against the last step
        self._gate = threading.Lock()
        self._closed = False  # the thread takes no more requests
        self._exited = False  # the thread no longer touches the runner
        self._close_runner = False  # free the runner as soon as the thread is done with it
        self.steps = 0

    # ----- called from other threads ------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the loop after its current step; whether the thread ended within `timeout`."""
        self._inbox.put(_Stop())
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> bool:
        """Stop, and free the runner once no step uses it: here if the thread is done, else
        by the thread itself when its step (e.g. a long llama_decode) returns."""
        with self._gate:
            self._close_runner = True
            free_here = self._exited or self._thread.ident is None
            self._closed = True
        if free_here:
            self.runner.close()
            return True
        return self.stop(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, request: GenerationRequest) -> None:
        """Queue `request`; once the engine has stopped it ends at once with an error event."""
        with self._gate:
            if not self._closed:
                self._inbox.put(_Add(request))
                return
        self._sink([_stopped_event(request.request_id)])

    def abort(self, request_id: str) -> None:
        self._inbox.put(_Abort(request_id))

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    # ----- the engine thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                self.poll(block=not self.scheduler.has_work())
                if self.scheduler.has_work() and not self._stopping:
                    self.step()
        finally:
            self._exit()

    def _exit(self) -> None:
        """End every request the engine holds or was sent, then free the runner if asked."""
        with self._gate:
            self._closed = True  # from here on submit() answers for itself
        try:
            self._fail_all(STOPPED)
            refused: list[TokenEvent] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    command = self._inbox.get_nowait()
                    if isinstance(command, _Add):
                        refused.append(_stopped_event(command.request.request_id))
            if refused:
                self._sink(refused)
        finally:
            with self._gate:
                self._exited = True
                free = self._close_runner
            if free:
                self.runner.close()

    def poll(self, *, block: bool) -> None:
        """Take in submitted requests and aborts (waiting for one if `block`)."""
        try:
            command = self._inbox.get(block=block)
            while True:
                self._handle(command)
                command = self._inbox.get_nowait()
        except queue.Empty:
            return

    def _handle(self, command: _Command) -> None:
        if isinstance(command, _Stop):
            self._stopping = True
        elif isinstance(command, _Add):
            self._add(command.request)
        else:
            found = self.scheduler.find(command.request_id)
            if found is not None:
                self._sink([self._finish(found, FinishReason.ABORT)])

    def _add(self, request: GenerationRequest) -> None:
        seq = Sequence.create(request, next(self._arrivals))
        try:
            seq.sampler = self.runner.new_sampler(request.params)
        except Exception as exc:  # refuse this request, keep serving the others
            log.exception("could not set up sampling")
            self._sink(
                [
                    TokenEvent(
                        request.request_id,
                        "",
                        finish_reason=FinishReason.ERROR,
                        error=f"could not set up sampling: {exc}",
                    )
                ]
            )
            return
        seq.state = OutputText(request.params.stop)
        self.scheduler.add(seq)

    def step(self) -> None:
        """One decode step; a failure fails the sequences in flight, not the engine."""
        try:
            self._decode_step()
        except Exception as exc:  # a failed step must not take the server down
            log.exception("engine step failed")
            self._fail_all(f"engine error: {exc}")

    def _decode_step(self) -> None:
        plan = self.scheduler.schedule()
        result = self.runner.execute(plan)
        if result is None:
            self._on_kv_full(plan.num_tokens)
            self.scheduler.rollback(plan)
            return
        self.scheduler.commit(plan)
        self.steps += 1
        sampling = [chunk.seq for chunk in plan.chunks if chunk.sample]
        events = [self._on_sampled(seq, s) for seq, s in zip(sampling, result, strict=True)]
        if events:
            self._sink(events)

    def _on_kv_full(self, num_tokens: int) -> None:
        if len(self.scheduler.running) <= 1:
            raise RuntimeError(f"no KV room for {num_tokens} tokens of a single sequence")

    def _on_sampled(self, seq: Sequence, sampled: Sampled) -> TokenEvent:
        seq.tokens.append(sampled.token)
        state: OutputText = seq.state
        params = seq.request.params
        reason: FinishReason | None = None
        if sampled.error is not None:  # only this sequence ends; the step's others go on
            text, reason = state.flush(), FinishReason.ERROR
        elif self.runner.is_end_of_generation(sampled.token):
            text, reason = state.flush(), FinishReason.STOP
        else:
            text = state.feed(self.runner.token_bytes(sampled.token))
            if state.stopped:
                reason = FinishReason.STOP
            elif seq.num_output >= params.max_tokens:
                text, reason = text + state.flush(), FinishReason.LENGTH
        logprobs = () if sampled.logprob is None else (sampled.logprob,)
        if reason is None:
            return TokenEvent(seq.request_id, text, logprobs)
        final = self._finish(seq, reason, sampled.error)
        return TokenEvent(
            seq.request_id,
            text,
            logprobs,
            reason,
            final.prompt_tokens,
            final.completion_tokens,
            final.cached_tokens,
            final.error,
        )

    def _finish(self, seq: Sequence, reason: FinishReason, error: str | None = None) -> TokenEvent:
        self.scheduler.finish(seq)
        if seq.sampler is not None:
            self.runner.free_sampler(seq.sampler)
            seq.sampler = None
        return TokenEvent(
            seq.request_id,
            "",
            finish_reason=reason,
            prompt_tokens=seq.num_prompt,
            completion_tokens=seq.num_output,
            cached_tokens=seq.cached_tokens,
            error=error,
        )

    def _fail_all(self, message: str) -> None:
        active = list(self.scheduler.running) + list(self.scheduler.waiting)
        events = [self._finish(seq, FinishReason.ERROR, message) for seq in active]
        if events:
            self._sink(events)
