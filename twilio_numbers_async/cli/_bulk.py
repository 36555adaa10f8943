"""``twilio-numbers bulk``: buy every row of a CSV file, with a journal that makes a rerun
resume."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from argparse import Namespace
from collections.abc import Coroutine, Iterator
from typing import Any, Final

import attrs

from twilio_numbers_async._checks import redact_url
from twilio_numbers_async._serde import OutcomeRecord, read_journal_line
from twilio_numbers_async.bulk import OutcomeStatus, PurchaseOutcome
from twilio_numbers_async.client import TwilioNumbersClient
from twilio_numbers_async.errors import AuthenticationError
from twilio_numbers_async.models import MobileNumberPurchase, PurchaseRequest

from ._console import Output
from ._csv import CsvError, check_csv, read_requests
from ._errors import os_error
from ._results import ResultsFile, RowResult
from ._tally import Tally, brief, failure_reason, one_line, summary_rows
from ._twilio import GoAhead, check_credentials, connect

__all__ = ["run"]

# Rows listed in a human summary; --json lists them all.
_ROWS_SHOWN: Final = 50


@attrs.define
class _BulkRun:
    """One bulk run: what it was asked, and what it keeps while it goes (the counters, the
    rows to report, the ``--output`` file)."""

    args: Namespace
    out: Output
    #: The requests in the file.
    total: int
    tally: Tally = attrs.Factory(Tally)
    #: Every number bought (or bought and unreadable), as its row's result.
    bought: list[RowResult] = attrs.Factory(list)
    #: (row, outcome) of every outcome failed or unknown.
    attention: list[tuple[int, PurchaseOutcome]] = attrs.Factory(list)
    #: The rows sent and unanswered when the run stopped (an intent in the journal and no
    #: outcome): the next run looks each of them up on the account.
    in_flight: list[int] = attrs.Factory(list)
    #: The rows taken from the file but not sent when the run stopped: the next run buys them
    #: as new.
    not_sent: list[int] = attrs.Factory(list)
    #: The rows whose outcome was recorded as the run stopped, before it could be shown: the
    #: next run reports them from the journal.
    unshown: list[int] = attrs.Factory(list)
    results: ResultsFile | None = None
    elapsed: float = 0.0
    #: Why the run stopped before the end of the file, if it did.
    stopped: str | None = None

    async def buy(self, client: TwilioNumbersClient) -> bool:
        """Buy every row through ``client``, then show what was done: also when Ctrl-C or
        SIGTERM stops it (see ``_main``), before the cancellation goes on."""
        started = time.perf_counter()
        output = self.args.output
        with ResultsFile(output) if output else contextlib.nullcontext() as self.results:
            try:
                async with client:
                    await check_credentials(client, self.args.account_sid)
                    await self._take_all(client)
            except asyncio.CancelledError:
                # What was in flight was cancelled, and the journal keeps it for the next run.
                self.stopped = "interrupted; run the same command to resume"
                self._report(time.perf_counter() - started)
                raise
        self._report(time.perf_counter() - started)
        progress = self.tally.progress
        return not (self.stopped or progress.failed or progress.unknown)

    async def _take_all(self, client: TwilioNumbersClient) -> None:
        # Requests are streamed from the file; a row number is kept only while its request is
        # in flight, so memory stays flat however long the file.
        rows: dict[int, int] = {}

        def requests() -> Iterator[PurchaseRequest]:
            for index, (row, request) in enumerate(read_requests(self.args.file)):
                if self.stopped is not None:
                    # Ending the input, rather than closing the run, lets what is in flight
                    # finish and be journaled: a purchase cut off mid-way would stay
                    # "unknown" for good.
                    return
                rows[index] = row
                yield request

        outcomes = client.purchase_many(
            requests(),
            concurrency=self.args.concurrency,
            journal=self.args.journal,
            account_sid=self.args.account_sid,
            progress=self.tally.progress,
        )
        try:
            with self.out.progress(self.total, "Buying") as show:
                async with contextlib.aclosing(outcomes):
                    async for outcome in outcomes:
                        self._take(RowResult.of(rows.pop(outcome.index), outcome), outcome)
                        show(self.tally.progress)
        except (OSError, CsvError) as exc:
            if not self.tally.progress.started:
                raise  # nothing taken yet, so nothing bought: bad input, as before
            # Numbers may have been bought: report them, and say the journal resumes.
            what = os_error(exc) if isinstance(exc, OSError) else one_line(exc)
            self.stopped = f"{what}; fix it and run the same command to resume"
        finally:
            if rows:
                self._sort_unfinished(rows)

    def _sort_unfinished(self, rows: dict[int, int]) -> None:
        """Sort the rows taken and not finished (input index → row) by what the journal, now
        closed, says of each: sent and unanswered, not sent, or finished unshown."""
        try:
            states = _journal_states(self.args.journal)
        except (OSError, ValueError):  # not to be read (moved, or changed by hand): say less
            self.in_flight = sorted(rows.values())
            return
        for index, row in rows.items():
            state = states.get(index, "new")
            if state == "in_flight":
                self.in_flight.append(row)
            elif state == "done":
                self.unshown.append(row)
            else:
                self.not_sent.append(row)
        for found in (self.in_flight, self.not_sent, self.unshown):
            found.sort()

    def _take(self, result: RowResult, outcome: PurchaseOutcome) -> None:
        if isinstance(outcome.error, AuthenticationError) and self.stopped is None:
            # The credentials stopped working mid-run: take no more rows (the journal resends
            # these, which Twilio never processed).
            self.stopped = f"{one_line(outcome.error)}; fix it and run the same command to resume"
        self.tally.add(outcome)
        if result.status is OutcomeStatus.BOUGHT:
            self.bought.append(result)
        else:
            self.attention.append((result.row, outcome))
        if self.results is not None:
            self.results.add(result)

    def _report(self, elapsed: float) -> None:
        self.elapsed = elapsed
        if self.out.json_mode:
            self.out.json(self._json())
        else:
            self._show()

    def _json(self) -> dict[str, Any]:
        progress, args = self.tally.progress, self.args
        rows = [_row_json(row, outcome) for row, outcome in sorted(self.attention, key=_by_row)]
        return {
            "requested": self.total,
            "purchased": progress.bought,
            "failed": progress.failed,
            "unknown": progress.unknown,
            "from_journal": progress.from_journal,
            "failed_by_reason": dict(self.tally.failed_by_reason.most_common()),
            "reconciled": self.tally.reconciled,
            "retries": self.tally.retries,
            "rate_limited": self.tally.rate_limited,
            "bought": [result.bought_json() for result in sorted(self.bought, key=_result_row)],
            "unknown_rows": [row for row in rows if row["status"] == OutcomeStatus.UNKNOWN],
            "failed_rows": [row for row in rows if row["status"] == OutcomeStatus.FAILED],
            "in_flight_rows": self.in_flight,
            "not_sent_rows": self.not_sent,
            "journal": os.fspath(args.journal),
            "output": os.fspath(args.output) if args.output else None,
            "stopped": self.stopped,
            "elapsed_s": round(self.elapsed, 3),
        }

    def _show(self) -> None:
        out, args, tally = self.out, self.args, self.tally
        out.table(
            "Bulk purchase",
            [
                ("requested", str(self.total), f"rows of {os.fspath(args.file)}"),
                *summary_rows(tally, unknown="maybe bought: check the account before buying again"),
                ("from the journal", str(tally.progress.from_journal), os.fspath(args.journal)),
                ("elapsed", f"{self.elapsed:.2f} s", ""),
            ],
        )
        if self.stopped is not None:
            out.line(f"Stopped before the end of the file: {self.stopped}.")
        if self.in_flight:
            out.line(
                f"In flight when it stopped (sent, unanswered): rows {_some(self.in_flight)}. "
                "The next run looks each of them up on the account before it buys anything again."
            )
        if self.not_sent:
            out.line(
                f"Not sent when it stopped: rows {_some(self.not_sent)}. The next run buys them "
                "as new."
            )
        if self.unshown:
            out.line(
                f"Finished as it stopped, not shown above: rows {_some(self.unshown)}. The next "
                "run reports them from the journal."
            )
        bought = sorted(self.bought, key=_result_row)
        if bought:
            out.table(
                "Numbers bought",
                [_bought_row(result) for result in bought[:_ROWS_SHOWN]],
                headers=("row", "phone_number", "sid", ""),
            )
            _more(out, len(bought))
        attention = sorted(self.attention, key=_by_row)
        if attention:
            out.table(
                "Rows not bought",
                [_attention_row(row, outcome) for row, outcome in attention[:_ROWS_SHOWN]],
                headers=("row", "outcome", "request", "why"),
            )
            _more(out, len(attention))


def run(args: Namespace, out: Output) -> Coroutine[Any, Any, bool]:
    """Check every row and get the go-ahead, before the event loop starts; then buy every row
    of the CSV file, with a journal that makes a rerun resume."""
    bulk = _BulkRun(args, out, total=check_csv(args.file))  # every row, before anything is bought

    def action() -> str:
        # Only when asking: reading a long journal costs a moment.
        what = f"buy up to {bulk.total} numbers, one per row of {os.fspath(args.file)}"
        done = _done_in(args.journal)
        return f"{what} ({done} already done in {os.fspath(args.journal)})" if done else what

    client = connect(
        args,
        go_ahead=GoAhead(action),
        rate_limit=args.rate,
        max_concurrency=args.concurrency,
        on_retry=bulk.tally.on_retry,
        area_codes=args.area_codes,
    )
    return bulk.buy(client)


def _done_in(journal: str | os.PathLike[str]) -> int:
    """How many requests ``journal`` has an outcome for, which a run sends no more: read only
    (the run opens it, and says what is wrong with it); 0 if it can't be read."""
    try:
        return sum(state == "done" for _, state in _journal_records(journal).values())
    except (OSError, ValueError):
        return 0


def _journal_states(path: str | os.PathLike[str]) -> dict[int, str]:
    """What a closed journal says of each request it names, by the request's index in the
    input: ``in_flight`` (an intent and no outcome, or an outcome still in doubt: the next run
    looks it up), ``done`` (an outcome), or ``new`` (recorded as not sent: sent again as new).
    A request with no record at all was never sent either, and is absent."""
    return dict(_journal_records(path).values())


def _journal_records(path: str | os.PathLike[str]) -> dict[str, tuple[int, str]]:
    """Per key of ``path``, the index of its request and its state (see
    :func:`_journal_states`), by its last record; empty when there is no file."""
    states: dict[str, tuple[int, str]] = {}  # key → (index, state), by its last record
    try:
        with open(path, "rb") as file:
            for line in file:
                key, record = read_journal_line(line)
                if isinstance(record, OutcomeRecord):
                    # As the journal reads it: an outcome in doubt is looked up first, as if
                    # in flight; one that may be resent (not sent) goes as new.
                    state = "in_flight" if record.in_doubt else "new" if record.resend else "done"
                else:
                    state = "in_flight"
                states[key] = (record.index, state)
    except FileNotFoundError:
        return {}  # not created yet: nothing was sent
    return states


def _by_row(item: tuple[int, PurchaseOutcome]) -> int:
    return item[0]


def _result_row(result: RowResult) -> int:
    return result.row


def _row_json(row: int, outcome: PurchaseOutcome) -> dict[str, Any]:
    result = RowResult.of(row, outcome)
    return {
        "row": row,
        "status": result.status.value,
        "request": _request_json(outcome.request),
        "code": result.error_code,
        "message": result.message,
        "reason": failure_reason(outcome.error),
    }


def _request_json(request: PurchaseRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {"mobile": isinstance(request, MobileNumberPurchase)}
    for field in attrs.fields(type(request)):
        value = getattr(request, field.name)
        if value is not None:
            # A webhook URL may carry a password: never print it back.
            fields[field.name] = value if isinstance(value, bool) else redact_url(str(value))
    return fields


def _more(out: Output, count: int) -> None:
    if count > _ROWS_SHOWN:
        out.line(f"... and {count - _ROWS_SHOWN} more: --json and --output list them all.")


def _some(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:_ROWS_SHOWN]))
    return shown + (f" and {len(rows) - _ROWS_SHOWN} more" if len(rows) > _ROWS_SHOWN else "")


def _bought_row(result: RowResult) -> tuple[str, str, str, str]:
    note = "reconciled" if result.reconciled else result.message
    return str(result.row), result.phone_number or "", result.sid or "", note


def _attention_row(row: int, outcome: PurchaseOutcome) -> tuple[str, str, str, str]:
    why = brief(outcome.error) if outcome.error is not None else ""
    return str(row), outcome.status.value, repr(outcome.request), why
