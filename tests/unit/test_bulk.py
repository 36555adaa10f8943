"""``purchase_many`` against Twilio in memory: one outcome each, streaming, closing, resuming."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._memory import Hang, MemoryTwilio, reply
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MOBILE_URL,
    NUMBERS_URL,
    FakeTime,
    page,
    resource,
    twilio_error,
)
from twilio_numbers_async import (
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseOutcome,
    PurchaseOutcomeUnknownError,
    PurchaseRequest,
    TwilioApiError,
    TwilioNumbersClient,
)
from twilio_numbers_async._serde import encode_form
from twilio_numbers_async._transport import Request, Response
from twilio_numbers_async.bulk import BulkProgress, OutcomeStatus
from twilio_numbers_async.bulk._journal import Journal

FIND = NUMBERS_URL + "?PhoneNumber=%2B1{}&PageSize=50"


async def collect(iterator: AsyncIterator[PurchaseOutcome]) -> list[PurchaseOutcome]:
    return [outcome async for outcome in iterator]


async def collect_into(
    seen: list[PurchaseOutcome], iterator: AsyncIterator[PurchaseOutcome]
) -> None:
    """Collect into ``seen``, keeping what was yielded before an error."""
    async for outcome in iterator:
        seen.append(outcome)  # noqa: PERF401 - a comprehension would lose them to the error


def by_index(outcomes: list[PurchaseOutcome]) -> list[PurchaseOutcome]:
    return sorted(outcomes, key=lambda outcome: outcome.index)


async def test_one_outcome_per_request_whatever_happens(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    requests: list[PurchaseRequest] = [
        NumberPurchase(phone_number="+15005550006"),
        NumberPurchase(area_code="533"),
        MobileNumberPurchase(phone_number="+447700900123"),
        NumberPurchase(area_code="415"),
    ]
    twilio.post(NUMBERS_URL, 201, resource(), repeat=False)
    twilio.post(NUMBERS_URL, 400, twilio_error(21452))
    twilio.post(MOBILE_URL, 201, resource(phone_number="+447700900123"))
    twilio.post(NUMBERS_URL, 500, twilio_error(20500, 500))
    # concurrency=1 keeps the mock's answers in the order of the requests.
    outcomes = await collect(client.purchase_many(requests, concurrency=1))
    assert [o.index for o in outcomes] == [0, 1, 2, 3]
    assert [o.request for o in outcomes] == requests
    assert [o.status for o in outcomes] == [
        OutcomeStatus.BOUGHT,
        OutcomeStatus.FAILED,
        OutcomeStatus.BOUGHT,
        OutcomeStatus.UNKNOWN,
    ]
    assert [o.ok for o in outcomes] == [True, False, True, False]
    assert isinstance(outcomes[1].error, TwilioApiError)
    assert isinstance(outcomes[3].error, PurchaseOutcomeUnknownError)
    assert all(o.attempts == 1 and not o.from_journal for o in outcomes)


async def test_async_iterables_are_accepted(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    async def requests() -> AsyncIterator[PurchaseRequest]:
        for _ in range(3):
            yield NumberPurchase(area_code="500")

    twilio.post(NUMBERS_URL, 201, resource(), repeat=True)
    outcomes = await collect(client.purchase_many(requests(), concurrency=2))
    assert sorted(o.index for o in outcomes) == [0, 1, 2]
    assert all(o.ok for o in outcomes)


async def test_input_is_pulled_lazily(client: TwilioNumbersClient, twilio: MemoryTwilio) -> None:
    pulled = 0
    release = asyncio.Event()

    def requests() -> Iterator[PurchaseRequest]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield NumberPurchase(area_code="500")

    async def slow(request: Request) -> Response:
        await release.wait()
        return reply(201, resource())

    twilio.post(NUMBERS_URL, slow, repeat=True)
    iterator = client.purchase_many(requests(), concurrency=4)
    first = asyncio.ensure_future(anext(iterator))
    for _ in range(20):
        await asyncio.sleep(0)
    assert pulled == 4, "no more than `concurrency` requests are taken ahead"
    release.set()
    await first
    await iterator.aclose()  # type: ignore[attr-defined]
    assert pulled < 10


async def test_closing_early_cancels_what_is_in_flight(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    hang = Hang()
    twilio.post(NUMBERS_URL, hang, repeat=True)
    twilio.post(MOBILE_URL, 201, resource(phone_number="+447700900123"))
    requests: list[PurchaseRequest] = [
        MobileNumberPurchase(phone_number="+447700900123"),
        *(NumberPurchase(area_code="415") for _ in range(5)),
    ]
    iterator = client.purchase_many(requests, concurrency=4)
    first = await anext(iterator)
    assert first.ok
    await iterator.aclose()  # type: ignore[attr-defined]
    assert hang.started == hang.cancelled > 0
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_cancelling_the_consumer_leaves_no_task(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    hang = Hang()
    twilio.post(NUMBERS_URL, hang, repeat=True)

    async def consume() -> None:
        async with contextlib.aclosing(
            client.purchase_many([NumberPurchase(area_code="415")] * 3, concurrency=3)
        ) as outcomes:
            async for _ in outcomes:
                pass

    task = asyncio.create_task(consume())
    await hang.reached()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_bad_item_is_refused(client: TwilioNumbersClient, twilio: MemoryTwilio) -> None:
    with pytest.raises(TypeError, match=r"requests\[0\] is a dict"):
        await collect(client.purchase_many([{"area_code": "415"}]))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="concurrency"):
        await collect(client.purchase_many([], concurrency=0))


async def test_progress_counts_what_was_yielded(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, resource())
    twilio.post(NUMBERS_URL, 400, twilio_error(21452))
    progress = BulkProgress()
    requests = [NumberPurchase(area_code="500"), NumberPurchase(area_code="533")]
    async for _ in client.purchase_many(requests, concurrency=1, progress=progress):
        assert progress.in_flight >= 0
    assert (progress.started, progress.bought, progress.failed, progress.unknown) == (2, 1, 1, 0)
    assert (progress.done, progress.in_flight) == (2, 0)


# --- the journal ------------------------------------------------------------------------------


async def test_a_rerun_on_the_journal_sends_nothing(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    requests: list[PurchaseRequest] = [
        NumberPurchase(phone_number="+15005550006"),
        NumberPurchase(area_code="533"),
        NumberPurchase(area_code="415"),
    ]
    twilio.post(NUMBERS_URL, 201, resource())
    twilio.post(NUMBERS_URL, 400, twilio_error(21452))
    twilio.post(NUMBERS_URL, 502, "bad gateway")
    first = by_index(await collect(client.purchase_many(requests, concurrency=1, journal=journal)))
    posts = len(twilio.sent("POST", NUMBERS_URL))

    second = by_index(await collect(client.purchase_many(requests, concurrency=1, journal=journal)))
    assert len(twilio.sent("POST", NUMBERS_URL)) == posts == 3, "nothing is sent again"
    assert all(o.from_journal for o in second)
    assert [o.status for o in second] == [o.status for o in first]
    assert second[0].number == first[0].number
    assert isinstance(second[1].error, TwilioApiError)
    assert second[1].error.code == 21452
    assert isinstance(second[2].error, PurchaseOutcomeUnknownError)
    assert second[2].error.request == requests[2]


async def test_reordered_input_still_matches_the_journal(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    twilio.post(NUMBERS_URL, 201, resource(), repeat=True)
    twilio.post(MOBILE_URL, 201, resource(), repeat=True)
    requests: list[PurchaseRequest] = [
        NumberPurchase(area_code="500"),
        MobileNumberPurchase(phone_number="+447700900123"),
        NumberPurchase(area_code="500"),
    ]
    await collect(client.purchase_many(requests, journal=journal))
    again = await collect(client.purchase_many(list(reversed(requests)), journal=journal))
    assert len(again) == 3
    assert all(o.from_journal for o in again)
    # A third identical area-code request is a new purchase, not one of the two done.
    await collect(
        client.purchase_many([*requests, NumberPurchase(area_code="500")], journal=journal)
    )
    assert len(twilio.sent("POST", NUMBERS_URL)) == 3


async def write_intent(
    journal: Path, client: TwilioNumbersClient, request: PurchaseRequest
) -> None:
    """What a run killed during its first POST leaves behind: an intent, no outcome."""
    book = Journal.open(journal)
    form = encode_form(request)
    key = book.key(client.account_sid, request.endpoint, form, 0)
    await book.record_intent(
        key, index=0, account_sid=client.account_sid, endpoint=request.endpoint, form=form
    )
    await book.close()


async def test_an_interrupted_number_found_on_the_account_is_not_bought_again(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    request = NumberPurchase(phone_number="+15005550006")
    await write_intent(journal, client, request)
    twilio.get(FIND.format("5005550006"), 200, page(resource()))
    (outcome,) = await collect(client.purchase_many([request], journal=journal))
    assert outcome.ok
    assert outcome.reconciled
    assert outcome.attempts == 0
    assert twilio.sent("POST", NUMBERS_URL) == []


async def test_an_interrupted_number_not_on_the_account_is_bought(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    request = NumberPurchase(phone_number="+15005550006")
    await write_intent(journal, client, request)
    twilio.get(FIND.format("5005550006"), 200, page())
    twilio.post(NUMBERS_URL, 201, resource())
    (outcome,) = await collect(client.purchase_many([request], journal=journal))
    assert outcome.ok
    assert not outcome.reconciled
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1
    kinds = [json.loads(line)["kind"] for line in journal.read_text().splitlines()]
    assert kinds == ["intent", "outcome"]


async def test_an_interrupted_purchase_that_lands_late_is_still_ours(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    # The killed run's POST was still on its way: the look-up misses it, it commits, and the
    # resumed POST is refused as "not available". It is ours all the same.
    journal = tmp_path / "buy.jsonl"
    request = NumberPurchase(phone_number="+15005550006")
    await write_intent(journal, client, request)
    twilio.get(FIND.format("5005550006"), 200, page())
    twilio.post(NUMBERS_URL, 400, twilio_error(21422))
    twilio.get(FIND.format("5005550006"), 200, page(resource()))
    (outcome,) = await collect(client.purchase_many([request], journal=journal))
    assert outcome.status is OutcomeStatus.BOUGHT
    assert outcome.reconciled
    assert outcome.attempts == 1


async def test_an_interrupted_area_code_is_reported_unknown_without_io(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    request = NumberPurchase(area_code="415")
    await write_intent(journal, client, request)
    (outcome,) = await collect(client.purchase_many([request], journal=journal))
    assert outcome.status is OutcomeStatus.UNKNOWN
    assert isinstance(outcome.error, PurchaseOutcomeUnknownError)
    assert "earlier run stopped" in str(outcome.error)
    assert twilio.requests == []
    # ... and that verdict is recorded: the next run reads it, and still sends nothing.
    (again,) = await collect(client.purchase_many([request], journal=journal))
    assert again.from_journal
    assert again.status is OutcomeStatus.UNKNOWN
    assert twilio.requests == []


async def test_a_rerun_resends_only_what_twilio_never_processed(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    requests = [NumberPurchase(area_code="212"), NumberPurchase(area_code="533")]
    twilio.post(NUMBERS_URL, 401, twilio_error(20003, 401, "Authenticate"))
    twilio.post(NUMBERS_URL, 400, twilio_error(21452))
    first = by_index(await collect(client.purchase_many(requests, concurrency=1, journal=journal)))
    assert [o.status for o in first] == [OutcomeStatus.FAILED, OutcomeStatus.FAILED]

    # The credentials are fixed: the 401'd request is bought; the refused one stays refused.
    twilio.post(NUMBERS_URL, 201, resource(phone_number="+12125550100"))
    second = by_index(await collect(client.purchase_many(requests, concurrency=1, journal=journal)))
    assert [(o.status, o.from_journal) for o in second] == [
        (OutcomeStatus.BOUGHT, False),
        (OutcomeStatus.FAILED, True),
    ]
    assert len(twilio.sent("POST", NUMBERS_URL)) == 3

    third = by_index(await collect(client.purchase_many(requests, journal=journal)))
    assert all(o.from_journal for o in third)
    assert len(twilio.sent("POST", NUMBERS_URL)) == 3


async def test_a_bad_account_is_refused_before_the_journal_is_touched(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    with pytest.raises(ValueError, match="account_sid"):
        await collect(
            client.purchase_many(
                [NumberPurchase(area_code="415")], journal=journal, account_sid="AC-nope"
            )
        )
    assert not journal.exists()
    assert twilio.requests == []


# --- what the input and the unforeseen can do -------------------------------------------------


async def test_a_none_in_the_input_is_refused_not_taken_for_its_end(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, resource(), repeat=True)
    seen: list[PurchaseOutcome] = []
    with_none: list[Any] = [NumberPurchase(area_code="500"), None, NumberPurchase(area_code="500")]
    with pytest.raises(TypeError, match=r"requests\[1\] is a NoneType"):
        await collect_into(seen, client.purchase_many(with_none, concurrency=1))
    assert [o.index for o in seen] == [0]


async def test_a_failing_input_lets_what_is_in_flight_finish_first(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return reply(201, resource())

    def requests() -> Iterator[PurchaseRequest]:
        yield NumberPurchase(area_code="212")
        yield NumberPurchase(area_code="312")
        release.set()
        raise ValueError("the CSV reader broke")

    twilio.post(NUMBERS_URL, slow, repeat=True)
    seen: list[PurchaseOutcome] = []
    with pytest.raises(ValueError, match="the CSV reader broke"):
        await collect_into(seen, client.purchase_many(requests(), concurrency=4))
    assert sorted(o.index for o in seen) == [0, 1], "both purchases were reported"
    assert all(o.ok for o in seen)


async def test_a_job_failing_unforeseen_after_its_post_is_reported_unknown(
    fake_time: FakeTime,
) -> None:
    class Breaking:
        """A transport that sends the POST, and then breaks in a way nobody foresaw."""

        async def send(self, request: Request) -> Response:
            raise RuntimeError("...and then something broke")

        async def aclose(self) -> None:
            pass

    async with TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        area_codes="direct",
        rate_limit=None,
        retry=fake_time.policy(),
        transport=Breaking(),
    ) as client:
        outcomes = await collect(client.purchase_many([NumberPurchase(area_code="415")]))
    assert [o.status for o in outcomes] == [OutcomeStatus.UNKNOWN]
    error = outcomes[0].error
    assert isinstance(error, PurchaseOutcomeUnknownError)
    assert isinstance(error.cause, RuntimeError)


async def test_a_failure_in_doubt_is_looked_up_before_the_next_run_sends_it(
    fake_time: FakeTime, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    request = NumberPurchase(phone_number="+15005550006")
    find = FIND.format("5005550006")
    # First run: 500s until the attempts run out; the look-ups find nothing: failed.
    twilio.post(NUMBERS_URL, 500, twilio_error(20500, 500), repeat=True)
    twilio.get(find, 200, page(), repeat=True)
    async with TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        area_codes="direct",
        rate_limit=None,
        retry=fake_time.policy(max_attempts=2),
        transport=twilio,
    ) as first_client:
        (first,) = await collect(first_client.purchase_many([request], journal=journal))
    assert first.status is OutcomeStatus.FAILED
    # It was bought after all, and shows up late: the next run looks first, then its POST is
    # refused 21422, which a second look-up reads as ours.
    twilio.clear()
    twilio.get(find, 200, page())
    twilio.post(NUMBERS_URL, 400, twilio_error(21422))
    twilio.get(find, 200, page(resource()))
    async with TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        area_codes="direct",
        rate_limit=None,
        retry=fake_time.policy(),
        transport=twilio,
    ) as second_client:
        (second,) = await collect(second_client.purchase_many([request], journal=journal))
    assert (second.status, second.reconciled, second.from_journal) == (
        OutcomeStatus.BOUGHT,
        True,
        False,
    )
    assert [r.method for r in twilio.requests] == ["GET", "POST", "GET"], "it looked first"


async def test_the_journal_has_the_intent_before_the_post_and_the_outcome_before_the_yield(
    client: TwilioNumbersClient, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"

    def kinds() -> list[str]:
        return [json.loads(line)["kind"] for line in journal.read_text().splitlines()]

    on_disk_at_the_post: list[list[str]] = []

    def check_intent(request: Request) -> Response:
        on_disk_at_the_post.append(kinds())
        return reply(201, resource())

    twilio.post(NUMBERS_URL, check_intent)
    async for outcome in client.purchase_many([NumberPurchase(area_code="500")], journal=journal):
        assert outcome.ok
        assert kinds() == ["intent", "outcome"], "the outcome is on disk before it is yielded"
    # Checked here, not in the answer: the library would read an error raised there as the
    # POST's unknown fate, and the loop above would pass all the same.
    assert on_disk_at_the_post == [["intent"]], "the intent is on disk before the POST is sent"


async def test_closed_early_without_a_journal_logs_what_was_bought_and_not_handed_over(
    client: TwilioNumbersClient, twilio: MemoryTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    """No journal keeps them: a number bought but never yielded is at least in the log."""
    numbers = [f"+1500555{i:04d}" for i in range(3)]
    for i, number in enumerate(numbers):
        twilio.post(NUMBERS_URL, 201, resource(phone_number=number, sid=f"PN{i:032d}"))
    hang = Hang()
    twilio.post(NUMBERS_URL, hang)
    requests = [NumberPurchase(phone_number=n) for n in [*numbers, "+15005550009"]]
    run = client.purchase_many(requests, concurrency=4)
    first = await anext(run)
    await hang.reached()  # all four sent: the others answered and not handed over, one held
    await asyncio.sleep(0)
    await run.aclose()
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    handed = first.number.phone_number if first.ok else None
    logged = {number for number in numbers for line in said if number in line}
    assert all("before it was handed over" in line for line in said if "bought +" in line)
    assert logged == set(numbers) - {handed}, said
    assert any("+15005550009" in line and "may have bought" in line for line in said), said
