"""The purchase engine: one purchase, carried out so that a number is never bought twice nor lost.

:meth:`PurchaseEngine.start` returns a :class:`Purchase`; its :meth:`~Purchase.run` returns a
:class:`PurchaseResult` (the number or the error, the attempts, whether it was reconciled) and
raises only on cancellation. The client and ``purchase_many`` both call it and get a result
back; the engine calls nothing above it. The rules (``retry.classify`` sorts the failures):

- not processed (429, connect failure): wait and send again; a 429 with ``Retry-After`` pauses
  the shared limiter so that every coroutine backs off, not only this one (one without it
  lowers the adaptive limit instead);
- unknown (5xx, timeout, dropped connection, a 2xx naming no number): the number is looked up
  on the account before anything else is sent: owned means it was bought (returned as
  *reconciled*), not owned means it is safe to send again;
- a 21422 ("not available") after an unknown attempt most likely means that attempt bought it:
  look once more; not on the account, the 21422 stands (for an area code's candidate, the
  outcome stays unknown: moving on could buy a second number);
- no POST starts once the budget (``max_elapsed``) is spent;
- when the retries run out after an unknown attempt, look one last time before giving up;
- a 2xx that can't be read but names its SID: fetch the number by SID.

An area code is bought as a given number (``area_codes="search"``, the default): a candidate
from a search (see ``_candidates``) is POSTed as ``PhoneNumber``, so that every rule above
applies; a 21422 for a candidate nobody of ours may have bought means someone else took it:
the next candidate, no doubt. With ``area_codes="direct"`` the area code is POSTed as it is,
and an unknown outcome can't be looked up: it ends in :class:`PurchaseOutcomeUnknownError`
rather than a blind retry that could buy a second number.

Everything (attempts, waits, look-ups, searches, waits for a limiter token) spends one budget:
the retry policy's ``max_elapsed`` from the start of the purchase.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Literal

import attrs

from ._nanp import TOLL_FREE_AREA_CODES, country_of_area_code
from ._reads import Reads, Search
from ._retrying import Budget, Retrier, Retryable
from ._serde import encode_form, parse_number
from .errors import (
    ClientClosedError,
    PurchaseOutcomeUnknownError,
    ResponseParseError,
    TwilioApiError,
    TwilioNumbersError,
)
from .models import NumberPurchase, VoiceReceiveMode
from .retry import FailureKind, classify

if TYPE_CHECKING:
    from ._candidates import CandidatePools, Ending
    from ._gateway import Gateway
    from ._settings import Settings
    from .models import IncomingPhoneNumber, MobileNumberPurchase, PurchaseRequest

__all__ = [
    "AreaCodes",
    "BeforeSend",
    "InDoubt",
    "Purchase",
    "PurchaseEngine",
    "PurchaseResult",
]

logger = logging.getLogger("twilio_numbers_async")

#: How an area code is bought: through a search ("search") or by POSTing it ("direct").
AreaCodes = Literal["search", "direct"]
#: Called with the request about to be POSTed (for an area code, its candidate as a given
#: number), after every wait, just before it leaves.
BeforeSend = Callable[["PurchaseRequest"], Awaitable[None]]

_NOT_AVAILABLE: Final = 21422
_NO_NUMBERS: Final = 21452
#: "Resource not accessible with Test Account Credentials": a search, with test credentials.
_TEST_CREDENTIALS: Final = 20008
#: Candidates one area-code purchase tries, each taken by someone else, before it gives up.
_MOST_CANDIDATES: Final = 20
#: Candidates one search of a pool asks for: enough that a search serves many purchases.
_SEARCH_SIZE: Final = 100


@attrs.frozen
class InDoubt:
    """An earlier attempt, outside this purchase, may already have bought it (a run that died
    with it in flight): ``cause`` says why; ``phone_number`` is the number it was buying (for
    an area code, its candidate), if known."""

    cause: BaseException
    phone_number: str | None = None


@attrs.frozen(kw_only=True)
class PurchaseResult:
    """How a purchase ended: ``number`` or ``error``, never both."""

    number: IncomingPhoneNumber | None = None
    error: TwilioNumbersError | None = None
    #: POSTs sent (look-ups and searches not counted).
    attempts: int = 0
    #: Whether the number was found on the account after an attempt of unknown outcome.
    reconciled: bool = False
    #: Whether some attempt's outcome was unknown and the last look-up did not find it: Twilio
    #: may yet show the number bought, so whoever sends it again must look first.
    in_doubt: bool = False
    #: The number an area-code purchase was buying last (its candidate), if any.
    candidate: str | None = None


class PurchaseEngine:
    """Buys numbers for one client through its gateway, retry loop and look-ups."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        retrier: Retrier,
        reads: Reads,
        pools: CandidatePools,
        settings: Settings,
        area_codes: AreaCodes = "search",
    ) -> None:
        self.gateway = gateway
        self.retrier = retrier
        self.reads = reads
        self.pools = pools
        self.settings = settings
        self.area_codes = area_codes

    def start(
        self,
        request: NumberPurchase | MobileNumberPurchase,
        account_sid: str,
        *,
        in_doubt: InDoubt | None = None,
        before_send: BeforeSend | None = None,
    ) -> Purchase:
        """A purchase of ``request`` on ``account_sid``, ready to :meth:`~Purchase.run`."""
        return Purchase(self, request, account_sid, in_doubt, before_send)


class _Taken(Exception):  # noqa: N818 - a signal inside the engine, never seen by callers
    """A candidate was refused as not available, and nothing of ours may have bought it."""

    def __init__(self, error: TwilioApiError) -> None:
        super().__init__(str(error))
        self.error = error


class _OutOfTime(Exception):  # noqa: N818 - a signal inside the engine, never seen by callers
    """The budget ran out after a look-up found nothing: no new POST may start. ``error`` is
    the failure of the last attempt, which the caller sees."""

    def __init__(self, error: TwilioNumbersError) -> None:
        super().__init__(str(error))
        self.error = error


class Purchase:
    """One purchase in progress. :attr:`maybe_bought` tells a cancelled caller what it left."""

    def __init__(
        self,
        engine: PurchaseEngine,
        request: NumberPurchase | MobileNumberPurchase,
        account_sid: str,
        in_doubt: InDoubt | None,
        before_send: BeforeSend | None,
    ) -> None:
        self._engine = engine
        self.request = request
        self.account_sid = account_sid
        self._in_doubt = in_doubt
        self._before_send = before_send
        self.attempts = 0
        self.reconciled = False
        #: The number being bought now: the request's, or the area code's candidate.
        self._number: NumberPurchase | MobileNumberPurchase = request
        #: Why the current number's outcome is unknown, once it is: kept to the end, for the
        #: 21422 rule, the last look-up, and as the cause of a PurchaseOutcomeUnknownError.
        self._doubted: BaseException | None = None
        #: Whether a look-up must come before the next POST: an unknown outcome since the last
        #: look-up. A look-up that finds nothing clears it; a later 21422 still looks again.
        self._look_first = False
        #: Whether a POST left and no answer has yet said it bought nothing.
        self._unanswered = False
        #: Whether the current attempt was counted (it reached the moment before it leaves).
        self._counted = False

    @property
    def maybe_bought(self) -> bool:
        """Whether this purchase may have bought a number so far: a POST left without an
        answer that says otherwise, or an attempt's outcome (or an earlier run's) is in doubt."""
        return self._unanswered or self._doubted is not None

    async def run(self) -> PurchaseResult:
        """Carry the purchase out; raises nothing but cancellation."""
        budget = Budget.start(self._engine.retrier.policy)
        try:
            if self.request.area_code is not None and self._engine.area_codes == "search":
                number = await self._buy_in_area_code(budget)
            else:
                if self._in_doubt is not None:
                    self._doubt(self._in_doubt.cause)
                number = await self._buy(self.request, budget)
        except TwilioNumbersError as error:
            return self._result(error=error)
        return self._result(number=number)

    def _result(
        self,
        *,
        number: IncomingPhoneNumber | None = None,
        error: TwilioNumbersError | None = None,
    ) -> PurchaseResult:
        candidate = self._number.phone_number if self._number is not self.request else None
        return PurchaseResult(
            number=number,
            error=error,
            attempts=self.attempts,
            reconciled=self.reconciled,
            in_doubt=number is None and self._doubted is not None,
            candidate=candidate,
        )

    # --- an area code, through a search ---------------------------------------------------

    async def _buy_in_area_code(self, budget: Budget) -> IncomingPhoneNumber:
        search = self._search()
        pools = self._engine.pools
        resumed = self._in_doubt
        if resumed is not None and resumed.phone_number is None:
            # An earlier run POSTed the area code itself (as "direct" does): whatever it bought
            # can't be looked up, and a candidate bought now could be a second number.
            raise PurchaseOutcomeUnknownError(
                self.request, resumed.cause, account_sid=self.account_sid
            )
        taken: TwilioApiError | None = None
        for _ in range(_MOST_CANDIDATES):
            if resumed is not None and resumed.phone_number is not None:
                # An earlier run was buying this candidate when it stopped: look it up first,
                # holding it so that no purchase of this run buys it meanwhile.
                held, cause, resumed = resumed.phone_number, resumed.cause, None
                candidate: str | None = held
                try:
                    ours = await pools.hold(self.account_sid, held, budget)
                except TimeoutError:
                    raise PurchaseOutcomeUnknownError(
                        self.request, cause, account_sid=self.account_sid
                    ) from None
                if not ours:
                    continue  # bought by another purchase of this client: not by that attempt
                self._doubted, self._look_first = cause, True
            else:
                try:
                    candidate = await pools.take(search, self.account_sid, budget)
                except TimeoutError:
                    raise self._no_numbers(search, held=True) from None
                except TwilioApiError as error:
                    if error.code != _TEST_CREDENTIALS:
                        raise
                    # Test credentials can't search: they buy Twilio's magic numbers, which
                    # cost nothing, so the area code goes as it is.
                    return await self._buy(self.request, budget)
            if candidate is None:
                raise taken or self._no_numbers(search)
            bought = False
            try:
                bought_number = await self._buy(self._given(candidate), budget)
                bought = True
                return bought_number
            except _Taken as refused:
                taken = refused.error  # someone else bought it first: the next candidate
                self._doubted, self._look_first = None, False
            finally:
                ending: Ending = (
                    "bought" if bought else "in_doubt" if self.maybe_bought else "not_bought"
                )
                pools.done(self.account_sid, candidate, ending)
        assert taken is not None  # noqa: S101 - each turn of the loop returned, raised or set it
        raise taken

    def _given(self, candidate: str) -> NumberPurchase:
        """The request, buying ``candidate``: every other field as the caller set it."""
        assert isinstance(self.request, NumberPurchase)  # noqa: S101 - only one has area codes
        return attrs.evolve(self.request, phone_number=candidate, area_code=None)

    def _search(self) -> Search:
        """The search for this request's candidates: its area code's country (or the toll-free
        list, for 800...), and the capabilities its fields imply (a number for an SMS webhook
        must receive SMS...)."""
        request = self.request
        assert request.area_code is not None  # noqa: S101 - only called for an area code
        sms = request.sms_url is not None or request.sms_application_sid is not None
        voice = request.voice_url is not None or request.voice_application_sid is not None
        toll_free = request.area_code in TOLL_FREE_AREA_CODES
        return Search(
            country="US" if toll_free else country_of_area_code(request.area_code),
            kind="toll_free" if toll_free else "local",
            area_code=request.area_code,
            sms_enabled=True if sms else None,
            voice_enabled=True if voice else None,
            fax_enabled=True if request.voice_receive_mode is VoiceReceiveMode.FAX else None,
            limit=_SEARCH_SIZE,
        )

    def _no_numbers(self, search: Search, *, held: bool = False) -> TwilioApiError:
        message = f"No phone numbers are available in area code {search.area_code}"
        if held:
            message += (
                ": every one found is being bought by another purchase of this client, and "
                "none came free within the retry policy's max_elapsed"
            )
        return TwilioApiError(
            status=400,
            code=_NO_NUMBERS,
            message=message,
            method="GET",
            url=self._engine.settings.url(self.account_sid, search.endpoint()),
        )

    # --- a given number -------------------------------------------------------------------

    async def _buy(
        self, number: NumberPurchase | MobileNumberPurchase, budget: Budget
    ) -> IncomingPhoneNumber:
        self._number = number
        url = self._engine.settings.url(self.account_sid, number.endpoint)
        body = encode_form(number)
        try:
            return await self._engine.retrier.run(
                "purchase",
                lambda: self._attempt(url, body, budget),
                decide=self._decide,
                give_up=lambda last: self._give_up(last, budget),
                budget=budget,
            )
        except _OutOfTime as spent:
            raise spent.error from None

    async def _attempt(self, url: str, body: bytes, budget: Budget) -> IncomingPhoneNumber:
        if self._look_first:
            if (found := await self._reconcile(budget)) is not None:
                return found
            self._look_first = False
            if budget.remaining() <= 0:
                # The look-up took what was left: a POST now would end past max_elapsed.
                raise _OutOfTime(self._last_failure())
        self._counted = False
        try:
            response = await self._engine.gateway.send(
                "POST", url, body, budget=budget, before_send=self._sending
            )
            return parse_number(response.status, response.body)
        except ClientClosedError:
            if self._counted:
                # Closed while the journal wrote the intent (or the caller's session was
                # closed): this attempt never left.
                self.attempts -= 1
                self._unanswered = False
            raise
        except TwilioApiError as error:
            if error.code != _NOT_AVAILABLE:
                raise
            searched = self._number is not self.request
            if self._doubted is None:
                if searched:
                    self._unanswered = False  # refused: this candidate was not bought
                    raise _Taken(error) from None
                raise
            # Most likely our own earlier attempt bought it.
            if (found := await self._reconcile(budget)) is not None:
                return found
            if searched:
                # Ours, not yet listed, or someone else's: only the account can tell, later. A
                # guess would cost a second number (the next candidate); for a given number,
                # the look-up's answer stands (DESIGN): someone else's, the 21422 it is.
                raise PurchaseOutcomeUnknownError(
                    self.request, self._doubted, account_sid=self.account_sid
                ) from error
            raise
        except ResponseParseError as error:
            if error.sid is None:
                raise
            return await self._fetch_unreadable(error, budget)

    async def _fetch_unreadable(
        self, error: ResponseParseError, budget: Budget
    ) -> IncomingPhoneNumber:
        """A 2xx bought a number and named its SID, but could not be read: fetch it."""
        assert error.sid is not None  # noqa: S101 - the caller checked
        try:
            number = await self._engine.reads.fetch(error.sid, self.account_sid, budget)
        except Exception as exc:
            raise PurchaseOutcomeUnknownError(
                self.request, error, account_sid=self.account_sid
            ) from exc
        self.reconciled = True
        return number

    async def _sending(self) -> None:
        if self._before_send is not None:
            await self._before_send(self._number)
        self.attempts += 1
        self._counted = True
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

    def _last_failure(self) -> TwilioNumbersError:
        """What the caller sees when the budget ends after a look-up found nothing: the failure
        that put the purchase in doubt (the result says it stays in doubt)."""
        cause = self._doubted
        assert cause is not None  # noqa: S101 - only after a look-up, only done when in doubt
        if isinstance(cause, TwilioNumbersError):
            return cause
        # An earlier run's attempt (a journal's in-flight intent): only the account can tell.
        return PurchaseOutcomeUnknownError(self.request, cause, account_sid=self.account_sid)

    def _doubt(self, cause: BaseException) -> None:
        """Note that the purchase may have happened, because of ``cause``."""
        if self._number.phone_number is None:
            # An area code POSTed as it is leaves nothing to look up: another POST could buy a
            # second number.
            raise PurchaseOutcomeUnknownError(
                self.request, cause, account_sid=self.account_sid
            ) from cause
        self._doubted = cause
        self._look_first = True

    async def _give_up(self, last: Retryable, budget: Budget) -> IncomingPhoneNumber:
        # Out of attempts, but an attempt of unknown outcome may still have bought it.
        if self._doubted is not None and (found := await self._reconcile(budget)) is not None:
            return found
        if isinstance(last.error, ResponseParseError):
            # Twilio said yes, to what it did not say, and no look-up found it: not "failed".
            raise PurchaseOutcomeUnknownError(
                self.request, last.error, account_sid=self.account_sid
            )
        raise last.error

    async def _reconcile(self, budget: Budget) -> IncomingPhoneNumber | None:
        """The number if the account owns it now; raises if the look-up itself fails."""
        assert self._doubted is not None  # noqa: S101 - only called after an unknown outcome
        phone_number = self._number.phone_number
        assert phone_number is not None  # noqa: S101 - _doubt() saw to that
        try:
            found = await self._engine.reads.find(phone_number, self.account_sid, budget)
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
                phone_number,
                self.account_sid,
            )
        return found
