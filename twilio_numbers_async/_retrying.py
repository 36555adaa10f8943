"""The retry loop every operation runs in: tenacity, driven by a :class:`RetryPolicy`.

An operation (a purchase, a look-up) gets one :class:`Budget` when it starts, and everything it
does (its attempts, the waits between them, the look-ups that reconcile it, the wait for a
limiter token) spends from it. :class:`Retrier` runs the attempts; what to retry is the
caller's ``decide``, fed by :func:`~twilio_numbers_async.retry.classify`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn, TypeVar

import attrs
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from .errors import RateLimitedError, TwilioNumbersError
from .retry import FailureKind, RetryEvent, RetryPolicy, classify

__all__ = [
    "MAX_PAUSE",
    "Budget",
    "Retrier",
    "RetryHook",
    "Retryable",
    "raise_last",
    "retry_unless_rejected",
]

logger = logging.getLogger("twilio_numbers_async")

#: A caller's hook, called before each retry's wait (metrics, logs).
RetryHook = Callable[[RetryEvent], None]

#: The longest a 429 pauses everyone sharing the limiter, in seconds, whatever its Retry-After:
#: a server that asks for a day ends the call that got it at once, and the others try again in a
#: minute rather than wait silently for a day.
MAX_PAUSE: Final = 60.0

_T = TypeVar("_T")


@attrs.frozen
class Budget:
    """An operation's time: the policy's ``max_elapsed`` from its start, on the policy's clock."""

    policy: RetryPolicy
    deadline: float

    @classmethod
    def start(cls, policy: RetryPolicy) -> Budget:
        return cls(policy, policy.now() + policy.max_elapsed)

    def remaining(self) -> float:
        """Seconds left; 0 or less once spent."""
        return self.deadline - self.policy.now()


class Retryable(Exception):  # noqa: N818 - a signal to tenacity, never seen by callers
    """Raised inside a retry loop to ask tenacity for another attempt after ``error``."""

    def __init__(self, error: TwilioNumbersError, kind: FailureKind) -> None:
        super().__init__(str(error))
        self.error = error
        self.kind = kind


@attrs.define
class Retrier:
    """The fixed parts of every retry loop of one client: policy, shared limiter, hook."""

    policy: RetryPolicy
    #: Holds every request of the client for a while (a 429's Retry-After).
    pause: Callable[[float], None]
    on_retry: RetryHook | None

    async def run(
        self,
        operation: str,
        attempt: Callable[[], Awaitable[_T]],
        *,
        decide: Callable[[TwilioNumbersError], Retryable],
        give_up: Callable[[Retryable], Awaitable[_T]],
        budget: Budget,
    ) -> _T:
        """``attempt()`` until it succeeds, as ``decide``, the policy and ``budget`` allow.

        ``decide(error)`` returns the signal to retry or raises what the caller must see;
        ``give_up(last)`` returns or raises once no more attempts are allowed.
        """
        try:
            return await attempt()
        except TwilioNumbersError as error:
            first = decide(error)
        # Only now is tenacity's loop built: it costs 20-40 µs a call, a tenth of a purchase's
        # whole CPU, and most purchases succeed at once. The first failure is replayed into it
        # so that it counts that attempt and waits after it as after any other.
        pending: Retryable | None = first
        try:
            async for try_ in self._retrying(operation, budget):
                with try_:
                    if pending is not None:
                        signal, pending = pending, None
                        raise signal
                    try:
                        return await attempt()
                    except TwilioNumbersError as error:
                        raise decide(error) from None
        except Retryable as last:
            if (seconds := _retry_after(last.error)) is not None:
                # No retry follows, so no wait paused the client for this 429: everyone else
                # sharing its limits must still back off.
                self._pause(seconds)
            return await give_up(last)
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _retrying(self, operation: str, budget: Budget) -> AsyncRetrying:
        policy = self.policy

        def wait(state: RetryCallState) -> float:
            return policy.delay_for(_signal(state).error, state.attempt_number)

        def stop(state: RetryCallState) -> bool:
            error = _signal(state).error
            return (
                state.attempt_number >= policy.max_attempts
                # tenacity computes the wait before it asks whether to stop, so a Retry-After
                # that would overrun the budget ends the loop now, not after a useless sleep.
                or state.upcoming_sleep > budget.remaining()
                # Our own limiter refused to wait past the budget: it would refuse again.
                or (isinstance(error, RateLimitedError) and error.from_limiter)
            )

        def before_sleep(state: RetryCallState) -> None:
            self._before_sleep(
                operation, _signal(state), state.attempt_number, state.upcoming_sleep
            )

        return AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception_type(Retryable),
            sleep=policy.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def _before_sleep(self, operation: str, signal: Retryable, attempt: int, wait: float) -> None:
        if _retry_after(signal.error) is not None:
            # A rate limit on the account: everyone sharing the client's limits backs off. A 429
            # without Retry-After is a concurrency refusal, which the adaptive limit answers by
            # itself, for this request only.
            self._pause(wait)
        logger.info(
            "%s: attempt %d failed (%s: %s); retrying in %.2fs",
            operation,
            attempt,
            signal.kind.value,
            signal.error,
            wait,
        )
        if self.on_retry is not None:
            try:
                self.on_retry(RetryEvent(operation, attempt, signal.kind, signal.error, wait))
            except Exception:
                # A metrics backend that is down must not turn a purchase that may have
                # happened into an error: the hook watches the outcome, it can't change it.
                logger.exception("the on_retry hook raised; ignored, the %s goes on", operation)

    def _pause(self, seconds: float) -> None:
        self.pause(min(seconds, MAX_PAUSE))


def retry_unless_rejected(error: TwilioNumbersError) -> Retryable:
    """``decide`` for a request that is safe to repeat whatever happened to it (a GET)."""
    kind = classify(error)
    if kind is FailureKind.REJECTED:
        raise error
    return Retryable(error, kind)


async def raise_last(last: Retryable) -> NoReturn:
    """``give_up`` that reports the last failure as it is."""
    raise last.error


def _retry_after(error: TwilioNumbersError) -> float | None:
    """The Retry-After of a 429 from Twilio, if it sent one (not our own limiter's refusal)."""
    if isinstance(error, RateLimitedError) and not error.from_limiter:
        return error.retry_after
    return None


def _signal(state: RetryCallState) -> Retryable:
    assert state.outcome is not None  # noqa: S101 - tenacity sets it before wait, stop, sleep
    error = state.outcome.exception()
    assert isinstance(error, Retryable)  # noqa: S101 - the loop retries on nothing else
    return error
