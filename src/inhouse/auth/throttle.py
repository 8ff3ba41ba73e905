"""Sign-in throttling: after too many failed attempts for one user name, or from one
address, within a sliding window, further attempts are refused (429 with Retry-After)
before any password is hashed."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from inhouse.errors import QuotaExceeded

SWEEP_EVERY = 256  # attempts between sweeps of names and addresses whose window has passed


@dataclass(frozen=True)
class Attempt:
    """One sign-in in progress: counted as failed unless it is reported a success."""

    keys: tuple[str, ...]
    at: float


class LoginThrottle:
    """Failed sign-ins per user name and per client address in the last `window_s` seconds;
    an attempt counts from its start, so a burst of concurrent guesses is held too."""

    def __init__(
        self,
        per_user: int,
        per_address: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"user": per_user, "address": per_address}  # 0: no limit
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._since_sweep = 0

    def begin(self, name: str, address: str | None) -> Attempt:
        """Count an attempt for `name` from `address`, or raise QuotaExceeded (429)."""
        keys = [f"user:{name}"] + ([f"address:{address}"] if address else [])
        now = self._clock()
        with self._lock:
            self._sweep(now)
            wait = max((self._wait(key, now) for key in keys), default=0.0)
            if wait > 0:
                raise QuotaExceeded(
                    f"Too many failed sign-in attempts; try again in {math.ceil(wait)} s.",
                    retry_after=math.ceil(wait),
                    code="too_many_sign_in_attempts",
                )
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)
        return Attempt(tuple(keys), now)

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt signed in: it is not a failure after all."""
        with self._lock:
            for key in attempt.keys:
                times = self._failures.get(key)
                if times is not None and attempt.at in times:
                    times.remove(attempt.at)

    def tracked(self) -> int:
        """How many names and addresses have failures counted now (memory held)."""
        with self._lock:
            return len(self._failures)

    def _wait(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0: now)."""
        limit = self.limits[key.split(":", 1)[0]]
        times = self._failures.get(key)
        if not limit or times is None:
            return 0.0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) < limit:
            return 0.0
        return max(times[-limit] + self.window_s - now, 1.0)

    def _sweep(self, now: float) -> None:
        """Forget keys without a failure in the window: memory stays bounded by attempts."""
        self._since_sweep += 1
        if self._since_sweep < SWEEP_EVERY:
            return
        self._since_sweep = 0
        cutoff = now - self.window_s
        for key in [k for k, times in self._failures.items() if not times or times[-1] <= cutoff]:
            del self._failures[key]
