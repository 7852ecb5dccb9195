"""Retry timing (exponential backoff with jitter) and a per-target circuit breaker."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from converge.errors import ConfigError


@dataclass(frozen=True)
class WebhookRetryPolicy:
    """How outbound webhook calls are retried.

    Attributes:
        max_attempts: total attempts per action (>= 1).
        base_delay_sec: delay after the first failed attempt; doubles per attempt.
        max_delay_sec: cap on the delay before jitter.
        jitter_ratio: the delay is moved uniformly by up to ``± ratio × delay`` (0..1).
        request_timeout_sec: timeout of one HTTP attempt.
    """

    max_attempts: int = 5
    base_delay_sec: float = 0.25
    max_delay_sec: float = 10.0
    jitter_ratio: float = 0.2
    request_timeout_sec: float = 5.0

    def __post_init__(self) -> None:
        owner = "WebhookRetryPolicy"
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"{owner}.max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        for name in ("base_delay_sec", "max_delay_sec"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{owner}.{name} must be a number >= 0, got {value!r}")
        ratio = self.jitter_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ConfigError(f"{owner}.jitter_ratio must be between 0 and 1, got {ratio!r}")
        timeout = self.request_timeout_sec
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"{owner}.request_timeout_sec must be a number > 0, got {timeout!r}")

    def compute_delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        ``d = min(max_delay_sec, base_delay_sec * 2 ** max(0, attempt - 1))``,
        then ``max(0, d + uniform(-d * jitter_ratio, d * jitter_ratio))``.

        Args:
            attempt: the attempt that just failed.
            rng: the random source for the jitter (default: the ``random`` module).
        """
        exponent = max(0, attempt - 1)
        # Cap the exponent so huge attempt numbers cannot overflow the float.
        d = min(self.max_delay_sec, self.base_delay_sec * 2.0 ** min(exponent, 1000))
        spread = d * self.jitter_ratio
        uniform = (rng or random).uniform
        return max(0.0, d + uniform(-spread, spread))


@dataclass
class CircuitBreaker:
    """Stops calls to a failing target for a while, then lets one probe through.

    States: *closed* (calls pass), *open* (calls refused until
    ``recovery_timeout_sec`` after the last failure), *half-open* (one probe call
    is let through; its success closes the breaker, its failure opens it again).
    Unlike the reference, half-open admits a single probe at a time rather than
    every caller; a probe whose outcome is never recorded expires after another
    ``recovery_timeout_sec``.

    Attributes:
        failure_threshold: consecutive failures that open the breaker.
        recovery_timeout_sec: how long the breaker stays open.
        clock: monotonic seconds, injectable for tests.
    """

    failure_threshold: int = 5
    recovery_timeout_sec: float = 30.0
    _failures: int = 0
    _opened_at: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    _probe_at: float | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.failure_threshold, bool) or not isinstance(self.failure_threshold, int) or self.failure_threshold < 1:
            raise ConfigError(f"CircuitBreaker.failure_threshold must be an integer >= 1, got {self.failure_threshold!r}")
        if not isinstance(self.recovery_timeout_sec, (int, float)) or not self.recovery_timeout_sec >= 0:
            raise ConfigError(f"CircuitBreaker.recovery_timeout_sec must be >= 0, got {self.recovery_timeout_sec!r}")

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        if self._opened_at is None:
            return "closed"
        if self.clock() - self._opened_at < self.recovery_timeout_sec:
            return "open"
        return "half_open"

    @property
    def failures(self) -> int:
        """Consecutive failures recorded since the last success."""
        return self._failures

    def allow_request(self) -> bool:
        """Whether a call may go out now. In half-open state this takes the single probe slot."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self.clock()
        if self._probe_at is not None and now - self._probe_at < max(self.recovery_timeout_sec, 1e-9):
            return False
        self._probe_at = now
        return True

    def record_success(self) -> None:
        """Close the breaker and reset the failure count."""
        self._failures = 0
        self._opened_at = None
        self._probe_at = None

    def record_failure(self) -> None:
        """Count a failure; at the threshold (or when a probe fails) open the breaker."""
        self._failures += 1
        self._probe_at = None
        if self._failures >= self.failure_threshold:
            self._opened_at = self.clock()

    @property
    def is_open(self) -> bool:
        """True while calls are refused (open, or half-open with the probe already out)."""
        if self._opened_at is None:
            return False
        if self.state == "open":
            return True
        return self._probe_at is not None and self.clock() - self._probe_at < max(self.recovery_timeout_sec, 1e-9)


__all__ = ["CircuitBreaker", "WebhookRetryPolicy"]
