"""The bulk CSV reader: rows become requests, and every problem names its row and column."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from tests.cli._run import MIXED_CSV, write
from twilio_numbers_async import (
    MobileNumberPurchase,
    NumberPurchase,
)
from twilio_numbers_async.cli._csv import CsvError, check_csv, columns, read_requests


def test_csv_rows_become_requests_numbered_like_lines(tmp_path: Path) -> None:
    rows = list(read_requests(write(tmp_path, MIXED_CSV)))

    assert [row for row, _ in rows] == [2, 3, 5, 6, 7]  # the blank line 4 is skipped
    assert rows[0][1] == NumberPurchase(
        phone_number="+14156000001",
        friendly_name="row-2",
        sms_url="https://example.com/sms",
        voice_caller_id_lookup=True,
    )
    assert rows[1][1] == NumberPurchase(area_code="415", friendly_name="row-3")
    assert rows[2][1] == MobileNumberPurchase(phone_number="+447700900001", friendly_name="row-5")
    assert check_csv(write(tmp_path, MIXED_CSV)) == 5


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("true", True), ("Yes", True), ("1", True), ("false", False), ("NO", False), ("0", False)],
)
def test_csv_booleans(tmp_path: Path, cell: str, expected: bool) -> None:
    path = write(tmp_path, f"area_code,voice_caller_id_lookup\n415,{cell}\n")

    [(_, request)] = read_requests(path)

    assert request.voice_caller_id_lookup is expected


def test_csv_cells_are_stripped_and_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("phone_number , sms_method\n +14156000001 , POST \n", encoding="utf-8-sig")

    [(_, request)] = read_requests(path)

    assert request == NumberPurchase(phone_number="+14156000001", sms_method="POST")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "row 1: no header"),
        ("phone_number,colour\n+14156000001,red\n", "row 1, column colour: unknown column"),
        ("area_code,area_code\n415,415\n", "row 1, column area_code: given twice"),
        ("area_code\n415,extra\n", "row 2: 2 cells, but the header names 1"),
        ("area_code,mobile\n415,perhaps\n", "row 2, column mobile: 'perhaps' is not true"),
        ("area_code,mobile\n415,true\n", "row 2, column area_code: a mobile purchase"),
        ("phone_number,mobile\n,yes\n", "row 2, column phone_number: a mobile purchase needs"),
        ("phone_number,area_code\n+14156000001,415\n", "row 2, column area_code: give exactly"),
        ("area_code,voice_method\n415,PUT\n", "row 2, column voice_method: 'PUT' is not one"),
        ('area_code\n"415\n', "row 2: not valid CSV"),
    ],
)
def test_csv_problems_name_the_row_and_column(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(CsvError) as raised:
        check_csv(path)

    assert f"{path}: {problem}" in str(raised.value)


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("friendly_name,area_code\ncaf\xe9,415\n".encode("latin-1"))

    with pytest.raises(CsvError, match="not UTF-8"):
        check_csv(path)


def test_check_csv_lists_several_problems_and_counts_the_rest(tmp_path: Path) -> None:
    bad_rows = "".join(f"+1{index}x,\n" for index in range(15))
    path = write(tmp_path, "phone_number,area_code\n" + bad_rows)

    with pytest.raises(CsvError) as raised:
        check_csv(path, max_problems=10)

    assert [problem.row for problem in raised.value.problems] == list(range(2, 12))
    assert raised.value.more == 5
    assert "and 5 more rows with problems" in str(raised.value)


def test_read_requests_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    rows = read_requests(write(tmp_path, "area_code\n415\n4155\n"))

    assert next(rows)[0] == 2
    with pytest.raises(CsvError, match="row 3, column area_code"):
        next(rows)


def test_csv_columns_cover_every_request_field() -> None:
    names = {field.name for field in attrs.fields(NumberPurchase)}

    assert set(columns()) == names | {"mobile"}
