"""``purchase_many``: a bounded set of purchases over a streamed input, each recorded.

Requests are pulled lazily (never more than ``concurrency`` ahead of the purchases in flight, so
memory stays flat however long the input), each is bought through the client's purchase
engine, and one outcome per request is yielded as each completes. This module knows the client
only through the engine it is given, and gets a result back from it: nothing here calls back
into the client.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from typing import Final
from urllib.parse import parse_qs

import attrs

from twilio_numbers_async._checks import check_count
from twilio_numbers_async._purchase import InDoubt, PurchaseEngine, PurchaseResult
from twilio_numbers_async._serde import OutcomeRecord, encode_form, error_record
from twilio_numbers_async.errors import (
    AuthenticationError,
    ClientClosedError,
    PurchaseOutcomeUnknownError,
    ResponseParseError,
)
from twilio_numbers_async.models import MobileNumberPurchase, NumberPurchase, PurchaseRequest
from twilio_numbers_async.retry import FailureKind, classify

from ._journal import Journal
from ._outcomes import Bought, BulkProgress, NotBought, OutcomeStatus, PurchaseOutcome

__all__ = ["purchase_many"]

logger = logging.getLogger("twilio_numbers_async")

_Request = NumberPurchase | MobileNumberPurchase


async def purchase_many(
    engine: PurchaseEngine,
    requests: Iterable[PurchaseRequest] | AsyncIterable[PurchaseRequest],
    *,
    account_sid: str,
    concurrency: int | None = None,
    journal: str | os.PathLike[str] | None = None,
    progress: BulkProgress | None = None,
) -> AsyncGenerator[PurchaseOutcome, None]:
    """What ``TwilioNumbersClient.purchase_many`` documents, through ``engine``."""
    if concurrency is not None:
        check_count("concurrency", concurrency)
    # By default twice the adaptive limit: enough purchases waiting for a slot that the limit,
    # when it grows, finds them there, and few enough that memory stays flat.
    adaptive = engine.gateway.concurrency

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
            while not exhausted and len(running) < (concurrency or 2 * adaptive.limit):
                try:
                    request = await _next_request(source, index)
                except Exception as exc:
                    # Purchases in flight may be buying: let them finish and be reported.
                    request, failure = None, exc
                if request is None:
                    exhausted = True
                    break
                counters.started += 1
                job = _Job(engine, account_sid, request, index, book)
                index += 1
                if (recorded := job.recorded()) is not None:
                    counters.concurrency = adaptive.limit
                    counters.count(recorded)
                    yield recorded
                    continue
                _launch(job, running, finished)
            if not running:
                break
            task = await finished.get()
            running.discard(task)
            try:
                outcome = task.result()
            except Exception as exc:  # a job's journal write failed, or a bug
                failure, exhausted = failure or exc, True
                continue
            counters.concurrency = adaptive.limit
            counters.count(outcome)
            if isinstance(outcome.error, ClientClosedError):
                # Every request taken from now on would be refused the same way: stop taking.
                failure, exhausted = failure or outcome.error, True
            yield outcome
        if failure is not None:
            raise failure
    finally:
        await _wind_up(running, source, book)


def _launch(
    job: _Job,
    running: set[asyncio.Task[PurchaseOutcome]],
    finished: asyncio.Queue[asyncio.Task[PurchaseOutcome]],
) -> None:
    task = asyncio.create_task(job.run(), name=f"purchase #{job.index}")
    running.add(task)
    task.add_done_callback(finished.put_nowait)


async def _wind_up(
    running: set[asyncio.Task[PurchaseOutcome]],
    source: AsyncGenerator[object, None],
    book: Journal | None,
) -> None:
    """Leave nothing running: reached at the end, on aclose(), cancellation or an error."""
    for task in running:
        task.cancel()
    if running:
        ended = await asyncio.gather(*running, return_exceptions=True)
        if book is None:
            # Done, but never yielded: without a journal, the log is all that tells of them.
            for outcome in ended:
                if isinstance(outcome, Bought):
                    logger.warning(
                        "purchase #%d bought %s (%s), but the run was closed before it was "
                        "handed over",
                        outcome.index,
                        outcome.number.phone_number,
                        outcome.number.sid,
                    )
    await source.aclose()
    if book is not None:
        await book.close()


async def _next_request(source: AsyncIterator[object], index: int) -> _Request | None:
    """The input's next request, checked; ``None`` at its end (a ``None`` item is refused)."""
    item = await anext(source, _END)
    return None if item is _END else _checked(item, index)


@attrs.define
class _Job:
    engine: PurchaseEngine
    account_sid: str
    request: _Request
    index: int
    journal: Journal | None
    key: str | None = None
    #: The form of the intent on disk for this request (this run's, or the earlier run's it
    #: resumes): a new one is written only when what is sent changes (a new candidate).
    intent_form: bytes | None = None

    def __attrs_post_init__(self) -> None:
        if self.journal is not None:
            form = encode_form(self.request)
            endpoint = self.request.endpoint
            occurrence = self.journal.next_occurrence(self.account_sid, endpoint, form)
            self.key = self.journal.key(self.account_sid, endpoint, form, occurrence)

    def recorded(self) -> PurchaseOutcome | None:
        """The outcome an earlier run recorded for this request, if it finished."""
        if self.journal is None or self.key is None or self.journal.state(self.key) != "done":
            return None
        # Read and checked when the journal opened, before anything was sent.
        record = self.journal.recorded_outcome(self.key)
        if record.number is not None:
            return Bought(
                index=self.index,
                request=self.request,
                number=record.number,
                attempts=record.attempts,
                reconciled=record.reconciled,
                from_journal=True,
            )
        assert record.error is not None  # noqa: S101 - the journal checks one or the other
        error = record.error.rebuild(self.request)
        if isinstance(error, ResponseParseError):
            # An earlier version recorded a 2xx it could not read as bought: with no number to
            # show, it is what this version calls it, an outcome to check on the account.
            error = PurchaseOutcomeUnknownError(self.request, error, account_sid=self.account_sid)
        return NotBought(
            index=self.index,
            request=self.request,
            error=error,
            attempts=record.attempts,
            from_journal=True,
        )

    async def run(self) -> PurchaseOutcome:
        purchase = self.engine.start(
            self.request,
            self.account_sid,
            in_doubt=self._in_doubt(),
            before_send=self._write_intent if self.journal is not None else None,
        )
        try:
            result = await purchase.run()
        except asyncio.CancelledError as stopped:
            if self.journal is not None and self.key is not None and not purchase.maybe_bought:
                # Stopped before its POST left (or after answers that bought nothing): the next
                # run sends it as new rather than looking for a purchase that never happened.
                self.journal.record_not_sent(self.key, index=self.index, cause=stopped)
            elif self.journal is None and purchase.maybe_bought:
                # No journal keeps it: the log is the only place it is said.
                logger.warning(
                    "purchase #%d (%s) was stopped in flight and may have bought a number: "
                    "check the account",
                    self.index,
                    self.request,
                )
            raise
        except Exception as exc:
            if not purchase.maybe_bought:
                raise  # nothing was sent for it: the failure is the run's, not the purchase's
            # A POST went out, then something unforeseen: it may have bought the number.
            unknown = PurchaseOutcomeUnknownError(self.request, exc, account_sid=self.account_sid)
            unknown.__cause__ = exc
            result = PurchaseResult(error=unknown, attempts=purchase.attempts)
        outcome = self._outcome(result)
        if self.journal is not None and self.key is not None:
            await self.journal.record_outcome(self.key, _outcome_record(outcome, result))
        return outcome

    def _outcome(self, result: PurchaseResult) -> PurchaseOutcome:
        if result.number is not None:
            return Bought(
                index=self.index,
                request=self.request,
                number=result.number,
                attempts=result.attempts,
                reconciled=result.reconciled,
            )
        assert result.error is not None  # noqa: S101 - a result holds one or the other
        return NotBought(
            index=self.index, request=self.request, error=result.error, attempts=result.attempts
        )

    def _in_doubt(self) -> InDoubt | None:
        """Why an earlier run may have bought this request's number, and which number it was
        buying: its journal has the intent but no outcome (or a failure still in doubt)."""
        if self.journal is None or self.key is None or self.journal.state(self.key) != "in_flight":
            return None
        intent = self.journal.recorded_intent(self.key)
        sent = intent.form if intent is not None else ""
        self.intent_form = sent.encode("ascii")
        return InDoubt(
            RuntimeError(
                "an earlier run stopped while this purchase was in flight (its journal has the "
                "intent but no outcome)"
            ),
            phone_number=parse_qs(sent).get("PhoneNumber", [None])[0],
        )

    async def _write_intent(self, sent: PurchaseRequest) -> None:
        """Record what is about to be POSTed (after its slot and token, just before it
        leaves), unless the intent on disk says it already: a retry of the same form."""
        if self.journal is None or self.key is None:
            return
        form = encode_form(sent)
        if form == self.intent_form:
            return
        await self.journal.record_intent(
            self.key,
            index=self.index,
            account_sid=self.account_sid,
            endpoint=sent.endpoint,
            form=form,
        )
        self.intent_form = form


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
        or isinstance(error, AuthenticationError | ClientClosedError)
        or classify(error) is not FailureKind.REJECTED
    )


#: What ``anext`` gives back at the end of the input; an object of our own, so that no item of
#: the input (``None`` included) can be mistaken for the end.
_END: Final = object()


def _checked(request: object, index: int) -> _Request:
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
