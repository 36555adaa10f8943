"""One purchase, carried out so that a number is never bought twice and never lost.

The rules (``retry`` sorts the failures):

- not processed (429, connect failure): wait and send again; a 429 pauses the shared limiter so
  that every coroutine backs off, not only this one;
- unknown (5xx, timeout, dropped connection): a ``phone_number`` purchase is looked up on the
  account before anything else is sent: owned means it was bought (returned as *reconciled*),
  not owned means it is safe to send again. An ``area_code`` purchase can't be looked up, so it
  ends in :class:`PurchaseOutcomeUnknownError` rather than a blind retry that could buy a second
  number;
- a 21422 ("not available") after an unknown attempt most likely means that attempt bought it:
  look once more, and report the 21422 only if the number is not on the account;
- when the retries run out after an unknown attempt, look one last time before giving up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import attrs

from .errors import (
    PurchaseOutcomeUnknownError,
    RateLimitedError,
    TwilioApiError,
    TwilioNumbersError,
)
from .retry import FailureKind, Retryable, RetryEvent, RetryPolicy, classify, make_retrying

if TYPE_CHECKING:
    from .models import IncomingPhoneNumber, PurchaseRequest
    from .ratelimit import Limiter

__all__ = [
    "PurchaseStats",
    "Retrier",
    "RetryHook",
    "purchase_safely",
    "raise_last",
    "retry_unless_rejected",
]

logger = logging.getLogger("twilio_numbers_async")

#: A caller's hook, called before each retry's wait (metrics, logs).
RetryHook = Callable[[RetryEvent], None]

_NOT_AVAILABLE = 21422
_T = TypeVar("_T")


@attrs.define
class PurchaseStats:
    """What one purchase took; filled in as it runs, so it is complete even when it raises."""

    #: POSTs sent (look-ups not counted).
    attempts: int = 0
    #: Whether the result was found on the account after an attempt of unknown outcome.
    reconciled: bool = False
    #: Retries that followed a 429.
    rate_limited: int = 0
    #: Whether some attempt's outcome was unknown: Twilio may yet show the number bought, even
    #: when every look-up so far found nothing.
    in_doubt: bool = False


@attrs.define
class Retrier:
    """The fixed parts of every retry loop of one client: policy, shared limiter, hook."""

    policy: RetryPolicy
    limiter: Limiter | None
    on_retry: RetryHook | None
    #: The event loop whose clock the last run read (see ``started``).
    _loop: asyncio.AbstractEventLoop | None = attrs.field(
        init=False, default=None, eq=False, repr=False
    )

    def started(self) -> float:
        """``policy.now()``, read when a run begins, without a system call on the hot path.

        On Python 3.11 ``asyncio.get_running_loop()`` makes a ``getpid`` system call, which cost
        more than the rest of a first attempt's retry machinery. As ``TokenBucket.acquire``
        does, the loop is remembered: a thread runs one loop at a time, so a remembered loop
        that is running is the caller's (a client belongs to one loop: its session does).
        """
        policy = self.policy
        if policy.clock is not None:
            return policy.clock()
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def before_sleep(
        self, operation: str, signal: Retryable, attempt: int, wait: float, stats: PurchaseStats
    ) -> None:
        if isinstance(signal.error, RateLimitedError):
            stats.rate_limited += 1
            if self.limiter is not None:
                # Twilio's limit is per account: everyone sharing this limiter must back off.
                self.limiter.pause(wait)
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

    async def run(
        self,
        operation: str,
        attempt: Callable[[], Awaitable[_T]],
        *,
        decide: Callable[[TwilioNumbersError], Retryable],
        give_up: Callable[[Retryable], Awaitable[_T]],
        stats: PurchaseStats,
    ) -> _T:
        """``attempt()`` until it succeeds, as ``decide`` and the policy allow.

        ``decide(error)`` returns the signal to retry or raises what the caller must see;
        ``give_up(last)`` returns or raises once the policy allows no more attempts.
        """
        started_at = self.started()
        try:
            return await attempt()
        except TwilioNumbersError as error:
            first = decide(error)
        # The first attempt failed: only now is the retry machinery worth building.
        retrying = make_retrying(
            self.policy,
            started_at=started_at,
            before_sleep=lambda signal, number, wait: self.before_sleep(
                operation, signal, number, wait, stats
            ),
        )
        pending: Retryable | None = first
        try:
            async for try_ in retrying:
                with try_:
                    if pending is not None:
                        # Replay the first failure so that tenacity counts it and waits after it.
                        signal, pending = pending, None
                        raise signal
                    try:
                        return await attempt()
                    except TwilioNumbersError as error:
                        raise decide(error) from None
        except Retryable as last:
            if isinstance(last.error, RateLimitedError) and self.limiter is not None:
                # No retry follows, so before_sleep never paused for this 429: everyone else
                # sharing the limiter must still back off.
                self.limiter.pause(self.policy.delay_for(last.error, 1))
            return await give_up(last)
        raise AssertionError("unreachable: tenacity either returns or raises")


def retry_unless_rejected(error: TwilioNumbersError) -> Retryable:
    """``decide`` for a request that is safe to repeat whatever happened to it (a GET)."""
    kind = classify(error)
    if kind is FailureKind.REJECTED:
        raise error
    return Retryable(error, kind)


async def raise_last(last: Retryable) -> NoReturn:
    """``give_up`` that reports the last failure as it is."""
    raise last.error


async def purchase_safely(
    request: PurchaseRequest,
    *,
    account_sid: str,
    post: Callable[[], Awaitable[IncomingPhoneNumber]],
    find: Callable[[str], Awaitable[IncomingPhoneNumber | None]],
    retrier: Retrier,
    stats: PurchaseStats,
    in_doubt: BaseException | None = None,
) -> IncomingPhoneNumber:
    """Buy ``request`` with ``post()``, reconciling through ``find(phone_number)``.

    Returns the number bought; raises what Twilio or the network said once retrying can't help,
    or :class:`PurchaseOutcomeUnknownError` when the purchase may have happened and could not be
    checked. ``stats`` is updated as the purchase proceeds.

    ``in_doubt`` says an earlier attempt (a run that died, say) may already have bought it, and
    why: the purchase then starts as if its last attempt's outcome were unknown.
    """
    run = _PurchaseRun(request, account_sid, post, find, stats)
    if in_doubt is not None:
        run.doubt(in_doubt)
    return await retrier.run(
        "purchase", run.attempt, decide=run.decide, give_up=run.give_up, stats=stats
    )


@attrs.define
class _PurchaseRun:
    request: PurchaseRequest
    account_sid: str
    post: Callable[[], Awaitable[IncomingPhoneNumber]]
    find: Callable[[str], Awaitable[IncomingPhoneNumber | None]]
    stats: PurchaseStats
    #: Why an attempt's outcome is unknown, once one is: kept to the end, for the 21422 rule,
    #: the last look-up, and as the cause of a PurchaseOutcomeUnknownError.
    doubted: BaseException | None = None
    #: Whether a look-up must come before the next POST: an unknown outcome since the last
    #: look-up. A look-up that finds nothing clears it; a later 21422 still looks again.
    look_first: bool = False

    async def attempt(self) -> IncomingPhoneNumber:
        if self.look_first:
            if (found := await self.reconcile()) is not None:
                return found
            self.look_first = False
        self.stats.attempts += 1
        try:
            return await self.post()
        except TwilioApiError as error:
            if error.code != _NOT_AVAILABLE or self.doubted is None:
                raise
            # Most likely our own earlier attempt bought it.
            if (found := await self.reconcile()) is None:
                raise
            return found

    def decide(self, error: TwilioNumbersError) -> Retryable:
        kind = classify(error)
        if kind is FailureKind.REJECTED:
            raise error
        if kind is FailureKind.UNKNOWN:
            self.doubt(error)
        return Retryable(error, kind)

    def doubt(self, cause: BaseException) -> None:
        """Note that the purchase may have happened, because of ``cause``."""
        if self.request.phone_number is None:
            # An area-code purchase leaves nothing to look up: another POST could buy a second
            # number.
            raise PurchaseOutcomeUnknownError(
                self.request, cause, account_sid=self.account_sid
            ) from cause
        self.doubted = cause
        self.look_first = True
        self.stats.in_doubt = True

    async def give_up(self, last: Retryable) -> IncomingPhoneNumber:
        # Out of attempts, but an attempt of unknown outcome may still have bought it.
        if self.doubted is not None and (found := await self.reconcile()) is not None:
            return found
        raise last.error

    async def reconcile(self) -> IncomingPhoneNumber | None:
        """The number if the account owns it now; raises if the look-up itself fails."""
        assert self.doubted is not None  # noqa: S101 - only called after an unknown outcome
        assert self.request.phone_number is not None  # noqa: S101 - doubt() saw to that
        try:
            found = await self.find(self.request.phone_number)
        except Exception as exc:
            # Whatever stopped the look-up (Twilio, the network, a client closed meanwhile),
            # the purchase may have happened: that, not the look-up's failure, is the news.
            raise PurchaseOutcomeUnknownError(
                self.request, self.doubted, account_sid=self.account_sid
            ) from exc
        if found is not None:
            self.stats.reconciled = True
            logger.info(
                "purchase of %s: found on %s after an attempt of unknown outcome",
                self.request.phone_number,
                self.account_sid,
            )
        return found
