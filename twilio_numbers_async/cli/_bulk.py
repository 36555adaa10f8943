"""``twilio-numbers bulk``: buy every row of a CSV file, with a journal that makes a rerun
resume."""

from __future__ import annotations

import contextlib
import os
import time
from argparse import Namespace
from collections.abc import Coroutine, Iterator
from typing import Any, Final

import attrs

from twilio_numbers_async._sids import redact_url
from twilio_numbers_async.bulk import OutcomeStatus, PurchaseOutcome
from twilio_numbers_async.client import TwilioNumbersClient
from twilio_numbers_async.errors import AuthenticationError, TwilioApiError
from twilio_numbers_async.models import MobileNumberPurchase, PurchaseRequest

from ._console import Output
from ._csv import CsvError, check_csv, read_requests
from ._errors import UsageError
from ._tally import Tally, brief, failure_reason, one_line, summary_rows
from ._twilio import connect

__all__ = ["run"]

# Rows listed in a human summary; --json lists them all.
_ROWS_SHOWN: Final = 50
# Any valid number will do for a look-up that only checks the credentials: this is the magic
# number of Twilio's test credentials, which a live account does not hold.
_PROBE_NUMBER: Final = "+15005550006"


@attrs.define
class _BulkRun:
    """What a bulk run keeps while it goes: the counters and the rows to report."""

    tally: Tally = attrs.Factory(Tally)
    #: (row, outcome) of every outcome not bought, or bought but not readable.
    attention: list[tuple[int, PurchaseOutcome]] = attrs.Factory(list)
    elapsed: float = 0.0
    #: Why the run stopped before the end of the file, if it did.
    stopped: str | None = None


def run(args: Namespace, out: Output) -> Coroutine[Any, Any, bool]:
    """Check every row and get the go-ahead, before the event loop starts; then buy every row
    of the CSV file, with a journal that makes a rerun resume."""
    total = check_csv(args.file)  # every row, before anything is bought
    run = _BulkRun()
    client = connect(
        args,
        purchase=f"buy up to {total} numbers, one per row of {os.fspath(args.file)}",
        rate_limit=args.rate,
        max_concurrency=args.concurrency,
        on_retry=run.tally.on_retry,
    )
    return _buy_all(args, out, client, total, run)


async def _buy_all(
    args: Namespace, out: Output, client: TwilioNumbersClient, total: int, run: _BulkRun
) -> bool:
    # Requests are streamed from the file; a row number is kept only while its request is in
    # flight, so memory stays flat however long the file.
    rows: dict[int, int] = {}

    def requests() -> Iterator[PurchaseRequest]:
        for index, (row, request) in enumerate(read_requests(args.file)):
            if run.stopped is not None:
                # Ending the input, rather than closing the run, lets what is in flight finish
                # and be journaled: a purchase cut off mid-way would stay "unknown" for good.
                return
            rows[index] = row
            yield request

    async with client:
        await _check_credentials(client, args.account_sid)
        started = time.perf_counter()
        outcomes = client.purchase_many(
            requests(),
            concurrency=args.concurrency,
            journal=args.journal,
            account_sid=args.account_sid,
            progress=run.tally.progress,
        )
        with out.progress(total, "Buying") as show:
            try:
                async with contextlib.aclosing(outcomes):
                    async for outcome in outcomes:
                        _take(run, rows.pop(outcome.index), outcome)
                        show(run.tally.progress)
            except (OSError, CsvError) as exc:
                if not run.tally.progress.started:
                    raise  # nothing taken yet, so nothing bought: bad input, as before
                # Numbers may have been bought: report them, and say the journal resumes.
                run.stopped = f"{one_line(exc)}; fix it and run the same command to resume"
        run.elapsed = time.perf_counter() - started
    if out.json_mode:
        out.json(_bulk_json(args, total, run))
    else:
        _show_bulk(out, args, total, run)
    return not (run.stopped or run.tally.progress.failed or run.tally.progress.unknown)


async def _check_credentials(client: TwilioNumbersClient, account_sid: str | None) -> None:
    # A wrong token or account would otherwise fail every row. One read costs nothing, and
    # refused, it means bad input: nothing was bought.
    try:
        await client.find_incoming_phone_number(_PROBE_NUMBER, account_sid=account_sid)
    except AuthenticationError:
        raise  # mapped to bad input, with the credentials' variables named
    except TwilioApiError as exc:
        account = account_sid or client.account_sid
        raise UsageError(
            f"Twilio refused to list the numbers of {account}: {one_line(exc)}"
        ) from exc


def _take(run: _BulkRun, row: int, outcome: PurchaseOutcome) -> None:
    if isinstance(outcome.error, AuthenticationError) and run.stopped is None:
        # The credentials stopped working mid-run: take no more rows (the journal resends
        # these, which Twilio never processed).
        run.stopped = f"{one_line(outcome.error)}; fix it and run the same command to resume"
    run.tally.add(outcome)
    if outcome.number is None:
        run.attention.append((row, outcome))


def _bulk_json(args: Namespace, total: int, run: _BulkRun) -> dict[str, Any]:
    progress = run.tally.progress
    rows = [_row_json(row, outcome) for row, outcome in sorted(run.attention, key=_by_row)]
    return {
        "requested": total,
        "purchased": progress.bought,
        "failed": progress.failed,
        "unknown": progress.unknown,
        "from_journal": progress.from_journal,
        "failed_by_reason": dict(run.tally.failed_by_reason.most_common()),
        "reconciled": run.tally.reconciled,
        "retries": run.tally.retries,
        "rate_limited": run.tally.rate_limited,
        "unknown_rows": [row for row in rows if row["status"] == OutcomeStatus.UNKNOWN],
        "failed_rows": [row for row in rows if row["status"] == OutcomeStatus.FAILED],
        "journal": os.fspath(args.journal),
        "stopped": run.stopped,
        "elapsed_s": round(run.elapsed, 3),
    }


def _by_row(item: tuple[int, PurchaseOutcome]) -> int:
    return item[0]


def _row_json(row: int, outcome: PurchaseOutcome) -> dict[str, Any]:
    error = outcome.error
    return {
        "row": row,
        "status": outcome.status.value,
        "request": _request_json(outcome.request),
        "reason": failure_reason(error) if error is not None else None,
        "error": one_line(error) if error is not None else None,
    }


def _request_json(request: PurchaseRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {"mobile": isinstance(request, MobileNumberPurchase)}
    for field in attrs.fields(type(request)):
        value = getattr(request, field.name)
        if value is not None:
            # A webhook URL may carry a password: never print it back.
            fields[field.name] = value if isinstance(value, bool) else redact_url(str(value))
    return fields


def _show_bulk(out: Output, args: Namespace, total: int, run: _BulkRun) -> None:
    tally = run.tally
    rows = [
        ("requested", str(total), f"rows of {os.fspath(args.file)}"),
        *summary_rows(tally, unknown="maybe bought: check the account before buying again"),
        ("from the journal", str(tally.progress.from_journal), os.fspath(args.journal)),
        ("elapsed", f"{run.elapsed:.2f} s", ""),
    ]
    out.table("Bulk purchase", rows)
    if run.stopped is not None:
        out.line(f"Stopped before the end of the file: {run.stopped}.")
    attention = sorted(run.attention, key=_by_row)
    if attention:
        out.table(
            "Rows not bought",
            [_attention_row(row, outcome) for row, outcome in attention[:_ROWS_SHOWN]],
            headers=("row", "outcome", "request", "why"),
        )
    if len(attention) > _ROWS_SHOWN:
        out.line(f"... and {len(attention) - _ROWS_SHOWN} more: --json lists them all.")


def _attention_row(row: int, outcome: PurchaseOutcome) -> tuple[str, str, str, str]:
    why = brief(outcome.error) if outcome.error is not None else ""
    return str(row), outcome.status.value, repr(outcome.request), why
