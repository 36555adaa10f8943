"""The journal: keys, states, durability, a torn last line, corruption, and errors as JSON."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from twilio_numbers_async import (
    AuthenticationError,
    NumberPurchase,
    PurchaseOutcomeUnknownError,
    RateLimitedError,
    ResponseParseError,
    TransportError,
    TwilioApiError,
)
from twilio_numbers_async._journal import Journal, JournalError, error_from_json, error_to_json
from twilio_numbers_async._serde import number_from_json, number_to_json, parse_number

from .conftest import ACCOUNT_SID, resource

ENDPOINT = "IncomingPhoneNumbers.json"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


async def test_identical_requests_get_distinct_keys_and_order_does_not_matter(
    tmp_path: Path,
) -> None:
    first = Journal.open(tmp_path / "a.jsonl", durable=False)
    second = Journal.open(tmp_path / "b.jsonl", durable=False)
    try:
        keys_a = [
            first.key(ACCOUNT_SID, ENDPOINT, form)
            for form in (b"AreaCode=415", b"AreaCode=212", b"AreaCode=415")
        ]
        keys_b = [
            second.key(ACCOUNT_SID, ENDPOINT, form)
            for form in (b"AreaCode=212", b"AreaCode=415", b"AreaCode=415")
        ]
        assert len(set(keys_a)) == 3
        assert set(keys_a) == set(keys_b)
        assert keys_a[0].endswith("#0")
        assert keys_a[2].endswith("#1")
        assert first.key("AC" + "f" * 32, ENDPOINT, b"AreaCode=415") not in keys_a
        assert (
            first.key(ACCOUNT_SID, "IncomingPhoneNumbers/Mobile.json", b"AreaCode=415")
            not in keys_a
        )
    finally:
        await first.close()
        await second.close()


async def test_states_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    done, in_flight = (
        journal.key(ACCOUNT_SID, ENDPOINT, b"A"),
        journal.key(ACCOUNT_SID, ENDPOINT, b"B"),
    )
    for key in (done, in_flight):
        await journal.record_intent(
            key, index=0, account_sid=ACCOUNT_SID, endpoint=ENDPOINT, form=b"A"
        )
    await journal.record_outcome(done, {"index": 0, "status": "bought", "attempts": 1})
    assert journal.state(done) == "done"
    await journal.close()

    again = Journal.open(path)
    assert again.state(done) == "done"
    assert again.state(in_flight) == "in_flight"
    assert again.state("nothing#0") == "new"
    assert again.recorded_outcome(done)["status"] == "bought"
    assert not again.repaired
    await again.close()
    assert [record["kind"] for record in lines(path)] == ["intent", "intent", "outcome"]


async def test_a_torn_last_line_is_cut_off_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    key = journal.key(ACCOUNT_SID, ENDPOINT, b"A")
    await journal.record_intent(key, index=0, account_sid=ACCOUNT_SID, endpoint=ENDPOINT, form=b"A")
    await journal.close()
    with path.open("ab") as file:
        file.write(b'{"v":1,"kind":"outcome","key":"' + key.encode())  # the crash

    again = Journal.open(path)
    assert again.repaired
    assert "torn last line" in caplog.text
    assert again.state(key) == "in_flight"
    await again.record_outcome(key, {"status": "failed"})
    await again.close()
    assert [record["kind"] for record in lines(path)] == ["intent", "outcome"]


async def test_corruption_before_the_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(
        b'{"v":1,"kind":"intent","key":"a#0"}\nnot json\n{"v":1,"kind":"intent","key":"b#0"}\n'
    )
    with pytest.raises(JournalError, match=r"j.jsonl:2 is not a journal record"):
        Journal.open(path)


async def test_two_runs_can_not_share_a_journal(tmp_path: Path) -> None:
    first = Journal.open(tmp_path / "j.jsonl")
    try:
        with pytest.raises(JournalError, match="in use by another run"):
            Journal.open(tmp_path / "j.jsonl")
    finally:
        await first.close()
    second = Journal.open(tmp_path / "j.jsonl")  # free again once the first is closed
    await second.close()


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text("phone_number\n+15005550006\n")
    with pytest.raises(JournalError):
        Journal.open(path)


async def test_durable_records_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    journal = Journal.open(tmp_path / "j.jsonl")
    keys = [journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=415") for _ in range(20)]
    await asyncio.gather(
        *(
            journal.record_intent(
                key, index=i, account_sid=ACCOUNT_SID, endpoint=ENDPOINT, form=b"A"
            )
            for i, key in enumerate(keys)
        )
    )
    await journal.close()
    assert 1 <= len(synced) < 20, "concurrent records share an fsync"
    assert len(lines(tmp_path / "j.jsonl")) == 20


async def test_not_durable_never_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("fsync called"))
    journal = Journal.open(tmp_path / "j.jsonl", durable=False)
    key = journal.key(ACCOUNT_SID, ENDPOINT, b"A")
    await journal.record_intent(key, index=0, account_sid=ACCOUNT_SID, endpoint=ENDPOINT, form=b"A")
    await journal.close()


def test_a_number_round_trips_through_json() -> None:
    body = resource(
        sms_url="https://example.com/sms",
        date_created="Mon, 02 Mar 2026 09:30:00 -0500",
        new_property=[1, 2],
    )
    number = parse_number(201, json.dumps(body).encode())
    data = number_to_json(number)
    assert data["new_property"] == [1, 2]
    assert data["date_created"] == "Mon, 02 Mar 2026 09:30:00 -0500"
    assert number_from_json(json.loads(json.dumps(data))) == number


REQUEST = NumberPurchase(area_code="415")
ERRORS: list[Any] = [
    TwilioApiError(
        status=400,
        code=21422,
        message="gone",
        more_info="https://x",
        request_id="RQ1",
        method="POST",
        url="https://u",
    ),
    AuthenticationError(status=401, code=20003, message="Authenticate"),
    RateLimitedError(status=429, code=20429, message="slow", retry_after=2.5),
    TransportError("reset", method="POST", url="https://u", sent=True),
    ResponseParseError("not JSON", status=201, body="<oops PN" + "1" * 32, sid="PN" + "1" * 32),
    PurchaseOutcomeUnknownError(
        REQUEST, TransportError("t", method="POST", url="u", sent=True), account_sid=ACCOUNT_SID
    ),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_round_trip_through_json(error: Any) -> None:
    record = json.loads(json.dumps(error_to_json(error)))
    again = error_from_json(record, REQUEST)
    assert type(again) is type(error)
    assert str(again) == str(error)
    keep = {"request", "cause"}
    assert {k: v for k, v in vars(again).items() if k not in keep} == {
        k: v for k, v in vars(error).items() if k not in keep
    }


def test_an_unknown_error_type_is_kept_as_its_message() -> None:
    again = error_from_json({"type": "FutureError", "message": "from a newer version"}, REQUEST)
    assert "FutureError: from a newer version" in str(again)
