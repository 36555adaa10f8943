"""The four commands of ``twilio-numbers``: what each does, and what it shows.

Each takes the parsed arguments and an :class:`~._console.Output`, and returns whether
everything succeeded (every number bought, the demo's audit passed). Errors are raised, never
printed here: ``cli`` turns them into one-line messages and exit codes, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from argparse import Namespace
from collections.abc import Iterator
from typing import Any, Final

import attrs

from ._console import Output
from ._csv import CsvError, check_csv, read_requests
from ._demo import DemoReport, DemoSettings, run_demo
from ._fields import build_request, optional_fields
from ._serde import number_to_json
from ._sids import redact_url
from ._tally import Tally, brief, failure_reason, one_line
from .bulk import OutcomeStatus, PurchaseOutcome
from .client import TwilioNumbersClient
from .errors import AuthenticationError, TwilioApiError
from .models import IncomingPhoneNumber, MobileNumberPurchase, PurchaseRequest
from .sandbox import Sandbox

__all__ = ["CREDENTIAL_VARIABLES", "UsageError", "bulk", "buy", "demo", "sandbox"]

#: Where the credentials come from, for the messages about them.
CREDENTIAL_VARIABLES: Final = (
    "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET)"
)
# Rows listed in a human summary; --json lists them all.
_ROWS_SHOWN: Final = 50
# Any valid number will do for a look-up that only checks the credentials: this is the magic
# number of Twilio's test credentials, which a live account does not hold.
_PROBE_NUMBER: Final = "+15005550006"


class UsageError(Exception):
    """The command can't run as asked (missing credentials, a bad setting); nothing was done."""


# --- demo -----------------------------------------------------------------------------------


async def demo(args: Namespace, out: Output) -> bool:
    """Buy numbers from an in-process sandbox with faults on, and audit what it sold."""
    label, faults = args.faults
    settings = DemoSettings(
        count=args.count,
        faults=faults,
        faults_label=label,
        seed=args.seed,
        concurrency=args.concurrency,
        rate=args.rate,
    )
    if not out.json_mode:
        rate = f"{settings.rate:g}/s" if settings.rate else "off"
        out.line(
            f"Buying {settings.count} numbers from a sandbox on loopback "
            f"(faults: {label}, seed {settings.seed}, concurrency {settings.concurrency}, "
            f"rate limit {rate})"
        )
    with out.progress(settings.count, "Buying") as show:
        report = await run_demo(settings, on_outcome=show)
    if out.json_mode:
        out.json(report.to_json())
    else:
        _show_demo(out, report)
    return report.audit.passed


def _show_demo(out: Output, report: DemoReport) -> None:
    tally = report.tally
    rows = [
        ("requested", str(report.settings.count), ""),
        *_tally_rows(tally, unknown="maybe bought: an area code's answer was lost"),
        ("elapsed", f"{report.elapsed:.2f} s", f"{report.purchases_per_s:.0f} purchases/s"),
        ("sold by the sandbox", str(report.sold_by_sandbox), "bought, and some behind unknown"),
        ("faults injected", str(sum(report.faults_injected.values())), _faults(report)),
    ]
    out.table("Outcomes", rows)
    found = report.audit
    out.table(
        "Audit against the sandbox's records",
        [
            ("double purchases", *_finding(found.double_purchases, "sold twice")),
            ("untracked purchases", *_finding(found.untracked_purchases, "sold, told failed")),
            ("phantom purchases", *_finding(found.phantom_purchases, "told bought, not sold")),
        ],
    )
    if found.passed:
        out.line(
            "Audit passed: no number was bought twice, and every purchase is accounted for.",
            style="bold green",
        )
    else:
        out.line("AUDIT FAILED: see the tags above.", style="bold red")


def _tally_rows(tally: Tally, *, unknown: str) -> list[tuple[str, str, str]]:
    """The summary rows that demo and bulk share: outcomes, failures by reason, retries."""
    progress = tally.progress
    reconciled = f"{tally.reconciled} reconciled: found on the account after a lost answer"
    return [
        ("bought", str(progress.bought), reconciled if tally.reconciled else ""),
        ("failed", str(progress.failed), "by reason:" if progress.failed else ""),
        *(
            (f"  {reason}", str(count), tally.explanations.get(reason, ""))
            for reason, count in tally.failed_by_reason.most_common()
        ),
        ("unknown", str(progress.unknown), unknown if progress.unknown else ""),
        ("retries", str(tally.retries), "of purchases and look-ups"),
        ("429s honoured", str(tally.rate_limited), "each paused the whole client"),
    ]


def _faults(report: DemoReport) -> str:
    return ", ".join(f"{name} {count}" for name, count in report.faults_injected.items())


def _finding(tags: tuple[str, ...], meaning: str) -> tuple[str, str]:
    shown = ", ".join(tags[:10]) + (" ..." if len(tags) > 10 else "")
    return str(len(tags)), f"{meaning}: {shown}" if tags else meaning


# --- buy ------------------------------------------------------------------------------------


async def buy(args: Namespace, out: Output) -> bool:
    """Buy one number on Twilio (or wherever ``--base-url`` points)."""
    values = {field.name: getattr(args, field.name) for field in optional_fields()}
    request = build_request(
        {**values, "phone_number": args.phone_number, "area_code": args.area_code},
        mobile=args.mobile,
    )
    async with _client(args) as client:
        number = await client.purchase(request, account_sid=args.account_sid)
    if out.json_mode:
        out.json(number_to_json(number))
    else:
        out.table("Bought", _number_rows(number))
    return True


def _number_rows(number: IncomingPhoneNumber) -> list[tuple[str, str]]:
    created = number.date_created.isoformat() if number.date_created is not None else ""
    return [
        ("sid", number.sid or ""),
        ("phone_number", number.phone_number or ""),
        ("friendly_name", number.friendly_name or ""),
        ("date_created", created),
        ("account_sid", number.account_sid or ""),
    ]


def _client(args: Namespace, **settings: Any) -> TwilioNumbersClient:
    """A client from the ``TWILIO_*`` environment variables and ``--base-url``."""
    env = os.environ
    key_pair = env.get("TWILIO_API_KEY") and env.get("TWILIO_API_SECRET")
    if not env.get("TWILIO_ACCOUNT_SID") or not (env.get("TWILIO_AUTH_TOKEN") or key_pair):
        raise UsageError(f"no Twilio credentials: set {CREDENTIAL_VARIABLES} in the environment")
    try:
        return TwilioNumbersClient.from_env(base_url=args.base_url, **settings)
    except ValueError as exc:  # a malformed SID or base URL: messages that name no secret
        raise UsageError(f"can't use these settings: {exc}") from exc


# --- bulk -----------------------------------------------------------------------------------


@attrs.define
class _BulkRun:
    """What a bulk run keeps while it goes: the counters and the rows to report."""

    tally: Tally = attrs.Factory(Tally)
    #: (row, outcome) of every outcome not bought, or bought but not readable.
    attention: list[tuple[int, PurchaseOutcome]] = attrs.Factory(list)
    elapsed: float = 0.0
    #: Why the run stopped before the end of the file, if it did.
    stopped: str | None = None


async def bulk(args: Namespace, out: Output) -> bool:
    """Buy every row of a CSV file, with a journal that makes a rerun resume."""
    total = check_csv(args.file)  # every row, before anything is bought
    run = _BulkRun()
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

    client = _client(
        args,
        rate_limit=args.rate,
        max_concurrency=args.concurrency,
        on_retry=run.tally.on_retry,
    )
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
        *_tally_rows(tally, unknown="maybe bought: check the account before buying again"),
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


# --- sandbox --------------------------------------------------------------------------------


async def sandbox(args: Namespace, out: Output) -> bool:
    """Serve a sandbox for other programs until Ctrl-C or SIGTERM."""
    label, faults = args.faults
    try:
        server = Sandbox(
            host=args.host,
            port=args.port,
            faults=faults,
            seed=args.seed,
            max_concurrency=args.max_concurrency,
            account_sid=args.account_sid,
            auth_token=args.auth_token,
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"can't start the sandbox: {exc}") from exc
    async with server:
        _show_sandbox(out, server, label)
        await _until_stopped()
    out.line("Sandbox stopped.")
    return True


def _show_sandbox(out: Output, server: Sandbox, label: str) -> None:
    token = server.auth_token
    lines = [
        f"Sandbox serving at {server.url} (faults: {label})",
        "Its account SID and auth token are test values it made up, not Twilio secrets:",
        f"  export TWILIO_ACCOUNT_SID={shlex.quote(server.account_sid)}",
        f"  export TWILIO_AUTH_TOKEN={shlex.quote(token)}",
        "Then buy from it, for example:",
        f"  twilio-numbers buy --base-url {server.url} --area-code 415",
        "Stop it with Ctrl-C.",
    ]
    for line in lines:
        out.line(line)


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, nor off the main thread: there Ctrl-C interrupts as usual.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
