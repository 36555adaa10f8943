"""Buy the numbers a CSV file lists, resumably: run the same command again after a crash or
Ctrl-C and it buys only what is left, never a number twice.

Columns are named after the request fields: phone_number or area_code, plus any of
friendly_name, sms_url, voice_url, address_sid, bundle_sid... (every NumberPurchase field).
A `mobile` column set to true sends its row to the Mobile endpoint (a phone_number only).
Empty cells are not sent; booleans read true/false, yes/no or 1/0.

The journal (default: the CSV's name with .journal.jsonl) records each purchase before it is
sent and its outcome before it is reported; keep it with the file, and don't edit the file
between runs: requests are matched by their content and position among equal ones.

Exit status: 0 all bought; 1 some failed or ended unknown (see the summary);
2 the file has errors (nothing is bought); 130 interrupted (run again to resume).

Configuration, from the environment, read by TwilioNumbersClient.from_env(): TWILIO_ACCOUNT_SID,
TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET), and TWILIO_BASE_URL to point it at
a sandbox (`twilio-numbers sandbox` prints one).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs

from twilio_numbers_async import (
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseOutcome,
    PurchaseRequest,
    RequestValidationError,
    TwilioNumbersClient,
)
from twilio_numbers_async.bulk import OutcomeStatus

MOBILE: Final = "mobile"
COLUMNS: Final = frozenset(attrs.fields_dict(NumberPurchase)) | {MOBILE}
BOOLEANS: Final = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
MAX_PROBLEMS: Final = 10


class CsvFileError(Exception):
    """The CSV can't be bought from as it is; the message lists what to fix."""


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()  # progress shows as it happens, also through a pipe


def as_bool(name: str, text: str) -> bool:
    try:
        return BOOLEANS[text.lower()]
    except KeyError:
        raise RequestValidationError(name, f"{text!r} is not true or false") from None


def to_request(row: dict[str | Any, str | Any]) -> PurchaseRequest:
    """The request one CSV row describes; :class:`RequestValidationError` names a bad column."""
    if None in row:
        raise RequestValidationError("row", "has more cells than the header has columns")
    cells = {name: text.strip() for name, text in row.items() if isinstance(text, str)}
    values: dict[str, Any] = {name: text for name, text in cells.items() if text}
    mobile = as_bool(MOBILE, values.pop(MOBILE, "false"))
    if "voice_caller_id_lookup" in values:
        values["voice_caller_id_lookup"] = as_bool(
            "voice_caller_id_lookup", values["voice_caller_id_lookup"]
        )
    if not mobile:
        return NumberPurchase(**values)
    if "area_code" in values:
        raise RequestValidationError("area_code", "the Mobile endpoint buys a given phone_number")
    if "phone_number" not in values:
        raise RequestValidationError("phone_number", "is required for a mobile number")
    return MobileNumberPurchase(**values)


def read_rows(path: Path) -> Iterator[tuple[int, PurchaseRequest | RequestValidationError]]:
    """``(line, request or what is wrong with it)`` for each row, streamed."""
    # utf-8-sig: a spreadsheet's "CSV UTF-8" export starts with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        unknown = sorted(set(reader.fieldnames or ()) - COLUMNS)
        if unknown:
            raise CsvFileError(
                f"{path}: unknown columns {', '.join(unknown)}; "
                f"the columns are {', '.join(sorted(COLUMNS))}"
            )
        for row in reader:
            try:
                yield reader.line_num, to_request(row)
            except RequestValidationError as error:
                yield reader.line_num, error


def check(path: Path) -> int:
    """How many requests the file holds, after checking every row: nothing is bought from a
    file with a bad row, rather than half of it."""
    count, problems = 0, []
    for line, result in read_rows(path):
        if isinstance(result, RequestValidationError):
            problems.append(f"{path}:{line}: {result}")
        else:
            count += 1
    if problems:
        more = len(problems) - MAX_PROBLEMS
        shown = problems[:MAX_PROBLEMS] + ([f"... and {more} more"] if more > 0 else [])
        raise CsvFileError("\n".join(shown))
    return count


def requests(path: Path) -> Iterator[PurchaseRequest]:
    """The requests, read lazily: purchase_many pulls them as it goes, so memory stays flat."""
    for _, result in read_rows(path):
        assert not isinstance(result, RequestValidationError)  # noqa: S101 - check() ran first
        yield result


def describe(outcome: PurchaseOutcome) -> str:
    request = outcome.request
    what = request.phone_number or f"area code {getattr(request, 'area_code', None)}"
    where = " (journal)" if outcome.from_journal else ""
    if outcome.ok:  # tells a type checker that outcome.number is there
        bought = outcome.number
        found = ", found on the account after its answer was lost" if outcome.reconciled else ""
        return f"#{outcome.index} {what}: bought {bought.phone_number} ({bought.sid}{found}){where}"
    if outcome.status is OutcomeStatus.UNKNOWN:
        return f"#{outcome.index} {what}: UNKNOWN, may have been bought{where}"
    return f"#{outcome.index} {what}: failed: {outcome.error}{where}"


async def buy(path: Path, journal: Path, concurrency: int) -> Counter[OutcomeStatus]:
    statuses: Counter[OutcomeStatus] = Counter()
    resumed = 0
    async with TwilioNumbersClient.from_env() as client:
        async for outcome in client.purchase_many(
            requests(path), concurrency=concurrency, journal=journal
        ):
            statuses[outcome.status] += 1
            resumed += outcome.from_journal
            say(describe(outcome))
    total = sum(statuses.values())
    say(
        f"{total} requests: {statuses[OutcomeStatus.BOUGHT]} bought, "
        f"{statuses[OutcomeStatus.FAILED]} failed, {statuses[OutcomeStatus.UNKNOWN]} unknown "
        f"({resumed} read from the journal {journal}, not sent again)"
    )
    if statuses[OutcomeStatus.UNKNOWN]:
        # The journal keeps "unknown" as the outcome: a rerun will not buy those again.
        say(
            "Unknown: the purchase may have happened and could not be checked. Look at the "
            "account's numbers (Console, or find_incoming_phone_number) before buying any of "
            "them again; reruns of this file leave them alone."
        )
    return statuses


def main(argv: list[str] | None = None) -> int:
    summary, _, details = (__doc__ or "").partition("\n\n")
    parser = argparse.ArgumentParser(
        description=summary,
        epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("csv", type=Path, help="the CSV file of numbers to buy")
    parser.add_argument("--journal", type=Path, help="the journal (default: CSV.journal.jsonl)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="purchases in flight at once (8)"
    )
    args = parser.parse_args(argv)
    journal: Path = args.journal or args.csv.with_suffix(".journal.jsonl")
    try:
        count = check(args.csv)
    except (CsvFileError, OSError, csv.Error, UnicodeDecodeError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    say(f"{args.csv}: {count} requests; journal {journal}")
    try:
        statuses = asyncio.run(buy(args.csv, journal, args.concurrency))
    except ValueError as exc:  # the environment: no credentials, a bad base URL...
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        # purchase_many cancelled what was in flight and closed the journal cleanly.
        say(f"interrupted: run the same command again to resume from {journal}")
        return 130
    return 0 if statuses[OutcomeStatus.BOUGHT] == sum(statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
