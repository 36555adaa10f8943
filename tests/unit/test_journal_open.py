"""What opening a journal accepts, repairs and refuses: every record is read and checked first.

A journal decides what a run sends, so a record that can't be read is refused when the journal
opens (``JournalError`` naming ``path:line``), before any request; only a last line without its
newline that could be the start of one of our records is a torn write, cut off; and a file that
is not a journal is refused without a byte of it changed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests._memory import MemoryTwilio
from tests.conftest import NUMBERS_URL, resource
from twilio_numbers_async import (
    JournalError,
    NumberPurchase,
    PurchaseOutcome,
    TwilioNumbersClient,
)
from twilio_numbers_async.bulk._journal import Journal

FIXTURE = Path(__file__).parents[1] / "data" / "journal-v1.jsonl"


async def collect(iterator: AsyncIterator[PurchaseOutcome]) -> list[PurchaseOutcome]:
    return [outcome async for outcome in iterator]


def fixture_lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_bytes().splitlines()]


def write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(json.dumps(record).encode() + b"\n" for record in records))


async def opens(path: Path) -> Journal:
    journal = Journal.open(path)
    await journal.close()
    return journal


# --- a record that can't be read ---------------------------------------------------------------


async def test_a_bad_record_stops_the_run_before_any_post(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    recorded = NumberPurchase(phone_number="+15005550006")
    twilio.post(NUMBERS_URL, 201, resource())
    await collect(client.purchase_many([recorded], journal=journal))
    # The recorded number is damaged: its SID is no SID.
    intent, outcome = journal.read_bytes().splitlines()
    journal.write_bytes(intent + b"\n" + outcome.replace(b'"sid":"PN', b'"sid":"XX') + b"\n")
    twilio.post(NUMBERS_URL, 201, resource(), repeat=True)

    requests = [
        NumberPurchase(phone_number="+15005550007"),
        NumberPurchase(phone_number="+15005550008"),
        recorded,
    ]
    with pytest.raises(JournalError, match=r"buy\.jsonl:2 .*\$\.number\.sid"):
        await collect(client.purchase_many(requests, concurrency=1, journal=journal))
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1, "nothing is sent on a bad journal"


def corrupt(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        *parents, name = field.split(".")
        for parent in parents:
            record = record[parent]
        if value is KeyError:
            del record[name]
        else:
            record[name] = value

    return change


# (line of the fixture, the change, what the message must name)
BAD_RECORDS = [
    (2, corrupt("number.sid", "XX1"), r"\$\.number\.sid"),
    (2, corrupt("number.capabilities", "all"), r"\$\.number\.capabilities"),
    (2, corrupt("number", "PN" + "1" * 32), r"\$\.number"),
    (2, corrupt("resend", "false"), r"\$\.resend"),
    (2, corrupt("reconciled", 0), r"\$\.reconciled"),
    (2, corrupt("attempts", "1"), r"\$\.attempts"),
    (2, corrupt("attempts", True), r"\$\.attempts"),
    (2, corrupt("attempts", -1), r"attempts"),
    (2, corrupt("index", KeyError), r"\$\.index"),
    (2, corrupt("status", "maybe"), r"\$\.status"),
    (2, corrupt("number", None), r"bought"),  # "bought", and nothing says what
    (2, corrupt("key", "not-a-key"), r"key"),
    (2, corrupt("kind", "retraction"), r"kind"),
    (10, corrupt("error.status", KeyError), r"\$\.error\.status"),
    (10, corrupt("error.type", 21422), r"\$\.error\.type"),
    (10, corrupt("error", "refused"), r"\$\.error"),
    (14, corrupt("error.retry_after", "soon"), r"\$\.error\.retry_after"),
    (16, corrupt("error.sent", "yes"), r"\$\.error\.sent"),
    (20, corrupt("error.cause.sent", None), r"\$\.error\.cause\.sent"),
    (20, corrupt("error.cause", None), r"\$\.error\.cause"),
    (20, corrupt("status", "failed"), r"unknown"),  # says failed, holds an unknown outcome
    (24, corrupt("in_doubt", "true"), r"\$\.in_doubt"),
    (3, corrupt("form", 5), r"\$\.form"),
    (3, corrupt("account", KeyError), r"\$\.account"),
    (3, corrupt("index", 1.5), r"\$\.index"),
]


@pytest.mark.parametrize(("line", "change", "names"), BAD_RECORDS)
def test_a_record_that_cant_be_read_is_refused_naming_its_line(
    tmp_path: Path, line: int, change: Callable[[dict[str, Any]], None], names: str
) -> None:
    records = fixture_lines()
    change(records[line - 1])
    path = tmp_path / "buy.jsonl"
    write(path, records)
    before = path.read_bytes()
    with pytest.raises(JournalError, match=rf"buy\.jsonl:{line}\b") as raised:
        Journal.open(path)
    assert raised.match(names)
    assert path.read_bytes() == before


async def test_the_journal_written_by_the_released_code_opens(tmp_path: Path) -> None:
    path = tmp_path / "buy.jsonl"
    path.write_bytes(FIXTURE.read_bytes())
    journal = await opens(path)
    assert not journal.repaired
    assert path.read_bytes() == FIXTURE.read_bytes()


# --- a complete line is never cut off ------------------------------------------------------


async def test_a_newer_record_at_the_end_is_refused_not_dropped_and_resent(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    request = NumberPurchase(phone_number="+15005550006")
    twilio.post(NUMBERS_URL, 201, resource())
    await collect(client.purchase_many([request], journal=journal))
    # A newer version of the library wrote the outcome, in a format this one does not know.
    journal.write_bytes(
        journal.read_bytes().replace(b'{"v":1,"kind":"outcome"', b'{"v":2,"kind":"outcome"')
    )
    before = journal.read_bytes()
    with pytest.raises(JournalError, match=r"buy\.jsonl:2 .*newer twilio_numbers_async.*upgrade"):
        await collect(client.purchase_many([request], journal=journal))
    assert journal.read_bytes() == before
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1, "the purchase is not sent again"


@pytest.mark.parametrize(
    "last",
    [
        b'{"v":2,"kind":"outcome","key":"x#0","anything":"new"}\n',
        b'{"v":1,"kind":"outcome"}\n',
        b"not json\n",
        b"\n",
        b"[]\n",
        b'{"kind":"outcome"}\n',
    ],
    ids=["newer", "incomplete-record", "not-json", "blank", "array", "no-version"],
)
def test_a_complete_last_line_that_is_not_a_record_is_refused_and_kept(
    tmp_path: Path, last: bytes
) -> None:
    path = tmp_path / "buy.jsonl"
    path.write_bytes(FIXTURE.read_bytes() + last)
    before = path.read_bytes()
    line = before.count(b"\n")
    with pytest.raises(JournalError, match=rf"buy\.jsonl:{line}\b"):
        Journal.open(path)
    assert path.read_bytes() == before


def test_a_newer_record_says_to_upgrade_wherever_it_is(tmp_path: Path) -> None:
    records = fixture_lines()
    records[4]["v"] = 3
    path = tmp_path / "buy.jsonl"
    write(path, records)
    with pytest.raises(JournalError, match=r"buy\.jsonl:5 .*newer twilio_numbers_async.*upgrade"):
        Journal.open(path)


@pytest.mark.parametrize(
    "content",
    [
        b"phone_number\n+15005550006\n",
        b"phone_number\n+15005550006",
        b"phone_number",
        b"phone_number,friendly_name\r\n+15005550006,support\r\n",
        b"\n",
        b"\xff\xfe\x00junk",
    ],
    ids=["csv", "csv-no-final-newline", "one-line-no-newline", "crlf", "blank-line", "binary"],
)
def test_a_file_that_is_not_a_journal_is_refused_before_a_byte_changes(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "numbers.csv"
    path.write_bytes(content)
    with pytest.raises(JournalError, match=r"numbers\.csv:1 is not a journal record"):
        Journal.open(path)
    assert path.read_bytes() == content


# --- a torn last line is cut off ---------------------------------------------------------------


@pytest.mark.parametrize(
    "torn",
    [
        b'{"v":1,"kind":"outcome","key":"',
        b'{"v":1,"kind":"outcome","key":"0adb5791fbd9a21a009a257e353fc176#0","index":0,"stat',
        b'{"v',
        b"{",
        b"\x00" * 300,  # a filesystem's zero fill, after a power cut mid-append
    ],
    ids=["record-start", "mid-field", "version-prefix", "brace", "zero-fill"],
)
async def test_a_torn_last_line_is_cut_off(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "buy.jsonl"
    path.write_bytes(FIXTURE.read_bytes() + torn)
    journal = await opens(path)
    assert journal.repaired
    assert path.read_bytes() == FIXTURE.read_bytes()


@pytest.mark.parametrize("content", [None, b""], ids=["new", "empty"])
async def test_a_new_or_empty_file_is_a_new_journal(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "buy.jsonl"
    if content is not None:
        path.write_bytes(content)
    journal = await opens(path)
    assert not journal.repaired
    assert path.read_bytes() == b""
