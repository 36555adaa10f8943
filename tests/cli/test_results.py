"""What bulk reports of each row: :class:`RowResult`, and the ``--output`` file."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.conftest import bought_number
from twilio_numbers_async import (
    IncomingPhoneNumber,
    NumberPurchase,
    PurchaseOutcome,
    PurchaseOutcomeUnknownError,
    ResponseParseError,
    TwilioApiError,
    TwilioNumbersError,
)
from twilio_numbers_async.bulk import Bought, NotBought, OutcomeStatus
from twilio_numbers_async.cli._results import COLUMNS, ResultsFile, RowResult

REQUEST = NumberPurchase(area_code="415")
SID = "PN" + "1" * 32
ACCOUNT = "AC" + "0" * 32


def outcome(
    *,
    number: IncomingPhoneNumber | None = None,
    error: TwilioNumbersError | None = None,
    reconciled: bool = False,
) -> PurchaseOutcome:
    if number is not None:
        return Bought(index=0, request=REQUEST, number=number, reconciled=reconciled)
    assert error is not None
    return NotBought(index=0, request=REQUEST, error=error)


def test_a_number_bought() -> None:
    number = bought_number(sid=SID, phone_number="+14155550100")

    result = RowResult.of(7, outcome(number=number, reconciled=True))

    assert result == RowResult(7, OutcomeStatus.BOUGHT, SID, "+14155550100", reconciled=True)
    assert result.bought_json() == {
        "row": 7,
        "sid": SID,
        "phone_number": "+14155550100",
        "reconciled": True,
    }


def test_an_unknown_outcome_keeps_the_sid_its_unreadable_answer_named() -> None:
    # A 2xx that could not be read, whose number could not be fetched by its SID either: the
    # SID is what to look for on the account.
    unreadable = ResponseParseError("not JSON", status=201, body="{", sid=SID)
    error = PurchaseOutcomeUnknownError(REQUEST, unreadable, account_sid=ACCOUNT)

    result = RowResult.of(3, outcome(error=error))

    assert (result.status, result.sid, result.phone_number) == (OutcomeStatus.UNKNOWN, SID, None)
    assert "check the account" in result.message


def test_a_failure_keeps_twilios_code_and_message_on_one_line_without_the_url() -> None:
    error = TwilioApiError(
        status=400,
        code=21422,
        message="PhoneNumber +14155550100\r\nis not available",
        url=f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json",
    )

    result = RowResult.of(4, outcome(error=error))

    assert result == RowResult(
        4,
        OutcomeStatus.FAILED,
        error_code=21422,
        message="PhoneNumber +14155550100 is not available",
    )


def test_an_unknown_outcome_says_to_check_the_account() -> None:
    error = PurchaseOutcomeUnknownError(REQUEST, TimeoutError("read"), account_sid=ACCOUNT)

    result = RowResult.of(5, outcome(error=error))

    assert (result.status, result.error_code) == (OutcomeStatus.UNKNOWN, None)
    assert "check the account before buying again" in result.message
    assert "\n" not in result.message


def test_the_output_file_is_flushed_line_by_line_and_runs_no_formula(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    with ResultsFile(path) as results:
        results.add(RowResult(2, OutcomeStatus.BOUGHT, SID, "+14155550100"))
        # Read while the file is still open: a run stopped now leaves these lines.
        assert path.read_text(encoding="utf-8").splitlines() == [
            ",".join(COLUMNS),
            f"2,bought,{SID},+14155550100,,",
        ]
        results.add(RowResult(3, OutcomeStatus.FAILED, error_code=21422, message="=HYPERLINK()"))

    [_, _, failed] = csv.reader(path.read_text(encoding="utf-8").splitlines())
    # A spreadsheet would run a cell that starts with "=": a server's message never does.
    assert failed == ["3", "failed", "", "", "21422", "'=HYPERLINK()"]
