"""LoginThrottle: failures per name and per address in a sliding window; Retry-After says
when the oldest counted failure leaves it."""

from __future__ import annotations

import pytest

from inhouse.auth.throttle import SWEEP_EVERY, LoginThrottle
from inhouse.errors import QuotaExceeded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_name_is_held_until_its_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_user=2, per_address=0, window_s=60, clock=clock)
    throttle.begin("ann", "10.0.0.1")
    clock.now += 10
    throttle.begin("ann", "10.0.0.2")  # another address: the name still counts
    with pytest.raises(QuotaExceeded) as refused:
        throttle.begin("ann", "10.0.0.3")
    assert refused.value.status == 429 and refused.value.retry_after == 50
    throttle.begin("bob", "10.0.0.1")  # other names are not held
    clock.now += 50
    throttle.begin("ann", "10.0.0.1")  # the first failure has left the window


def test_an_address_is_held_across_names_and_a_success_is_not_a_failure() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_user=0, per_address=2, window_s=60, clock=clock)
    ok = throttle.begin("ann", "10.0.0.1")
    throttle.succeeded(ok)
    throttle.begin("bob", "10.0.0.1")
    throttle.begin("cid", "10.0.0.1")
    with pytest.raises(QuotaExceeded):
        throttle.begin("dee", "10.0.0.1")
    throttle.begin("dee", "10.0.0.9")


def test_names_and_addresses_whose_window_passed_are_forgotten() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_user=5, per_address=5, window_s=60, clock=clock)
    for i in range(300):  # an attacker cycling through names and addresses
        throttle.begin(f"name{i}", f"10.0.{i // 256}.{i % 256}")
    assert throttle.tracked() == 600
    clock.now += 61
    for i in range(SWEEP_EVERY):
        throttle.begin(f"later{i}", None)
    assert throttle.tracked() <= SWEEP_EVERY
