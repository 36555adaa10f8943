"""Buying many numbers: a streaming ``purchase_many`` that loses no result, and its outcomes.

``purchase_many`` pulls requests lazily from any iterable or async iterable (never more than
``concurrency`` ahead of the purchases in flight, so memory stays flat however long the input),
buys each through the client (its limiter, concurrency cap and retry rules), and yields one
:class:`PurchaseOutcome` per request as each completes. With a journal (see ``_journal``) a run
that dies half way can be run again with the same input: what is done is not sent again, and
what was in flight is reconciled rather than repeated.

This module knows the client only through :class:`Buyer`, so that nothing imports the client
back.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from typing import Final, Protocol

import attrs

from ._journal import Journal
from ._purchase import PurchaseStats
from ._serde import OutcomeRecord, encode_form, error_record
from ._sids import check_count, check_sid
from .errors import (
    AuthenticationError,
    PurchaseOutcomeUnknownError,
    ResponseParseError,
    TwilioNumbersError,
)
from .models import IncomingPhoneNumber, MobileNumberPurchase, NumberPurchase, PurchaseRequest
from .retry import FailureKind, classify

__all__ = ["BulkProgress", "Buyer", "OutcomeStatus", "PurchaseOutcome", "purchase_many"]


class OutcomeStatus(enum.StrEnum):
    """Whether a request's number was bought, as far as anyone can know."""

    #: Bought: ``number`` is set (or, rarely, ``error`` is a ResponseParseError naming its SID).
    BOUGHT = "bought"
    #: Certainly not bought: ``error`` says why.
    FAILED = "failed"
    #: Maybe bought, and it could not be checked: look at the account before buying again.
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class PurchaseOutcome:
    """How one request of a bulk purchase ended."""

    #: The request's position in the input, from 0.
    index: int
    request: PurchaseRequest
    number: IncomingPhoneNumber | None = None
    error: TwilioNumbersError | None = None
    #: POSTs sent for it (0 when it was settled by a look-up alone; from the journal, the
    #: count the earlier run recorded).
    attempts: int = 0
    #: Whether the number was found on the account after an attempt of unknown outcome.
    reconciled: bool = False
    #: Whether this outcome was read from the journal of an earlier run rather than bought now.
    from_journal: bool = False

    @property
    def ok(self) -> bool:
        """Whether the number was bought and read: ``number`` is set."""
        return self.number is not None

    @property
    def status(self) -> OutcomeStatus:
        """Bought, failed or unknown."""
        if self.number is not None or isinstance(self.error, ResponseParseError):
            return OutcomeStatus.BOUGHT
        if isinstance(self.error, PurchaseOutcomeUnknownError):
            return OutcomeStatus.UNKNOWN
        return OutcomeStatus.FAILED


@attrs.define
class BulkProgress:
    """Counters a progress display can poll while ``purchase_many`` runs."""

    #: Requests taken from the input so far.
    started: int = 0
    #: Outcomes yielded so far, by status.
    bought: int = 0
    failed: int = 0
    unknown: int = 0
    #: Of the outcomes yielded, how many came from the journal of an earlier run.
    from_journal: int = 0

    @property
    def done(self) -> int:
        """Outcomes yielded so far."""
        return self.bought + self.failed + self.unknown

    @property
    def in_flight(self) -> int:
        """Requests taken but not yet finished."""
        return self.started - self.done

    def count(self, outcome: PurchaseOutcome) -> None:
        """Add one outcome to the counters."""
        status = outcome.status
        if status is OutcomeStatus.BOUGHT:
            self.bought += 1
        elif status is OutcomeStatus.FAILED:
            self.failed += 1
        else:
            self.unknown += 1
        self.from_journal += outcome.from_journal


class Buyer(Protocol):
    """What ``purchase_many`` needs of a client."""

    @property
    def account_sid(self) -> str: ...

    async def purchase_tracked(
        self,
        request: PurchaseRequest,
        stats: PurchaseStats,
        *,
        account_sid: str | None = None,
        in_doubt: BaseException | None = None,
    ) -> IncomingPhoneNumber: ...


async def purchase_many(
    buyer: Buyer,
    requests: Iterable[PurchaseRequest] | AsyncIterable[PurchaseRequest],
    *,
    concurrency: int = 8,
    journal: str | os.PathLike[str] | None = None,
    account_sid: str | None = None,
    progress: BulkProgress | None = None,
) -> AsyncGenerator[PurchaseOutcome, None]:
    """Buy every request, yielding one :class:`PurchaseOutcome` each, in completion order.

    At most ``concurrency`` purchases run at once (the client's own ``max_concurrency`` and
    limiter still apply). An error of one request is its outcome's ``error``; it never stops the
    others. ``journal`` is a path for a crash-safe record (see the module's docstring); running
    again with the same journal and input yields what is done with ``from_journal=True`` and
    sends nothing for it, with one exception: a failure Twilio certainly never processed (bad
    credentials, 429s or refused connections that outlasted the retries, a given number looked
    up and not found) is tried again. ``progress``, if given, is updated as outcomes are
    yielded.

    Close the generator early (``aclose()``, or ``break`` inside ``async with
    contextlib.aclosing(...)``) or cancel its task to stop: purchases in flight are cancelled
    and awaited before it returns, and the journal stays consistent. To stop without cutting
    purchases off, end the input instead: what is in flight finishes and is yielded. If the
    input itself fails (its iterator raises, or an item is not a request), taking stops the
    same way, and the error is raised once what was in flight has been yielded.
    """
    check_count("concurrency", concurrency)
    # Checked before the journal opens: a bad SID would otherwise fail, and record, every request.
    account = (
        buyer.account_sid if account_sid is None else check_sid("account_sid", account_sid, "AC")
    )
    counters = progress if progress is not None else BulkProgress()
    # Reading a long journal is file I/O: keep it off the event loop.
    book = await asyncio.to_thread(Journal.open, journal) if journal is not None else None
    source = _aiter(requests)
    finished: asyncio.Queue[asyncio.Task[PurchaseOutcome]] = asyncio.Queue()
    running: set[asyncio.Task[PurchaseOutcome]] = set()
    index = 0
    exhausted = False
    #: What stopped the taking of requests, or a job, unexpectedly: raised once the rest is in.
    failure: Exception | None = None
    try:
        while True:
            while not exhausted and len(running) < concurrency:
                try:
                    request = await _next_request(source, index)
                except Exception as exc:
                    # Purchases in flight may be buying: let them finish and be reported.
                    failure, exhausted = exc, True
                    break
                if request is None:
                    exhausted = True
                    break
                counters.started += 1
                job = _Job(buyer, account, request, index, book)
                index += 1
                if (recorded := job.recorded()) is not None:
                    counters.count(recorded)
                    yield recorded
                    continue
                task = asyncio.create_task(job.run(), name=f"purchase #{job.index}")
                running.add(task)
                task.add_done_callback(finished.put_nowait)
            if not running:
                break
            task = await finished.get()
            running.discard(task)
            try:
                outcome = task.result()
            except Exception as exc:  # a job's journal write failed, or a bug
                failure, exhausted = failure or exc, True
                continue
            counters.count(outcome)
            yield outcome
        if failure is not None:
            raise failure
    finally:
        await _wind_up(running, source, book)


async def _wind_up(
    running: set[asyncio.Task[PurchaseOutcome]],
    source: AsyncGenerator[object, None],
    book: Journal | None,
) -> None:
    """Leave nothing running: reached at the end, on aclose(), cancellation or an error."""
    for task in running:
        task.cancel()
    if running:
        await asyncio.gather(*running, return_exceptions=True)
    await source.aclose()
    if book is not None:
        await book.close()


async def _next_request(source: AsyncIterator[object], index: int) -> PurchaseRequest | None:
    """The input's next request, checked; ``None`` at its end (a ``None`` item is refused)."""
    item = await anext(source, _END)
    return None if item is _END else _checked(item, index)


@attrs.define
class _Job:
    buyer: Buyer
    account_sid: str
    request: PurchaseRequest
    index: int
    journal: Journal | None
    key: str | None = None
    form: bytes = b""

    def __attrs_post_init__(self) -> None:
        if self.journal is not None:
            self.form = encode_form(self.request)
            endpoint = self.request.endpoint
            occurrence = self.journal.next_occurrence(self.account_sid, endpoint, self.form)
            self.key = self.journal.key(self.account_sid, endpoint, self.form, occurrence)

    def recorded(self) -> PurchaseOutcome | None:
        """The outcome an earlier run recorded for this request, if it finished."""
        if self.journal is None or self.key is None or self.journal.state(self.key) != "done":
            return None
        # Read and checked when the journal opened, before anything was sent.
        record = self.journal.recorded_outcome(self.key)
        return PurchaseOutcome(
            index=self.index,
            request=self.request,
            number=record.number,
            error=record.error.rebuild(self.request) if record.error is not None else None,
            attempts=record.attempts,
            reconciled=record.reconciled,
            from_journal=True,
        )

    async def run(self) -> PurchaseOutcome:
        stats = PurchaseStats()
        try:
            number = await self._settle(stats)
        except TwilioNumbersError as error:
            outcome = self._outcome(stats, error=error)
        except Exception as exc:
            if not stats.attempts:
                raise  # nothing was sent for it: the failure is the run's, not the purchase's
            # A POST went out, then something unforeseen: it may have bought the number.
            unknown = PurchaseOutcomeUnknownError(self.request, exc, account_sid=self.account_sid)
            unknown.__cause__ = exc
            outcome = self._outcome(stats, error=unknown)
        else:
            outcome = self._outcome(stats, number=number)
        if self.journal is not None and self.key is not None:
            await self.journal.record_outcome(self.key, _outcome_record(outcome, stats))
        return outcome

    async def _settle(self, stats: PurchaseStats) -> IncomingPhoneNumber:
        in_doubt: BaseException | None = None
        if self.journal is not None and self.key is not None:
            if self.journal.state(self.key) == "in_flight":
                # An earlier run died with this request in flight: its POST may have bought the
                # number, and may even still be on its way to Twilio.
                in_doubt = RuntimeError(
                    "an earlier run stopped while this purchase was in flight (its journal has "
                    "the intent but no outcome)"
                )
            else:
                await self.journal.record_intent(
                    self.key,
                    index=self.index,
                    account_sid=self.account_sid,
                    endpoint=self.request.endpoint,
                    form=self.form,
                )
        return await self.buyer.purchase_tracked(
            self.request, stats, account_sid=self.account_sid, in_doubt=in_doubt
        )

    def _outcome(
        self,
        stats: PurchaseStats,
        *,
        number: IncomingPhoneNumber | None = None,
        error: TwilioNumbersError | None = None,
    ) -> PurchaseOutcome:
        return PurchaseOutcome(
            index=self.index,
            request=self.request,
            number=number,
            error=error,
            attempts=stats.attempts,
            reconciled=stats.reconciled,
        )


def _outcome_record(outcome: PurchaseOutcome, stats: PurchaseStats) -> OutcomeRecord:
    resend = _safe_to_resend(outcome)
    return OutcomeRecord(
        index=outcome.index,
        status=outcome.status.value,
        attempts=outcome.attempts,
        reconciled=outcome.reconciled,
        resend=resend,
        # Not found when last looked for, after an attempt of unknown outcome: it may still
        # show up bought, so the next run looks before it sends, and reads a 21422 as ours.
        in_doubt=resend and stats.in_doubt,
        number=outcome.number,
        error=error_record(outcome.error) if outcome.error is not None else None,
    )


def _safe_to_resend(outcome: PurchaseOutcome) -> bool:
    """Whether a later run may send this request again: it failed, and Twilio certainly never
    processed it (bad credentials, 429s or refused connections that outlasted the retries, or a
    given number that was looked up afterwards and not found). Refusals such as 21422 are final:
    sending them again would only be refused again."""
    error = outcome.error
    if outcome.status is not OutcomeStatus.FAILED or error is None:
        return False
    return isinstance(error, AuthenticationError) or classify(error) is not FailureKind.REJECTED


#: What ``anext`` gives back at the end of the input; an object of our own, so that no item of
#: the input (``None`` included) can be mistaken for the end.
_END: Final = object()


def _checked(request: object, index: int) -> PurchaseRequest:
    if not isinstance(request, NumberPurchase | MobileNumberPurchase):
        raise TypeError(
            f"requests[{index}] is a {type(request).__name__}; purchase_many takes "
            "NumberPurchase and MobileNumberPurchase objects"
        )
    return request


async def _aiter(
    requests: Iterable[PurchaseRequest] | AsyncIterable[PurchaseRequest],
) -> AsyncGenerator[PurchaseRequest, None]:
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield request
    else:
        for request in requests:
            yield request
