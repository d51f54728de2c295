"""A circuit breaker: stop calling an upstream that keeps failing, and try it again later.

- ``CLOSED``: calls go through; ``failure_threshold`` consecutive failures open it.
- ``OPEN``: calls fail at once with ``CircuitOpenError``, for ``cooldown`` seconds.
- ``HALF_OPEN``: one trial call goes through (the others still fail fast); its
  success closes the circuit, its failure opens it again.

Written here rather than taken from a library: pybreaker is synchronous, and the
asyncio ones (purgatory, aiobreaker) count failures as exceptions raised inside
their context, where a 5xx answer is a returned response, and bring storage
backends this service does not need.  This is plain state with no locks: it
never awaits, so asyncio cannot interleave its steps.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class CircuitState(enum.IntEnum):
    """Values are what the ``http_client_circuit_state`` gauge shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitOpenError(Exception):
    """The upstream's circuit is open: the call was not made."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit of upstream {name!r} is open; retry in {retry_after:.1f} s")
        self.name = name
        self.retry_after = retry_after


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        cooldown: float,
        on_change: Callable[[CircuitState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._failure_threshold = failure_threshold
        self._cooldown = cooldown
        self._on_change = on_change
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._cooldown:
            self._set(CircuitState.HALF_OPEN)
        return self._state

    def before_call(self) -> None:
        """Raise ``CircuitOpenError`` unless a call may be made now."""
        state = self.state
        if state is CircuitState.CLOSED:
            return
        if state is CircuitState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return
        retry_after = max(self._cooldown - (self._clock() - self._opened_at), 0.0)
        raise CircuitOpenError(self.name, retry_after)

    def record_success(self) -> None:
        self._failures = 0
        self._trial_in_flight = False
        if self._state is not CircuitState.CLOSED:
            self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_in_flight = False
        if self._state is CircuitState.OPEN:
            return  # a call made before it opened: the cool-down is not extended
        if self._state is CircuitState.HALF_OPEN or self._failures >= self._failure_threshold:
            self._opened_at = self._clock()
            self._set(CircuitState.OPEN)

    def record_abandoned(self) -> None:
        """The call ended without an outcome (it was cancelled): let another trial call through."""
        self._trial_in_flight = False

    def _set(self, state: CircuitState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)
