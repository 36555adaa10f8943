"""Buying many numbers: a streaming ``purchase_many`` that loses no result, and its outcomes.

``purchase_many`` pulls requests lazily from any iterable or async iterable (never more than
``concurrency`` ahead of the purchases in flight, so memory stays flat however long the input),
buys each through the client (its limiter, concurrency cap and retry rules), and yields one
:class:`PurchaseOutcome` per request as each completes. With a journal (see ``_journal``) a run
that dies half way can be run again with the same input: what is done is not sent again, and
what was in flight is reconciled rather than repeated.

This module knows the client only through the purchase engine it is given, and gets a result
back from it: nothing here calls back into the client.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from typing import Final

import attrs

from ._journal import Journal
from ._purchase import PurchaseEngine, PurchaseResult
from ._serde import OutcomeRecord, encode_form, error_record
from ._sids import check_count
from .errors import (
    AuthenticationError,
    ClientClosedError,
    PurchaseOutcomeUnknownError,
    ResponseParseError,
    TwilioNumbersError,
)
from .models import IncomingPhoneNumber, MobileNumberPurchase, NumberPurchase, PurchaseRequest
from .retry import FailureKind, classify

__all__ = ["BulkProgress", "OutcomeStatus", "PurchaseOutcome"]


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
        if self.number is not None or (
            isinstance(self.error, ResponseParseError) and self.error.sid is not None
        ):
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


async def purchase_many(
    engine: PurchaseEngine,
    requests: Iterable[PurchaseRequest] | AsyncIterable[PurchaseRequest],
    *,
    account_sid: str,
    concurrency: int = 8,
    journal: str | os.PathLike[str] | None = None,
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
                job = _Job(engine, account_sid, request, index, book)
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
            if isinstance(outcome.error, ClientClosedError):
                # Every request taken from now on would be refused the same way: stop taking.
                failure, exhausted = failure or outcome.error, True
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
    engine: PurchaseEngine
    account_sid: str
    request: PurchaseRequest
    index: int
    journal: Journal | None
    key: str | None = None
    form: bytes = b""
    #: Whether this run wrote the request's intent to the journal.
    intent_written: bool = False

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
        in_doubt: BaseException | None = None
        if self._in_flight_before():
            # An earlier run died with this request in flight: its POST may have bought the
            # number, and may even still be on its way to Twilio.
            in_doubt = RuntimeError(
                "an earlier run stopped while this purchase was in flight (its journal has the "
                "intent but no outcome)"
            )
        purchase = self.engine.start(
            self.request,
            self.account_sid,
            in_doubt=in_doubt,
            before_send=self._write_intent if self.journal is not None else None,
        )
        try:
            result = await purchase.run()
        except asyncio.CancelledError as stopped:
            if self.journal is not None and self.key is not None and not purchase.maybe_bought:
                # Stopped before its POST left (or after answers that bought nothing): the next
                # run sends it as new rather than looking for a purchase that never happened.
                self.journal.record_not_sent(self.key, index=self.index, cause=stopped)
            raise
        except Exception as exc:
            if not purchase.maybe_bought:
                raise  # nothing was sent for it: the failure is the run's, not the purchase's
            # A POST went out, then something unforeseen: it may have bought the number.
            unknown = PurchaseOutcomeUnknownError(self.request, exc, account_sid=self.account_sid)
            unknown.__cause__ = exc
            result = PurchaseResult(error=unknown, attempts=purchase.attempts)
        outcome = PurchaseOutcome(
            index=self.index,
            request=self.request,
            number=result.number,
            error=result.error,
            attempts=result.attempts,
            reconciled=result.reconciled,
        )
        if self.journal is not None and self.key is not None:
            await self.journal.record_outcome(self.key, _outcome_record(outcome, result))
        return outcome

    def _in_flight_before(self) -> bool:
        """Whether the journal holds an earlier run's intent for this request, and no outcome."""
        return (
            self.journal is not None
            and self.key is not None
            and not self.intent_written
            and self.journal.state(self.key) == "in_flight"
        )

    async def _write_intent(self, sent: PurchaseRequest) -> None:
        """Record, before the first POST leaves (after its slot and token), what it sends."""
        if self.intent_written or self.journal is None or self.key is None:
            return
        if self._in_flight_before():
            return  # the earlier run's intent stands
        await self.journal.record_intent(
            self.key,
            index=self.index,
            account_sid=self.account_sid,
            endpoint=sent.endpoint,
            form=encode_form(sent),
        )
        self.intent_written = True


def _outcome_record(outcome: PurchaseOutcome, result: PurchaseResult) -> OutcomeRecord:
    resend = _safe_to_resend(outcome)
    return OutcomeRecord(
        index=outcome.index,
        status=outcome.status.value,
        attempts=outcome.attempts,
        reconciled=outcome.reconciled,
        resend=resend,
        # Not found when last looked for, after an attempt of unknown outcome: it may still
        # show up bought, so the next run looks before it sends, and reads a 21422 as ours.
        in_doubt=resend and result.in_doubt,
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
    return (
        outcome.attempts == 0  # nothing was sent (a closed client, a limiter that said no)
        or isinstance(error, AuthenticationError)
        or classify(error) is not FailureKind.REJECTED
    )


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
