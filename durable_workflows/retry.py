"""Retry policies: how many times a step runs, and how long to wait between attempts."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from .durations import parse_duration
from .exceptions import NonRetryableError

DurationLike = timedelta | int | float | str
Backoff = Literal["exponential", "linear", "constant"] | Callable[[int], DurationLike]
BACKOFFS = ("exponential", "linear", "constant")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a failed step runs again.

    `max_attempts` counts every run of the step, the first included. The delay before retry k
    (k = 1 after the first failure) is `initial_delay * multiplier**(k-1)` (exponential),
    `initial_delay + increment*(k-1)` (linear), `initial_delay` (constant) or `backoff(k)`
    when `backoff` is a function (seconds, a timedelta or text such as "5m"), capped at
    `max_delay`, then jittered by a +/- fraction.
    """

    max_attempts: int = 3
    backoff: Backoff = "exponential"
    initial_delay: DurationLike = "1s"
    multiplier: float = 2
    increment: DurationLike | None = None
    max_delay: DurationLike = "60s"
    jitter: float | bool = 0.1
    max_duration: DurationLike | None = None
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,)
    is_retryable: Callable[[BaseException], bool] | None = field(default=None, compare=False)

    if TYPE_CHECKING:
        # Set by __post_init__ through object.__setattr__; declared for the type checker only,
        # so that they stay out of the dataclass's fields, repr and comparisons.
        _jitter: float = field(init=False)
        _initial: float = field(init=False)
        _max_delay: float = field(init=False)
        _increment: float = field(init=False)
        _max_duration: float | None = field(init=False)
        _retry_on: tuple[type[BaseException], ...] = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"max_attempts must be a whole number, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not callable(self.backoff) and self.backoff not in BACKOFFS:
            raise ValueError(
                f"backoff must be one of {', '.join(BACKOFFS)} or a function of the retry number, "
                f"got {self.backoff!r}"
            )
        if isinstance(self.multiplier, bool) or not isinstance(self.multiplier, (int, float)):
            raise ValueError(f"multiplier must be a number, got {self.multiplier!r}")
        if not self.multiplier > 0 or self.multiplier == float("inf"):  # NaN fails the first test
            raise ValueError(f"multiplier must be a positive, finite number, got {self.multiplier}")
        jitter = self.jitter
        if jitter is True:
            jitter = 0.1
        elif jitter is False or jitter is None:
            jitter = 0.0
        if not isinstance(jitter, (int, float)) or not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be True, False or a fraction from 0 to 1, got {self.jitter!r}")
        object.__setattr__(self, "_jitter", float(jitter))
        object.__setattr__(self, "_initial", self._seconds(self.initial_delay, "initial_delay"))
        object.__setattr__(self, "_max_delay", self._seconds(self.max_delay, "max_delay"))
        increment = self._initial if self.increment is None else self._seconds(self.increment, "increment")
        object.__setattr__(self, "_increment", increment)
        object.__setattr__(
            self,
            "_max_duration",
            None if self.max_duration is None else self._seconds(self.max_duration, "max_duration"),
        )
        retry_on = self.retry_on if isinstance(self.retry_on, tuple) else (self.retry_on,)
        for kind in retry_on:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise ValueError(f"retry_on must hold exception classes, got {kind!r}")
        object.__setattr__(self, "_retry_on", retry_on)
        if self.is_retryable is not None and not callable(self.is_retryable):
            raise ValueError(f"is_retryable must be callable, got {self.is_retryable!r}")

    @staticmethod
    def _seconds(value: DurationLike, name: str) -> float:
        return parse_duration(value, what=name).total_seconds()

    # -- the formulas -------------------------------------------------------------------
    def base_delay(self, retry: int) -> float:
        """Seconds before retry number `retry` (1 after the first failure), before jitter."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        if callable(self.backoff):
            delay = self._custom_delay(retry)
        elif self.backoff == "exponential":
            try:
                delay = self._initial * self.multiplier ** (retry - 1)
            except OverflowError:
                delay = float("inf")
        elif self.backoff == "linear":
            delay = self._initial + self._increment * (retry - 1)
        else:
            delay = self._initial
        return min(delay, self._max_delay)

    def _custom_delay(self, retry: int) -> float:
        """The backoff function's delay, or a ValueError naming this policy: a function that
        raises or answers nonsense fails the step with that error, never the worker."""
        name = getattr(self.backoff, "__qualname__", repr(self.backoff))
        try:
            value = self.backoff(retry)  # type: ignore[operator]  # callable, checked above
        except Exception as error:
            raise ValueError(f"{self!r}: its backoff {name}({retry}) raised "
                             f"{type(error).__name__}: {error}") from error
        if isinstance(value, bool) or not isinstance(value, (int, float, timedelta, str)):
            raise ValueError(f"{self!r}: its backoff {name}({retry}) returned {value!r}, "
                             f"not seconds, a timedelta or a duration such as '5m'")
        try:
            seconds = parse_duration(value, what="delay").total_seconds()
            if seconds != seconds or seconds < 0:  # NaN, or negative
                raise ValueError("below zero")
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"{self!r}: its backoff {name}({retry}) returned {value!r}, "
                             f"not a delay of zero or more ({error})") from error
        return seconds

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds before retry number `retry`, jittered by +/- `jitter` of the delay."""
        delay = self.base_delay(retry)
        if self._jitter and delay > 0:
            spread = delay * self._jitter
            delay += (rng or random).uniform(-spread, spread)
        return max(delay, 0.0)

    def delays(self) -> list[float]:
        """The un-jittered delays of every retry this policy allows, for docs and tests."""
        return [self.base_delay(k) for k in range(1, self.max_attempts)]

    @property
    def max_duration_seconds(self) -> float | None:
        return self._max_duration

    def should_retry(self, error: BaseException) -> bool:
        """Whether `error` is of a kind this policy retries (attempt counts aside)."""
        if isinstance(error, NonRetryableError):
            return False
        if not isinstance(error, self._retry_on):
            return False
        if self.is_retryable is not None and not self.is_retryable(error):
            return False
        return True

    # -- presets --------------------------------------------------------------------------
    @classmethod
    def standard(cls) -> RetryPolicy:
        """3 attempts, 1 s then 2 s apart: for calls that fail now and then."""
        return cls(max_attempts=3, backoff="exponential", initial_delay="1s", max_delay="30s")

    @classmethod
    def aggressive(cls) -> RetryPolicy:
        """5 quick attempts from 100 ms: for cheap calls where a blip is likely."""
        return cls(max_attempts=5, backoff="exponential", initial_delay="100ms", max_delay="5s")

    @classmethod
    def patient(cls) -> RetryPolicy:
        """10 attempts from 5 s up to 10 min apart: for services that go away for a while."""
        return cls(
            max_attempts=10, backoff="exponential", initial_delay="5s", max_delay="10m",
            jitter=0.2,
        )
