"""When to retry, and how long to wait: the policy and the one pure decision behind it.

A purchase costs money and Twilio's create endpoints take no idempotency key, so every failure is
sorted by :func:`classify` into one of three kinds before anything is retried:

========================  ==============================================  =====================
failure                   was it processed?                               kind
========================  ==============================================  =====================
429 / 20429               no: Twilio says it is safe to retry             ``NOT_PROCESSED``
DNS, connect, TLS         no: the request never left this machine         ``NOT_PROCESSED``
5xx, read timeout, drop   maybe: Twilio may have bought the number        ``UNKNOWN``
2xx naming no resource    maybe: it said yes, but to what?                ``UNKNOWN``
any other status          yes: Twilio answered and refused (or, for an    ``REJECTED``
                          unreadable 2xx, accepted)
========================  ==============================================  =====================

What the client does with each kind (reconcile an ``UNKNOWN`` purchase before any retry) lives in
``_purchase``, and the loop in ``_retrying``; this module only decides, and says how long to wait.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import attrs

from ._checks import check_count
from .errors import (
    RateLimitedError,
    ResponseParseError,
    TransportError,
    TwilioApiError,
    TwilioNumbersError,
)

__all__ = ["FailureKind", "RetryEvent", "RetryPolicy", "classify"]


class FailureKind(enum.Enum):
    """What a failure says about whether Twilio processed the request."""

    #: Certainly not processed: safe to send again.
    NOT_PROCESSED = "not_processed"
    #: Maybe processed: look before sending again.
    UNKNOWN = "unknown"
    #: Processed: Twilio answered. Sending again can't change the answer.
    REJECTED = "rejected"


def classify(error: TwilioNumbersError) -> FailureKind:
    """Sort a failed attempt into a :class:`FailureKind`. Pure: no I/O, no clock, no state."""
    if isinstance(error, TransportError):
        return FailureKind.UNKNOWN if error.sent else FailureKind.NOT_PROCESSED
    if isinstance(error, ResponseParseError) and error.sid is None:
        # A 2xx that names no resource: Twilio processed something, but what can't be told.
        return FailureKind.UNKNOWN
    if isinstance(error, TwilioApiError):
        if error.status == 429 or error.code == 20429:
            return FailureKind.NOT_PROCESSED
        if error.status >= 500:
            return FailureKind.UNKNOWN
    return FailureKind.REJECTED


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"RetryPolicy.{attribute.name} must be >= 0 seconds, not {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    check_count(f"RetryPolicy.{attribute.name}", value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How hard to try: attempts, exponential backoff with full jitter, and a time budget.

    Durations are seconds, as a float or a :class:`~datetime.timedelta`. A ``Retry-After`` from
    Twilio is honoured even when it is above ``max_delay``; one that would overrun what
    ``max_elapsed`` leaves ends the retries at once instead of sleeping past the budget.

    ``random``, ``sleep`` and ``clock`` are seams for tests: the jitter's source (a float in
    ``[0, 1)``), the coroutine that waits, and a monotonic clock (default: the running loop's).
    """

    max_attempts: int = attrs.field(default=5, validator=_at_least_one)
    initial_delay: float = attrs.field(default=0.5, converter=_seconds, validator=_non_negative)
    max_delay: float = attrs.field(default=30.0, converter=_seconds, validator=_non_negative)
    max_elapsed: float = attrs.field(default=120.0, converter=_seconds, validator=_non_negative)
    random: Callable[[], float] = attrs.field(default=random.random, repr=False, eq=False)
    sleep: Callable[[float], Awaitable[None]] = attrs.field(
        default=asyncio.sleep, repr=False, eq=False
    )
    clock: Callable[[], float] | None = attrs.field(default=None, repr=False, eq=False)

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """One attempt; an unknown outcome is still reconciled before it is reported."""
        return cls(max_attempts=1)

    def backoff(self, retry_number: int) -> float:
        """Full jitter: uniform in ``[0, ceiling)``, the ceiling doubling from ``initial_delay``
        with each retry up to ``max_delay``."""
        ceiling = min(self.max_delay, self.initial_delay * 2.0 ** max(0, retry_number - 1))
        return ceiling * self.random()

    def delay_for(self, error: TwilioNumbersError, retry_number: int) -> float:
        """The wait before retry ``retry_number`` (1 for the first) after ``error``.

        A 429's ``Retry-After`` as it is; otherwise the backoff, a concurrency refusal (a 429
        without one) included: the account's room may be held by other programs, which a retry
        at once would meet again, and the refused request waits outside its slot, so the
        client's other requests go on meanwhile.
        """
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return error.retry_after
        return self.backoff(retry_number)

    def now(self) -> float:
        """The policy's clock: ``clock`` if given, else the running loop's monotonic time."""
        return self.clock() if self.clock is not None else asyncio.get_running_loop().time()


@attrs.frozen
class RetryEvent:
    """What :paramref:`on_retry` hooks receive before each retry's wait: for metrics and logs."""

    #: The operation: ``"purchase"``, or one of the reads: ``"find"``, ``"search"``,
    #: ``"fetch"``, ``"release"``.
    operation: str
    #: The attempt that failed, counting from 1.
    attempt: int
    kind: FailureKind
    error: TwilioNumbersError
    #: Seconds until the next attempt.
    wait: float
