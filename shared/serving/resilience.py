"""Circuit breakers and retries around backend calls, so a failing backend costs a request
nothing once it is known to be down.

Timeouts live in the clients themselves (Redis socket timeouts, the Cosmos request timeout);
this module decides whether to call at all and whether to try again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from shared import telemetry
from shared.stores.cache import BadReply, PoolExhausted

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class BreakerOpen(RuntimeError):
    """The backend is known to be failing; the call was not attempted."""


class CircuitBreaker:
    """Closed → open after `failures` consecutive errors → after `reset_seconds` one probe call
    is let through (half-open): success closes the breaker, failure opens it again.

    Only the backend's own failures count: `PoolExhausted` (no free pooled connection because
    this process is saturated) passes through without counting or retrying.
    Thread-safe; the state check on the hot path is one lock-free attribute read when closed.
    Each state change is reported to telemetry (`reco.breaker.state`).
    """

    def __init__(self, name: str, failures: int = 5, reset_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._threshold = failures
        self._reset = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.opened_count = 0  # how often it opened since start (for /api/ready and tests)
        telemetry.breaker_state(name, CLOSED)

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self._reset:
                return HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether to attempt a call now; in half-open only one caller gets to probe."""
        if self._state == CLOSED:
            return True
        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state == OPEN and self._clock() - self._opened_at >= self._reset:
                self._state = HALF_OPEN
                self._probing = False
                telemetry.breaker_state(self.name, HALF_OPEN)
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        if self._state == CLOSED and self._failures == 0:
            return
        with self._lock:
            if self._state != CLOSED:
                log.info("circuit %s closed: backend answers again", self.name)
                telemetry.breaker_state(self.name, CLOSED)
            self._state = CLOSED
            self._failures = 0
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or (
                self._state == CLOSED and self._failures >= self._threshold
            ):
                if self._state == CLOSED:
                    log.warning("circuit %s opened after %d failures", self.name, self._failures)
                self._state = OPEN
                telemetry.breaker_state(self.name, OPEN)
                self._opened_at = self._clock()
                self._probing = False
                self.opened_count += 1

    def call(self, fn: Callable[[], T], retry: Retry | None = None) -> T:
        """Runs `fn` under the breaker; retries (idempotent reads only) per `retry`.

        Raises BreakerOpen without calling when open, else the last error of `fn`.
        """
        attempts = 1 if retry is None else retry.attempts
        for attempt in range(attempts):
            if not self.allow():
                raise BreakerOpen(f"{self.name} circuit is open")
            try:
                result = fn()
            except (PoolExhausted, BadReply):  # this process or this key, not the backend
                self._not_counted()
                raise
            except BaseException as exc:  # a cancelled call still settles a half-open probe
                if not isinstance(exc, Exception):
                    self._not_counted()
                    raise
                self.failure()
                if attempt + 1 >= attempts:
                    raise
                assert retry is not None
                time.sleep(retry.delay(attempt))
                continue
            self.success()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def call_async(self, fn: Callable[[], Awaitable[T]], retry: Retry | None = None) -> T:
        """`call` for a coroutine function; backoff sleeps do not block the event loop."""
        attempts = 1 if retry is None else retry.attempts
        for attempt in range(attempts):
            if not self.allow():
                raise BreakerOpen(f"{self.name} circuit is open")
            try:
                result = await fn()
            except (PoolExhausted, BadReply):  # this process or this key, not the backend
                self._not_counted()
                raise
            except BaseException as exc:  # a cancelled call still settles a half-open probe
                if not isinstance(exc, Exception):
                    self._not_counted()
                    raise
                self.failure()
                if attempt + 1 >= attempts:
                    raise
                assert retry is not None
                await asyncio.sleep(retry.delay(attempt))
                continue
            self.success()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _not_counted(self) -> None:
        """The call said nothing about the backend: a half-open probe may be tried again."""
        if self._state != CLOSED:
            with self._lock:
                self._probing = False


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with full jitter: delay in [0, base * 2**attempt], capped."""

    attempts: int = 2
    base_seconds: float = 0.01
    cap_seconds: float = 0.2

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.cap_seconds, self.base_seconds * 2**attempt))


@dataclass
class Breakers:
    """One breaker per backend a request may touch."""

    cache: CircuitBreaker
    store: CircuitBreaker
    artifacts: CircuitBreaker

    @classmethod
    def build(cls, failures: int, reset_seconds: float) -> Breakers:
        return cls(
            CircuitBreaker("cache", failures, reset_seconds),
            CircuitBreaker("store", failures, reset_seconds),
            CircuitBreaker("artifacts", failures, reset_seconds),
        )

    def states(self) -> dict[str, str]:
        return {b.name: b.state for b in (self.cache, self.store, self.artifacts)}
