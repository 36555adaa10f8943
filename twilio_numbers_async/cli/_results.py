"""What a bulk run did with each row of its CSV file: one :class:`RowResult` per outcome, and
the ``--output`` file that holds them, written as rows complete."""

from __future__ import annotations

import csv
import os
from typing import IO, Any, Final

import attrs

from twilio_numbers_async.bulk import OutcomeStatus, PurchaseOutcome
from twilio_numbers_async.errors import (
    PurchaseOutcomeUnknownError,
    ResponseParseError,
    TwilioApiError,
    TwilioNumbersError,
)

from ._tally import one_line

__all__ = ["COLUMNS", "ResultsFile", "RowResult"]

#: The columns of an ``--output`` file, in order.
COLUMNS: Final = ("row", "status", "sid", "phone_number", "error_code", "message")
# A spreadsheet runs a cell that starts with one of these as a formula: a message comes from
# the server, so it never starts a cell with one (phone numbers, which start with "+", are
# ours and checked).
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


@attrs.frozen
class RowResult:
    """How one row ended: bought (``sid`` and ``phone_number``), failed or unknown (Twilio's
    ``error_code`` where it gave one, and a ``message``; an unknown one names the ``sid`` of
    what may have been bought, when Twilio's unreadable answer did)."""

    #: The row's line in the CSV file (the header is line 1).
    row: int
    status: OutcomeStatus
    sid: str | None = None
    phone_number: str | None = None
    #: Whether the number was found on the account after an answer was lost.
    reconciled: bool = False
    error_code: int | None = None
    message: str = ""

    @classmethod
    def of(cls, row: int, outcome: PurchaseOutcome) -> RowResult:
        """The result that ``outcome`` gives row ``row``."""
        if outcome.ok:
            number = outcome.number
            return cls(
                row=row,
                status=outcome.status,
                sid=number.sid,
                phone_number=number.phone_number,
                reconciled=outcome.reconciled,
            )
        error = outcome.error
        return cls(
            row=row,
            status=outcome.status,
            sid=_sid_named_by(error),
            error_code=error.code if isinstance(error, TwilioApiError) else None,
            message=_message(error),
        )

    def bought_json(self) -> dict[str, Any]:
        """The row as ``--json`` lists a number bought."""
        return {
            "row": self.row,
            "sid": self.sid,
            "phone_number": self.phone_number,
            "reconciled": self.reconciled,
        }


def _sid_named_by(error: TwilioNumbersError) -> str | None:
    """The SID of a number that may have been bought, where the answer named one: a 2xx that
    could not be read, whose fetch by SID failed too. The first thing to look for on the
    account."""
    cause = error.cause if isinstance(error, PurchaseOutcomeUnknownError) else None
    return cause.sid if isinstance(cause, ResponseParseError) else None


def _message(error: TwilioNumbersError) -> str:
    if isinstance(error, TwilioApiError) and error.message:
        # Twilio's own words, on one line; its code has a column of its own, and its URL
        # (in the error's full message) names the account.
        return " ".join(error.message.split())
    return one_line(error)


class ResultsFile:
    """The ``--output`` CSV file: a header, then a line per row as it completes, each flushed,
    so that a run stopped at any point leaves a correct, partial file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # Written from the start: a rerun reports every row again, from the journal.
        self._file: IO[str] = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._file)
        self._write(COLUMNS)

    def add(self, result: RowResult) -> None:
        """Write ``result`` and flush it."""
        self._write(
            (
                str(result.row),
                result.status.value,
                result.sid or "",
                result.phone_number or "",
                "" if result.error_code is None else str(result.error_code),
                _cell(result.message),
            )
        )

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _write(self, cells: tuple[str, ...]) -> None:
        self._writer.writerow(cells)
        self._file.flush()


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
