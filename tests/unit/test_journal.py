"""The journal: keys, states, durability, "not sent", typed records, and the released format.

``tests/data/journal-v1.jsonl`` was written by the code of commit 0e3f108 (format 1, before the
records were typed): ``purchase_many`` with a journal, over a scripted buyer that ended each
request as the name in its ``friendly_name`` says, then a second run killed during its POST.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

import twilio_numbers_async.errors
from tests._memory import MemoryTwilio
from tests.conftest import ACCOUNT_SID, NUMBERS_URL, page, resource
from twilio_numbers_async import (
    AuthenticationError,
    ClientClosedError,
    JournalError,
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseOutcomeUnknownError,
    PurchaseRequest,
    RateLimitedError,
    RedisLimiterError,
    ResponseParseError,
    TransportError,
    TwilioApiError,
    TwilioNumbersClient,
    TwilioNumbersError,
)
from twilio_numbers_async._serde import (
    ErrorRecord,
    OutcomeRecord,
    error_record,
    journal_line,
    number_from_json,
    number_to_json,
    parse_number,
    read_journal_line,
)
from twilio_numbers_async.bulk import OutcomeStatus
from twilio_numbers_async.bulk._journal import Journal

ENDPOINT = "IncomingPhoneNumbers.json"
FIXTURE = Path(__file__).parents[1] / "data" / "journal-v1.jsonl"
FIND = NUMBERS_URL + "?PhoneNumber=%2B1{}&PageSize=50"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def bought(index: int = 0) -> OutcomeRecord:
    return OutcomeRecord(
        index=index,
        status="bought",
        attempts=1,
        reconciled=False,
        resend=False,
        in_doubt=False,
        number=parse_number(201, json.dumps(resource()).encode()),
        error=None,
    )


async def intend(journal: Journal, key: str, index: int = 0) -> None:
    await journal.record_intent(
        key, index=index, account_sid=ACCOUNT_SID, endpoint=ENDPOINT, form=b"AreaCode=415"
    )


# --- keys ----------------------------------------------------------------------------------


def test_a_key_is_a_pure_function_of_the_request_and_its_occurrence() -> None:
    key = Journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=415", 0)
    assert Journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=415", 0) == key, "two calls, one key"
    assert key.endswith("#0")
    others = {
        Journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=415", 1),
        Journal.key("AC" + "f" * 32, ENDPOINT, b"AreaCode=415", 0),
        Journal.key(ACCOUNT_SID, "IncomingPhoneNumbers/Mobile.json", b"AreaCode=415", 0),
        Journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=212", 0),
    }
    assert len(others) == 4
    assert key not in others


async def test_occurrences_count_identical_requests_in_the_input_whatever_the_order(
    tmp_path: Path,
) -> None:
    first = Journal.open(tmp_path / "a.jsonl", durable=False)
    second = Journal.open(tmp_path / "b.jsonl", durable=False)
    try:
        forms_a = (b"AreaCode=415", b"AreaCode=212", b"AreaCode=415")
        forms_b = (b"AreaCode=212", b"AreaCode=415", b"AreaCode=415")
        occurrences_a = [first.next_occurrence(ACCOUNT_SID, ENDPOINT, f) for f in forms_a]
        occurrences_b = [second.next_occurrence(ACCOUNT_SID, ENDPOINT, f) for f in forms_b]
        assert occurrences_a == [0, 0, 1]
        assert occurrences_b == [0, 0, 1]
        keys_a = {
            Journal.key(ACCOUNT_SID, ENDPOINT, *pair)
            for pair in zip(forms_a, occurrences_a, strict=True)
        }
        keys_b = {
            Journal.key(ACCOUNT_SID, ENDPOINT, *pair)
            for pair in zip(forms_b, occurrences_b, strict=True)
        }
        assert len(keys_a) == 3
        assert keys_a == keys_b
    finally:
        await first.close()
        await second.close()


# --- states, durability, a torn line, a second run -------------------------------------------


async def test_states_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    done = Journal.key(ACCOUNT_SID, ENDPOINT, b"A", 0)
    in_flight = Journal.key(ACCOUNT_SID, ENDPOINT, b"B", 0)
    for key in (done, in_flight):
        await intend(journal, key)
    await journal.record_outcome(done, bought())
    assert journal.state(done) == "done"
    await journal.close()

    again = Journal.open(path)
    assert again.state(done) == "done"
    assert again.state(in_flight) == "in_flight"
    assert again.state(Journal.key(ACCOUNT_SID, ENDPOINT, b"C", 0)) == "new"
    assert again.recorded_outcome(done) == bought()
    assert not again.repaired
    await again.close()
    assert [record["kind"] for record in lines(path)] == ["intent", "intent", "outcome"]


async def test_a_torn_last_line_is_cut_off_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    key = Journal.key(ACCOUNT_SID, ENDPOINT, b"A", 0)
    await intend(journal, key)
    await journal.close()
    with path.open("ab") as file:
        file.write(b'{"v":1,"kind":"outcome","key":"' + key.encode())  # the crash

    again = Journal.open(path)
    assert again.repaired
    assert "torn last line" in caplog.text
    assert again.state(key) == "in_flight"
    await again.record_outcome(key, bought())
    await again.close()
    assert [record["kind"] for record in lines(path)] == ["intent", "outcome"]


async def test_a_record_changed_under_a_run_is_a_journal_error_not_a_crash(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    key = Journal.key(ACCOUNT_SID, ENDPOINT, b"A", 0)
    await intend(journal, key)
    await journal.record_outcome(key, bought())
    await journal.close()
    again = Journal.open(path)
    try:
        # Something that ignores the lock rewrites the file after it was read and checked.
        path.write_bytes(path.read_bytes().replace(b'"attempts":1', b'"attempts":"1"'))
        with pytest.raises(JournalError, match=r"changed after the journal was opened"):
            again.recorded_outcome(key)
    finally:
        await again.close()


async def test_two_runs_can_not_share_a_journal(tmp_path: Path) -> None:
    first = Journal.open(tmp_path / "j.jsonl")
    try:
        with pytest.raises(JournalError, match="in use by another run"):
            Journal.open(tmp_path / "j.jsonl")
    finally:
        await first.close()
    second = Journal.open(tmp_path / "j.jsonl")  # free again once the first is closed
    await second.close()


def count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return synced


async def test_durable_records_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = count_fsyncs(monkeypatch)
    journal = Journal.open(tmp_path / "j.jsonl")
    keys = [Journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=415", n) for n in range(20)]
    await asyncio.gather(*(intend(journal, key, i) for i, key in enumerate(keys)))
    await journal.close()
    assert 1 <= len(synced) < 20, "concurrent records share an fsync"
    assert len(lines(tmp_path / "j.jsonl")) == 20


async def test_not_durable_never_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("fsync called"))
    journal = Journal.open(tmp_path / "j.jsonl", durable=False)
    key = Journal.key(ACCOUNT_SID, ENDPOINT, b"A", 0)
    await intend(journal, key)
    journal.record_not_sent(key, index=0, cause=asyncio.CancelledError())
    await journal.close()


# --- not sent --------------------------------------------------------------------------------


async def test_a_request_stopped_before_it_was_sent_is_new_to_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    key = Journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=415", 0)
    await intend(journal, key, index=3)
    synced = count_fsyncs(monkeypatch)
    journal.record_not_sent(key, index=3, cause=asyncio.CancelledError())
    assert synced == [], "not fsynced on its own: a lost record only leaves the intent in doubt"
    assert journal.state(key) == "new"
    assert lines(path)[-1] == {
        "v": 1,
        "kind": "outcome",
        "key": key,
        "index": 3,
        "status": "failed",
        "attempts": 0,
        "reconciled": False,
        "resend": True,
        "in_doubt": False,
        "number": None,
        "error": {"type": "CancelledError", "message": "stopped before it was sent"},
    }
    await journal.close()
    assert len(synced) == 1, "closing fsyncs it"
    again = Journal.open(path)
    assert again.state(key) == "new"
    await again.close()


@pytest.mark.parametrize("when", ["during-the-intents-fsync", "waiting-for-a-token"])
async def test_not_sent_is_recorded_by_a_task_being_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path)
    key = Journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=415", 0)
    syncing, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        syncing.set()
        release.wait()
        real_fsync(fd)

    if when == "during-the-intents-fsync":
        monkeypatch.setattr(os, "fsync", slow_fsync)
    else:
        release.set()
    intended = asyncio.Event()

    async def purchase() -> None:
        try:
            await intend(journal, key)
            intended.set()
            await asyncio.Event().wait()  # for a slot, a token...: never sent
        except asyncio.CancelledError as cancelled:
            journal.record_not_sent(key, index=0, cause=cancelled)
            raise

    task = asyncio.create_task(purchase())
    if when == "during-the-intents-fsync":
        await asyncio.to_thread(syncing.wait)
    else:
        await intended.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await journal.close()
    assert [(r["kind"], r.get("resend")) for r in lines(path)] == [
        ("intent", None),
        ("outcome", True),
    ]


async def test_not_sent_leaves_what_an_earlier_run_left_in_doubt(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    earlier = Journal.open(path)
    key = Journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=415", 0)
    await intend(earlier, key)  # ... and the run died during the POST
    await earlier.close()
    before = path.read_bytes()

    journal = Journal.open(path)
    journal.record_not_sent(key, index=0, cause=asyncio.CancelledError())  # resumed, then stopped
    unknown = Journal.key(ACCOUNT_SID, ENDPOINT, b"AreaCode=212", 0)
    journal.record_not_sent(unknown, index=1, cause=asyncio.CancelledError())  # no intent at all
    assert journal.state(key) == "in_flight"
    await journal.close()
    assert path.read_bytes() == before, "the earlier POST may still have bought it"


# --- typed records -----------------------------------------------------------------------------


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
ERRORS: list[TwilioNumbersError] = [
    TwilioApiError(
        status=400,
        code=21422,
        message="gone",
        more_info="https://x",
        request_id="RQ1",
        method="POST",
        url="https://u",
    ),
    TwilioApiError(status=400, code=21631, message="address", details={"more": ["a", 1]}),
    AuthenticationError(status=401, code=20003, message="Authenticate"),
    RateLimitedError(status=429, code=20429, message="slow", retry_after=2.5),
    RateLimitedError(status=429, code=20429, message="slow"),
    TransportError("reset", method="POST", url="https://u", sent=True),
    TransportError("refused", method="POST", url="https://u", sent=False),
    RedisLimiterError("Redis is down", where="redis://127.0.0.1:6379/0", operation="EVALSHA"),
    ClientClosedError("this TwilioNumbersClient is closed, so the request was not sent"),
    ResponseParseError("not JSON", status=201, body="<oops PN" + "1" * 32, sid="PN" + "1" * 32),
    ResponseParseError("not JSON", status=201, body="", sid=None),
    PurchaseOutcomeUnknownError(
        REQUEST, TransportError("t", method="POST", url="u", sent=True), account_sid=ACCOUNT_SID
    ),
    PurchaseOutcomeUnknownError(
        REQUEST,
        PurchaseOutcomeUnknownError(REQUEST, RateLimitedError(status=429), account_sid=ACCOUNT_SID),
        account_sid=ACCOUNT_SID,
    ),
]


def through_a_journal_line(error: BaseException) -> TwilioNumbersError:
    status: Literal["bought", "failed", "unknown"] = "failed"
    if isinstance(error, PurchaseOutcomeUnknownError):
        status = "unknown"
    elif isinstance(error, ResponseParseError):
        status = "bought"  # a 2xx: the money is spent
    record = OutcomeRecord(
        index=0,
        status=status,
        attempts=1,
        reconciled=False,
        resend=False,
        in_doubt=False,
        number=None,
        error=error_record(error),
    )
    _, again = read_journal_line(journal_line("0" * 32 + "#0", record))
    assert isinstance(again, OutcomeRecord)
    assert again == record
    assert again.error is not None
    return again.error.rebuild(REQUEST)


def state(error: BaseException) -> dict[str, Any]:
    """What an error holds, its cause's too, its request by identity."""
    held = {k: v for k, v in vars(error).items() if k not in ("cause", "request")}
    if isinstance(error, PurchaseOutcomeUnknownError):
        held["cause"] = (type(error.cause), str(error.cause), state(error.cause))
        held["request"] = error.request is REQUEST
    return held


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_an_outcome_can_hold_round_trips(error: TwilioNumbersError) -> None:
    again = through_a_journal_line(error)
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert state(again) == state(error)


def test_every_error_type_of_the_library_has_a_record() -> None:
    tested = {type(error) for error in ERRORS}
    # Raised before any I/O, so never an outcome's: a request is checked when it is built.
    never_an_outcome = {
        twilio_numbers_async.errors.RequestValidationError,
        twilio_numbers_async.errors.JournalError,  # raised when the journal opens
    }
    library = {
        getattr(twilio_numbers_async.errors, name)
        for name in twilio_numbers_async.errors.__all__
        if name != "TwilioNumbersError"
    }
    assert library - never_an_outcome == tested


def test_an_unknown_error_type_is_kept_as_its_message() -> None:
    again = through_a_journal_line(
        PurchaseOutcomeUnknownError(
            REQUEST, RuntimeError("the earlier run stopped"), account_sid=ACCOUNT_SID
        )
    )
    assert isinstance(again, PurchaseOutcomeUnknownError)
    assert "RuntimeError: the earlier run stopped" in str(again)
    assert "RuntimeError: the earlier run stopped" in str(again.cause)
    future = ErrorRecord(type="FutureError", message="from a newer version").rebuild(REQUEST)
    assert isinstance(future, TwilioNumbersError)
    assert str(future) == "FutureError: from a newer version"


def test_the_released_format_is_written_byte_for_byte() -> None:
    for line in FIXTURE.read_bytes().splitlines(keepends=True):
        assert journal_line(*read_journal_line(line)) == line


async def test_a_journal_written_by_the_released_code_resumes(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    journal.write_bytes(FIXTURE.read_bytes())
    requests: list[PurchaseRequest] = [
        NumberPurchase(phone_number="+15005550006", friendly_name="bought"),
        NumberPurchase(area_code="415", friendly_name="area"),
        NumberPurchase(area_code="415", friendly_name="area"),
        NumberPurchase(phone_number="+15005550009", friendly_name="reconciled"),
        NumberPurchase(phone_number="+15005550000", friendly_name="refused"),
        NumberPurchase(phone_number="+15005550010", friendly_name="auth"),
        NumberPurchase(phone_number="+15005550011", friendly_name="limited"),
        NumberPurchase(phone_number="+15005550012", friendly_name="refused-connection"),
        NumberPurchase(phone_number="+15005550013", friendly_name="unreadable"),
        NumberPurchase(area_code="212", friendly_name="unknown"),
        NumberPurchase(area_code="312", friendly_name="unknown-runtime"),
        NumberPurchase(phone_number="+15005550014", friendly_name="in-doubt"),
        MobileNumberPurchase(phone_number="+447700900123", friendly_name="mobile"),
        NumberPurchase(area_code="718", friendly_name="in-flight"),
    ]
    twilio.post(NUMBERS_URL, 201, resource(), repeat=True)
    twilio.get(FIND.format("5005550014"), 200, page())
    outcomes = {o.index: o async for o in client.purchase_many(requests, journal=journal)}

    # Failures Twilio never processed are sent again; the one in doubt is looked up first.
    resent = {5, 6, 7, 11}
    assert len(twilio.sent("POST", NUMBERS_URL)) == len(resent)
    assert len(twilio.sent("GET", FIND.format("5005550014"))) == 1
    assert {i for i, o in outcomes.items() if not o.from_journal} == {*resent, 13}
    assert all(outcomes[i].ok for i in resent)
    # The rest is read back as it was recorded.
    assert {i: outcomes[i].status for i in outcomes if i not in resent} == {
        0: OutcomeStatus.BOUGHT,
        1: OutcomeStatus.BOUGHT,
        2: OutcomeStatus.BOUGHT,
        3: OutcomeStatus.BOUGHT,
        4: OutcomeStatus.FAILED,
        # Recorded "bought" with no number (a 2xx that could not be read): with nothing to show,
        # this version reads it as an outcome to check on the account.
        8: OutcomeStatus.UNKNOWN,
        9: OutcomeStatus.UNKNOWN,
        10: OutcomeStatus.UNKNOWN,
        12: OutcomeStatus.BOUGHT,
        13: OutcomeStatus.UNKNOWN,  # in flight when the run died: an area code, not looked up
    }
    number = outcomes[0].number
    assert number is not None
    assert number.extra == {"new_property": [1, 2]}
    assert number.date_created.utcoffset() == -timedelta(hours=5)
    assert {outcomes[i].number.sid for i in (1, 2) if outcomes[i].number} == {
        "PN" + "2" * 32,
        "PN" + "3" * 32,
    }
    assert (outcomes[3].attempts, outcomes[3].reconciled) == (2, True)
    refused = outcomes[4].error
    assert isinstance(refused, TwilioApiError)
    assert (refused.code, refused.status, refused.method) == (21422, 400, "POST")
    unreadable = outcomes[8].error
    assert isinstance(unreadable, PurchaseOutcomeUnknownError)
    assert isinstance(unreadable.cause, ResponseParseError)
    assert unreadable.cause.sid == "PN" + "7" * 32, "the SID it named is kept, to check"
    unknown = outcomes[9].error
    assert isinstance(unknown, PurchaseOutcomeUnknownError)
    assert unknown.request == requests[9]
    assert isinstance(unknown.cause, TransportError)
    assert unknown.cause.sent
    assert "earlier run stopped" in str(outcomes[10].error)
    mobile = outcomes[12].number
    assert mobile is not None
    assert mobile.phone_number == "+447700900123"
