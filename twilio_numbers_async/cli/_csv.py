"""Reading a bulk purchase's CSV file into requests, with errors that name the row and column.

The header names the columns after the request fields (``phone_number``, ``area_code``,
``sms_url``...), plus an optional ``mobile`` column that sends the row to the Mobile endpoint.
An empty cell means "not set"; cells are stripped of surrounding spaces; booleans read
``true``/``false``, ``yes``/``no`` or ``1``/``0``. Rows are numbered as a text editor numbers
lines (the header is row 1); blank lines, and rows whose cells are all empty, are skipped.

The file is read as a stream, twice in a bulk run: :func:`check_csv` checks every row before
anything is bought, then :func:`read_requests` yields the requests to buy.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from twilio_numbers_async.errors import RequestValidationError
from twilio_numbers_async.models import PurchaseRequest

from ._fields import build_request, optional_fields

__all__ = ["MOBILE_COLUMN", "CsvError", "CsvProblem", "check_csv", "columns", "read_requests"]

#: The column that picks the Mobile endpoint for its row.
MOBILE_COLUMN: Final = "mobile"
_TRUE: Final = frozenset({"true", "yes", "1"})
_FALSE: Final = frozenset({"false", "no", "0"})
_BOOLEANS: Final = "true or false (also yes/no, 1/0)"


def columns() -> tuple[str, ...]:
    """Every column a bulk CSV may have, in a sensible order for a header."""
    return ("phone_number", "area_code", *(f.name for f in optional_fields()), MOBILE_COLUMN)


@attrs.frozen
class CsvProblem:
    """What is wrong with one row (or the header): ``column`` is ``None`` for the whole row."""

    row: int
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.reason}"


class CsvError(ValueError):
    """The CSV file can't be used as it is; ``problems`` lists what to fix, first ones first."""

    def __init__(
        self, path: str | os.PathLike[str], problems: Sequence[CsvProblem], *, more: int = 0
    ) -> None:
        self.path = os.fspath(path)
        self.problems = tuple(problems)
        self.more = more
        lines = [f"{self.path}: {problem}" for problem in self.problems]
        if more:
            lines.append(f"{self.path}: ... and {more} more rows with problems")
        super().__init__("\n".join(lines))


def read_requests(path: str | os.PathLike[str]) -> Iterator[tuple[int, PurchaseRequest]]:
    """``(row, request)`` for each row of the file, streamed; :class:`CsvError` at the first
    bad row."""
    for row, result in _parsed(path):
        if isinstance(result, CsvProblem):
            raise CsvError(path, [result])
        yield row, result


def check_csv(path: str | os.PathLike[str], *, max_problems: int = 10) -> int:
    """The number of requests in the file, after checking every row.

    Raises :class:`CsvError` listing the first ``max_problems`` problems (and how many more
    there are), so that one run shows what to fix.
    """
    count, problems, more = 0, list[CsvProblem](), 0
    for _, result in _parsed(path):
        if not isinstance(result, CsvProblem):
            count += 1
        elif len(problems) < max_problems:
            problems.append(result)
        else:
            more += 1
    if problems:
        raise CsvError(path, problems, more=more)
    return count


def _parsed(path: str | os.PathLike[str]) -> Iterator[tuple[int, PurchaseRequest | CsvProblem]]:
    # utf-8-sig: a spreadsheet's "CSV UTF-8" export starts with a byte-order mark.
    with Path(path).open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file, strict=True)
        row = 1
        try:
            header = _header(path, next(reader, None))
            booleans = _boolean_columns(header)
            while True:
                row = reader.line_num + 1  # where the next record starts
                cells = next(reader, None)
                if cells is None:
                    return
                if any(cell.strip() for cell in cells):
                    yield row, _parse_row(row, header, booleans, cells)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CsvError(path, [CsvProblem(row, None, _unreadable(exc))]) from exc


def _unreadable(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text: save the file as CSV UTF-8"
    return f"not valid CSV ({exc})"


def _header(path: str | os.PathLike[str], cells: list[str] | None) -> tuple[str, ...]:
    if cells is None or not any(cell.strip() for cell in cells):
        raise CsvError(
            path,
            [
                CsvProblem(
                    1,
                    None,
                    "no header: the first row must name the columns, such as "
                    "phone_number,area_code,sms_url",
                )
            ],
        )
    names = tuple(cell.strip() for cell in cells)
    known = set(columns())
    problems = [
        CsvProblem(1, name or f"#{position}", _header_problem(name, names, known))
        for position, name in enumerate(names, 1)
        if name not in known or names.count(name) > 1
    ]
    if problems:
        raise CsvError(path, problems)
    return names


def _header_problem(name: str, names: tuple[str, ...], known: set[str]) -> str:
    if not name:
        return "a column without a name"
    if name in known:
        return "given twice"
    return f"unknown column; the columns are {', '.join(columns())}"


def _boolean_columns(header: tuple[str, ...]) -> frozenset[str]:
    kinds = {field.name: field.kind for field in optional_fields()}
    return frozenset(name for name in header if name == MOBILE_COLUMN or kinds.get(name) == "bool")


def _parse_row(
    row: int, header: tuple[str, ...], booleans: frozenset[str], cells: list[str]
) -> PurchaseRequest | CsvProblem:
    if len(cells) > len(header):
        return CsvProblem(row, None, f"{len(cells)} cells, but the header names {len(header)}")
    values: dict[str, Any] = {}
    for name, cell in zip(header, cells, strict=False):
        text = cell.strip()
        if not text:
            continue
        if name in booleans:
            parsed = _boolean(text)
            if parsed is None:
                return CsvProblem(row, name, f"{text!r} is not {_BOOLEANS}")
            values[name] = parsed
        else:
            values[name] = text
    mobile = bool(values.pop(MOBILE_COLUMN, False))
    try:
        return build_request(values, mobile=mobile)
    except RequestValidationError as exc:
        return CsvProblem(row, exc.field, exc.reason)


def _boolean(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None
