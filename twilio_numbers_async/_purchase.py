"""The purchase engine: one purchase, carried out so that a number is never bought twice nor lost.

:meth:`PurchaseEngine.start` returns a :class:`Purchase`; its :meth:`~Purchase.run` returns a
:class:`PurchaseResult` (the number or the error, the attempts, whether it was reconciled) and
raises only on cancellation. The client and ``purchase_many`` both call it and get a result
back; the engine calls nothing above it. The rules (``retry.classify`` sorts the failures):

- not processed (429, connect failure): wait and send again; a 429 pauses the shared limiter so
  that every coroutine backs off, not only this one;
- unknown (5xx, timeout, dropped connection, a 2xx naming no number): a ``phone_number``
  purchase is looked up on the account before anything else is sent: owned means it was bought
  (returned as *reconciled*), not owned means it is safe to send again. An ``area_code``
  purchase can't be looked up, so it ends in :class:`PurchaseOutcomeUnknownError` rather than a
  blind retry that could buy a second number;
- a 21422 ("not available") after an unknown attempt most likely means that attempt bought it:
  look once more, and report the 21422 only if the number is not on the account;
- when the retries run out after an unknown attempt, look one last time before giving up.

Everything (attempts, waits, look-ups, waits for a limiter token) spends one budget: the retry
policy's ``max_elapsed`` from the start of the purchase.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from ._retrying import Budget, Retrier, Retryable
from ._serde import encode_form, parse_number
from .errors import (
    PurchaseOutcomeUnknownError,
    ResponseParseError,
    TwilioApiError,
    TwilioNumbersError,
)
from .retry import FailureKind, classify

if TYPE_CHECKING:
    from ._gateway import Gateway
    from ._settings import Settings
    from .models import IncomingPhoneNumber, PurchaseRequest

__all__ = ["BeforeSend", "Find", "Purchase", "PurchaseEngine", "PurchaseResult"]

logger = logging.getLogger("twilio_numbers_async")

#: How the engine looks a number up: ``find(phone_number, account_sid, budget)``.
Find = Callable[[str, str, Budget], Awaitable["IncomingPhoneNumber | None"]]
#: Called with the request about to be POSTed, after every wait, just before it leaves.
BeforeSend = Callable[["PurchaseRequest"], Awaitable[None]]

_NOT_AVAILABLE = 21422


@attrs.frozen(kw_only=True)
class PurchaseResult:
    """How a purchase ended: ``number`` or ``error``, never both."""

    number: IncomingPhoneNumber | None = None
    error: TwilioNumbersError | None = None
    #: POSTs sent (look-ups not counted).
    attempts: int = 0
    #: Whether the number was found on the account after an attempt of unknown outcome.
    reconciled: bool = False
    #: Whether some attempt's outcome was unknown and the last look-up did not find it: Twilio
    #: may yet show the number bought, so whoever sends it again must look first.
    in_doubt: bool = False


class PurchaseEngine:
    """Buys numbers for one client through its gateway, retry loop and look-up."""

    def __init__(
        self, *, gateway: Gateway, retrier: Retrier, find: Find, settings: Settings
    ) -> None:
        self.gateway = gateway
        self.retrier = retrier
        self.find = find
        self.settings = settings

    def start(
        self,
        request: PurchaseRequest,
        account_sid: str,
        *,
        in_doubt: BaseException | None = None,
        before_send: BeforeSend | None = None,
    ) -> Purchase:
        """A purchase of ``request`` on ``account_sid``, ready to :meth:`~Purchase.run`.

        ``in_doubt`` says why an earlier attempt, outside this purchase, may already have
        bought the number (a run that died with it in flight): a given number is then looked up
        before anything is sent, and an area code is reported as unknown at once.
        """
        return Purchase(self, request, account_sid, in_doubt, before_send)


class Purchase:
    """One purchase in progress. :attr:`maybe_bought` tells a cancelled caller what it left."""

    def __init__(
        self,
        engine: PurchaseEngine,
        request: PurchaseRequest,
        account_sid: str,
        in_doubt: BaseException | None,
        before_send: BeforeSend | None,
    ) -> None:
        self._engine = engine
        self.request = request
        self.account_sid = account_sid
        self._in_doubt = in_doubt
        self._before_send = before_send
        self._url = engine.settings.url(account_sid, request.endpoint)
        self._body = encode_form(request)
        self.attempts = 0
        self.reconciled = False
        #: Why an attempt's outcome is unknown, once one is: kept to the end, for the 21422
        #: rule, the last look-up, and as the cause of a PurchaseOutcomeUnknownError.
        self._doubted: BaseException | None = None
        #: Whether a look-up must come before the next POST: an unknown outcome since the last
        #: look-up. A look-up that finds nothing clears it; a later 21422 still looks again.
        self._look_first = False
        #: Whether a POST left and no answer has yet said it bought nothing.
        self._unanswered = False

    @property
    def maybe_bought(self) -> bool:
        """Whether this purchase may have bought its number so far: a POST left without an
        answer that says otherwise, or an earlier attempt's outcome is in doubt."""
        return self._unanswered or self._doubted is not None or self._in_doubt is not None

    async def run(self) -> PurchaseResult:
        """Carry the purchase out; raises nothing but cancellation."""
        budget = Budget.start(self._engine.retrier.policy)
        try:
            if self._in_doubt is not None:
                self._doubt(self._in_doubt)
            number = await self._engine.retrier.run(
                "purchase",
                lambda: self._attempt(budget),
                decide=self._decide,
                give_up=lambda last: self._give_up(last, budget),
                budget=budget,
            )
        except TwilioNumbersError as error:
            return self._result(error=error)
        return self._result(number=number)

    def _result(
        self,
        *,
        number: IncomingPhoneNumber | None = None,
        error: TwilioNumbersError | None = None,
    ) -> PurchaseResult:
        return PurchaseResult(
            number=number,
            error=error,
            attempts=self.attempts,
            reconciled=self.reconciled,
            in_doubt=number is None and self._doubted is not None,
        )

    async def _attempt(self, budget: Budget) -> IncomingPhoneNumber:
        if self._look_first:
            if (found := await self._reconcile(budget)) is not None:
                return found
            self._look_first = False
        try:
            response = await self._engine.gateway.send(
                "POST", self._url, self._body, budget=budget, before_send=self._sending
            )
            return parse_number(response.status, response.body)
        except TwilioApiError as error:
            if error.code != _NOT_AVAILABLE or self._doubted is None:
                raise
            # Most likely our own earlier attempt bought it.
            if (found := await self._reconcile(budget)) is None:
                raise
            return found

    async def _sending(self) -> None:
        if self._before_send is not None:
            await self._before_send(self.request)
        self.attempts += 1
        self._unanswered = True

    def _decide(self, error: TwilioNumbersError) -> Retryable:
        kind = classify(error)
        if kind is FailureKind.NOT_PROCESSED or (
            kind is FailureKind.REJECTED and not isinstance(error, ResponseParseError)
        ):
            # Twilio's answer says this attempt bought nothing (or it never left).
            self._unanswered = False
        if kind is FailureKind.REJECTED:
            raise error
        if kind is FailureKind.UNKNOWN:
            self._doubt(error)
        return Retryable(error, kind)

    def _doubt(self, cause: BaseException) -> None:
        """Note that the purchase may have happened, because of ``cause``."""
        if self.request.phone_number is None:
            # An area-code purchase leaves nothing to look up: another POST could buy a second
            # number.
            raise PurchaseOutcomeUnknownError(
                self.request, cause, account_sid=self.account_sid
            ) from cause
        self._doubted = cause
        self._look_first = True

    async def _give_up(self, last: Retryable, budget: Budget) -> IncomingPhoneNumber:
        # Out of attempts, but an attempt of unknown outcome may still have bought it.
        if self._doubted is not None and (found := await self._reconcile(budget)) is not None:
            return found
        raise last.error

    async def _reconcile(self, budget: Budget) -> IncomingPhoneNumber | None:
        """The number if the account owns it now; raises if the look-up itself fails."""
        assert self._doubted is not None  # noqa: S101 - only called after an unknown outcome
        assert self.request.phone_number is not None  # noqa: S101 - _doubt() saw to that
        try:
            found = await self._engine.find(self.request.phone_number, self.account_sid, budget)
        except Exception as exc:
            # Whatever stopped the look-up (Twilio, the network, a client closed meanwhile),
            # the purchase may have happened: that, not the look-up's failure, is the news.
            raise PurchaseOutcomeUnknownError(
                self.request, self._doubted, account_sid=self.account_sid
            ) from exc
        if found is not None:
            self.reconciled = True
            logger.info(
                "purchase of %s: found on %s after an attempt of unknown outcome",
                self.request.phone_number,
                self.account_sid,
            )
        return found
