"""The circuit breaker's states, on a clock the tests move."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package_name }}.chassis.circuit_breaker import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[CircuitState]:
    return []


@pytest.fixture
def breaker(clock: Clock, changes: list[CircuitState]) -> CircuitBreaker:
    return CircuitBreaker("catalog", failure_threshold=3, cooldown=10, on_change=changes.append, clock=clock)


def test_consecutive_failures_open_it_and_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    states = [breaker.state]
    breaker.record_failure()
    states.append(breaker.state)
    assert states == [CircuitState.CLOSED, CircuitState.OPEN]


def test_while_open_calls_fail_fast_saying_when_to_retry(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.now = 4
    with pytest.raises(CircuitOpenError, match="catalog") as raised:
        breaker.before_call()
    assert raised.value.retry_after == pytest.approx(6)


def test_after_the_cooldown_one_trial_goes_through(
    breaker: CircuitBreaker, clock: Clock, changes: list[CircuitState]
) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.now = 10
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # others still fail fast while it runs
    breaker.record_success()
    breaker.before_call()
    assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]


def test_a_failed_trial_opens_it_again_for_a_full_cooldown(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.now = 10
    breaker.before_call()
    breaker.record_failure()
    clock.now = 19
    with pytest.raises(CircuitOpenError):
        breaker.before_call()


def test_an_abandoned_trial_lets_the_next_one_through(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.now = 10
    breaker.before_call()
    breaker.record_abandoned()  # e.g. the request was cancelled
    breaker.before_call()
