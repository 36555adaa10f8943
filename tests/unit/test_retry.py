"""Retries never buy twice: the pure decision, the policy's arithmetic, and every path of the loop.

The loop's paths run against Twilio in memory, which answers each request from a script, on a
fake clock: no test sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests._memory import Hang, Lost, MemoryTwilio, reply
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    NUMBERS_URL,
    FakeTime,
    RecordingLimiter,
    page,
    purchase_result,
    resource,
    twilio_error,
)
from twilio_numbers_async import (
    FailureKind,
    NumberPurchase,
    PurchaseOutcomeUnknownError,
    RateLimitedError,
    RetryEvent,
    RetryPolicy,
    TransportError,
    TwilioApiError,
    TwilioNumbersClient,
)
from twilio_numbers_async._serde import parse_retry_after
from twilio_numbers_async._transport import Request, Response
from twilio_numbers_async.errors import (
    AuthenticationError,
    RequestValidationError,
    ResponseParseError,
    TwilioNumbersError,
)
from twilio_numbers_async.retry import classify

FIND_URL = f"{NUMBERS_URL}?PhoneNumber=%2B15005550006&PageSize=50"
GIVEN = NumberPurchase(phone_number="+15005550006")
ANY_IN_415 = NumberPurchase(area_code="415")


def api_error(status: int, code: int | None = None) -> TwilioApiError:
    return TwilioApiError(status=status, code=code, message="x", method="POST", url=NUMBERS_URL)


# --- the pure decision ------------------------------------------------------------------------

CASES: list[tuple[TwilioNumbersError, FailureKind]] = [
    (RateLimitedError(status=429, code=20429), FailureKind.NOT_PROCESSED),
    (api_error(429), FailureKind.NOT_PROCESSED),
    (api_error(400, 20429), FailureKind.NOT_PROCESSED),
    (TransportError("refused", method="POST", url="u", sent=False), FailureKind.NOT_PROCESSED),
    (TransportError("reset", method="POST", url="u", sent=True), FailureKind.UNKNOWN),
    *((api_error(status), FailureKind.UNKNOWN) for status in (500, 502, 503, 504, 599)),
    *(
        (api_error(status, code), FailureKind.REJECTED)
        for status, code in ((400, 21422), (400, 21452), (403, 20003), (404, 20404), (409, None))
    ),
    (AuthenticationError(status=401, code=20003), FailureKind.REJECTED),
    (api_error(302), FailureKind.REJECTED),
    (ResponseParseError("bad", status=201, body="", sid="PN" + "0" * 32), FailureKind.REJECTED),
    (ResponseParseError("names nothing", status=201, body="{}", sid=None), FailureKind.UNKNOWN),
    (RequestValidationError("area_code", "bad"), FailureKind.REJECTED),
    (
        PurchaseOutcomeUnknownError(ANY_IN_415, api_error(500), account_sid=ACCOUNT_SID),
        FailureKind.REJECTED,
    ),
]


@pytest.mark.parametrize(("error", "kind"), CASES, ids=lambda value: repr(value)[:40])
def test_classify(error: TwilioNumbersError, kind: FailureKind) -> None:
    assert classify(error) is kind


def test_every_status_from_400_to_599_has_one_kind() -> None:
    for status in range(400, 600):
        kind = classify(api_error(status))
        expected = (
            FailureKind.NOT_PROCESSED
            if status == 429
            else FailureKind.UNKNOWN
            if status >= 500
            else FailureKind.REJECTED
        )
        assert kind is expected, status


# --- the policy -------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    top = RetryPolicy(initial_delay=0.5, max_delay=4.0, random=lambda: 0.999999)
    assert [round(top.backoff(n), 3) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    bottom = RetryPolicy(random=lambda: 0.0)
    assert bottom.backoff(3) == 0.0


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999", "soon", ""])
def test_a_retry_after_that_is_no_wait_is_ignored(value: str) -> None:
    assert parse_retry_after(value, now=datetime.now(UTC)) is None


def test_retry_after_is_honoured_even_above_max_delay() -> None:
    policy = RetryPolicy(max_delay=1.0, random=lambda: 0.5)
    assert policy.delay_for(RateLimitedError(status=429, retry_after=7.5), 1) == 7.5
    # Without one, a concurrency refusal: backed off, since other programs may hold the room.
    assert policy.delay_for(RateLimitedError(status=429), 1) == policy.backoff(1) == 0.25


def test_durations_take_timedeltas_and_are_checked() -> None:
    policy = RetryPolicy(
        initial_delay=timedelta(milliseconds=250), max_elapsed=timedelta(minutes=1)
    )
    assert (policy.initial_delay, policy.max_elapsed) == (0.25, 60.0)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_delay"):
        RetryPolicy(max_delay=-1)
    with pytest.raises(ValueError, match="initial_delay"):
        RetryPolicy(initial_delay=float("nan"))
    assert RetryPolicy.no_retries().max_attempts == 1


# --- the loop: not processed ------------------------------------------------------------------


def make_client(fake_time: FakeTime, twilio: MemoryTwilio, **kwargs: Any) -> TwilioNumbersClient:
    policy = kwargs.pop("retry", None) or fake_time.policy(random=lambda: 0.5)
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("area_codes", "direct")  # no search first: each answer is scripted
    return TwilioNumbersClient(ACCOUNT_SID, AUTH_TOKEN, retry=policy, transport=twilio, **kwargs)


async def test_a_429_waits_retry_after_and_pauses_everyone(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    limiter = RecordingLimiter()
    twilio.post(NUMBERS_URL, 429, twilio_error(20429, 429), headers={"Retry-After": "3"})
    twilio.post(NUMBERS_URL, 201, resource())
    async with make_client(fake_time, twilio, rate_limit=limiter) as client:
        result = await purchase_result(client, ANY_IN_415)
    assert fake_time.sleeps == [3.0]
    assert limiter.pauses == [3.0]
    assert limiter.acquired == 2, "every attempt takes a token, retries included"
    assert (result.attempts, result.reconciled) == (2, False)


async def test_a_429_without_retry_after_lowers_the_limit_and_holds_nobody_else(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    limiter = RecordingLimiter()
    twilio.post(NUMBERS_URL, 429, twilio_error(20429, 429))
    twilio.post(NUMBERS_URL, 201, resource(), repeat=True)
    async with make_client(fake_time, twilio, rate_limit=limiter) as client:
        # Ten in flight: the third is refused, so the account takes two at most.
        await asyncio.gather(*(client.purchase(ANY_IN_415) for _ in range(10)))
        assert client.concurrency.limit < 32, "the adaptive limit dropped below its start"
    assert limiter.pauses == [], "a concurrency refusal pauses nobody"
    # Its own retry backs off (0.25: the first backoff at half its ceiling): the room may be
    # another program's.
    assert fake_time.sleeps == [0.25], "the refused request alone waits"


async def test_retry_after_as_an_http_date(fake_time: FakeTime, twilio: MemoryTwilio) -> None:
    twilio.post(
        NUMBERS_URL,
        429,
        twilio_error(20429, 429),
        headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},  # long past: retry at once
    )
    twilio.post(NUMBERS_URL, 201, resource())
    async with make_client(fake_time, twilio) as client:
        await client.purchase(ANY_IN_415)
    assert fake_time.sleeps == [0.0]


async def test_a_retry_after_beyond_the_budget_raises_at_once(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 429, twilio_error(20429, 429), headers={"Retry-After": "300"})
    async with make_client(fake_time, twilio, retry=fake_time.policy(max_elapsed=120)) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.purchase(ANY_IN_415)
    assert caught.value.retry_after == 300.0
    assert fake_time.sleeps == [], "no sleep that can't pay off"


async def test_429s_until_attempts_run_out(fake_time: FakeTime, twilio: MemoryTwilio) -> None:
    twilio.post(NUMBERS_URL, 429, twilio_error(20429, 429), repeat=True)
    async with make_client(fake_time, twilio, retry=fake_time.policy(max_attempts=3)) as client:
        with pytest.raises(RateLimitedError):
            await client.purchase(ANY_IN_415)
    assert len(twilio.sent("POST", NUMBERS_URL)) == 3
    assert len(fake_time.sleeps) == 2


async def test_a_connect_failure_is_retried(fake_time: FakeTime, twilio: MemoryTwilio) -> None:
    twilio.post(NUMBERS_URL, Lost(sent=False))
    twilio.post(NUMBERS_URL, 201, resource())
    async with make_client(fake_time, twilio) as client:
        number = await client.purchase(ANY_IN_415)
    assert number.sid is not None
    assert len(twilio.sent("POST", NUMBERS_URL)) == 2


async def test_connect_failures_until_attempts_run_out(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, Lost(sent=False), repeat=True)
    async with make_client(fake_time, twilio, retry=fake_time.policy(max_attempts=2)) as client:
        with pytest.raises(TransportError) as caught:
            await client.purchase(ANY_IN_415)
    assert caught.value.sent is False
    assert len(twilio.sent("POST", NUMBERS_URL)) == 2


# --- the loop: unknown ------------------------------------------------------------------------


async def test_a_5xx_on_a_given_number_is_reconciled_not_repeated(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 500, twilio_error(20500, 500))
    twilio.get(FIND_URL, 200, page(resource()))
    async with make_client(fake_time, twilio) as client:
        result = await purchase_result(client, GIVEN)
    number = result.number
    assert number is not None
    assert number.phone_number == "+15005550006"
    assert result.reconciled
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1, "owned: never POSTed again"


async def test_a_dropped_connection_then_not_owned_is_sent_again(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, Lost(sent=True))
    twilio.get(FIND_URL, 200, page())
    twilio.post(NUMBERS_URL, 201, resource())
    async with make_client(fake_time, twilio) as client:
        result = await purchase_result(client, GIVEN)
    assert (result.attempts, result.reconciled) == (2, False)
    assert len(twilio.sent("GET", FIND_URL)) == 1


async def test_a_read_timeout_on_an_area_code_is_never_repeated(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, Lost(sent=True, reason="read timed out"))
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(PurchaseOutcomeUnknownError) as caught:
            await client.purchase(ANY_IN_415)
    assert caught.value.request == ANY_IN_415
    assert isinstance(caught.value.cause, TransportError)
    assert caught.value.cause.sent is True
    assert caught.value.account_sid == ACCOUNT_SID
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1
    assert fake_time.sleeps == []


async def test_a_21422_after_an_unknown_attempt_means_we_bought_it(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    # The first attempt's fate is unknown and the first look-up misses it (it commits late);
    # the retry is then refused as "not available": a second look-up finds it ours.
    twilio.post(NUMBERS_URL, 503, "unavailable", headers={"Content-Type": "text/plain"})
    twilio.get(FIND_URL, 200, page())
    twilio.post(NUMBERS_URL, 400, twilio_error(21422))
    twilio.get(FIND_URL, 200, page(resource()))
    async with make_client(fake_time, twilio) as client:
        result = await purchase_result(client, GIVEN)
    number = result.number
    assert number is not None
    assert number.sid == "PN" + "1" * 32
    assert result.reconciled
    assert len(twilio.sent("POST", NUMBERS_URL)) == 2


async def test_a_21422_after_an_unknown_attempt_that_is_not_ours_is_reported(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 500, twilio_error(20500, 500))
    twilio.get(FIND_URL, 200, page(), repeat=True)
    twilio.post(NUMBERS_URL, 400, twilio_error(21422))
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(TwilioApiError) as caught:
            await client.purchase(GIVEN)
    assert caught.value.code == 21422
    assert len(twilio.sent("GET", FIND_URL)) == 2


async def test_a_21422_with_no_unknown_attempt_is_not_looked_up(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 400, twilio_error(21422))
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(TwilioApiError):
            await client.purchase(GIVEN)
    assert twilio.sent("GET", FIND_URL) == []


async def test_out_of_attempts_after_an_unknown_one_looks_one_last_time(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 429, twilio_error(20429, 429))
    twilio.post(NUMBERS_URL, 502, "bad gateway")
    twilio.get(FIND_URL, 200, page(resource()))
    async with make_client(fake_time, twilio, retry=fake_time.policy(max_attempts=2)) as client:
        result = await purchase_result(client, GIVEN)
    number = result.number
    assert number is not None
    assert number.sid is not None
    assert result.reconciled


async def test_out_of_attempts_and_not_owned_reports_the_last_failure(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 500, twilio_error(20500, 500), repeat=True)
    twilio.get(FIND_URL, 200, page(), repeat=True)
    async with make_client(fake_time, twilio, retry=fake_time.policy(max_attempts=3)) as client:
        with pytest.raises(TwilioApiError) as caught:
            await client.purchase(GIVEN)
    assert caught.value.status == 500
    assert len(twilio.sent("POST", NUMBERS_URL)) == 3
    # One look-up before each retry, and a last one after the last attempt.
    assert len(twilio.sent("GET", FIND_URL)) == 3


async def test_no_retries_still_reconciles(fake_time: FakeTime, twilio: MemoryTwilio) -> None:
    twilio.post(NUMBERS_URL, Lost(sent=True))
    twilio.get(FIND_URL, 200, page(resource()))
    async with make_client(fake_time, twilio, retry=RetryPolicy.no_retries()) as client:
        number = await client.purchase(GIVEN)
    assert number.phone_number == "+15005550006"


async def test_a_failed_look_up_leaves_the_outcome_unknown(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 500, twilio_error(20500, 500))
    twilio.get(FIND_URL, 403, twilio_error(20003, 403))
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(PurchaseOutcomeUnknownError) as caught:
            await client.purchase(GIVEN)
    assert isinstance(caught.value.cause, TwilioApiError)
    assert caught.value.cause.status == 500
    assert isinstance(caught.value.__cause__, TwilioApiError)
    assert caught.value.__cause__.status == 403


async def test_the_look_up_itself_is_retried(fake_time: FakeTime, twilio: MemoryTwilio) -> None:
    twilio.post(NUMBERS_URL, 504, twilio_error(20504, 504))
    twilio.get(FIND_URL, 503, "busy")
    twilio.get(FIND_URL, Lost(sent=True))
    twilio.get(FIND_URL, 200, page(resource()))
    async with make_client(fake_time, twilio) as client:
        number = await client.purchase(GIVEN)
    assert number.sid is not None
    assert len(twilio.sent("GET", FIND_URL)) == 3


# --- the loop: rejected, hooks, budget --------------------------------------------------------


async def test_a_rejection_is_raised_at_once(fake_time: FakeTime, twilio: MemoryTwilio) -> None:
    twilio.post(NUMBERS_URL, 400, twilio_error(21452))
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(TwilioApiError) as caught:
            await client.purchase(ANY_IN_415)
    assert caught.value.code == 21452
    assert fake_time.sleeps == []


async def test_the_hook_hears_of_every_retry(fake_time: FakeTime, twilio: MemoryTwilio) -> None:
    events: list[RetryEvent] = []
    twilio.post(NUMBERS_URL, 429, twilio_error(20429, 429), headers={"Retry-After": "2"})
    twilio.post(NUMBERS_URL, Lost(sent=True))
    twilio.get(FIND_URL, 200, page())
    twilio.post(NUMBERS_URL, 201, resource())
    # The 429's pause goes to a limiter that only records it: nobody waits a real 2 s.
    limiter = RecordingLimiter()
    async with make_client(fake_time, twilio, on_retry=events.append, rate_limit=limiter) as client:
        await client.purchase(GIVEN)
    assert limiter.pauses == [2.0]
    assert [(e.operation, e.attempt, e.kind, e.wait) for e in events] == [
        ("purchase", 1, FailureKind.NOT_PROCESSED, 2.0),
        ("purchase", 2, FailureKind.UNKNOWN, 0.5),
    ]
    assert isinstance(events[0].error, RateLimitedError)


async def test_the_time_budget_ends_retries(fake_time: FakeTime, twilio: MemoryTwilio) -> None:
    twilio.post(
        NUMBERS_URL,
        429,
        twilio_error(20429, 429),
        headers={"Retry-After": "1"},
        repeat=True,
    )
    policy = fake_time.policy(
        max_attempts=100, initial_delay=1, max_delay=1, max_elapsed=5, random=lambda: 0.999
    )
    # The pauses go to a limiter that only records them: the fake clock alone keeps the time.
    async with make_client(
        fake_time, twilio, retry=policy, rate_limit=RecordingLimiter()
    ) as client:
        with pytest.raises(RateLimitedError):
            await client.purchase(ANY_IN_415)
    assert sum(fake_time.sleeps) <= 5
    assert len(twilio.sent("POST", NUMBERS_URL)) == 6


async def test_cancelling_a_purchase_cancels_it_cleanly(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    hang = Hang()
    twilio.post(NUMBERS_URL, hang)
    async with make_client(fake_time, twilio) as client:
        task = asyncio.create_task(client.purchase(ANY_IN_415))
        await hang.reached()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert hang.cancelled == 1


async def test_a_429_that_ends_the_retries_still_pauses_everyone(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    limiter = RecordingLimiter()
    twilio.post(NUMBERS_URL, 429, twilio_error(20429, 429), headers={"Retry-After": "30"})
    async with make_client(
        fake_time, twilio, rate_limit=limiter, retry=fake_time.policy(max_elapsed=2)
    ) as client:
        with pytest.raises(RateLimitedError):
            await client.purchase(ANY_IN_415)
    assert limiter.pauses == [30.0], "the others must wait what Twilio asked, though this gave up"


async def test_one_look_up_per_unknown_outcome_not_per_retry(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 500, twilio_error(20500, 500))
    twilio.get(FIND_URL, 200, page(), repeat=True)
    twilio.post(NUMBERS_URL, 429, twilio_error(20429, 429))
    twilio.post(NUMBERS_URL, 429, twilio_error(20429, 429))
    twilio.post(NUMBERS_URL, 201, resource())
    async with make_client(fake_time, twilio) as client:
        await client.purchase(GIVEN)
    # 429s say nothing was processed: after the one look-up, nothing new to look for.
    assert len(twilio.sent("GET", FIND_URL)) == 1
    assert len(twilio.sent("POST", NUMBERS_URL)) == 4


async def test_no_post_starts_once_a_look_up_has_spent_the_budget(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    """A POST whose answer is lost, then a look-up slow enough to spend what max_elapsed left:
    sending again then would end past max_elapsed. The caller sees the lost answer, and the
    purchase stays in doubt (a bulk run's next run looks before it sends)."""

    def lost_after_the_timeout(_: Request) -> Lost:
        fake_time.now += 30.0
        return Lost(sent=True)

    def slow_look_up(_: Request) -> Response:
        fake_time.now += 35.0
        return reply(200, page())

    twilio.post(NUMBERS_URL, lost_after_the_timeout)
    twilio.get(FIND_URL, slow_look_up)
    policy = fake_time.policy(max_elapsed=60, random=lambda: 0.0)
    async with TwilioNumbersClient(
        ACCOUNT_SID, AUTH_TOKEN, retry=policy, transport=twilio, timeout=30
    ) as client:
        result = await client._engine.start(GIVEN, ACCOUNT_SID).run()
    assert isinstance(result.error, TransportError)
    assert result.in_doubt
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1, "no second POST past max_elapsed"


async def test_a_wait_for_a_shared_slot_ends_with_the_budget() -> None:
    """Slots shared with other processes (a RedisSemaphore, say), all held elsewhere: the
    purchase fails "not sent" when its budget ends, rather than wait on."""
    shared = asyncio.Semaphore(1)
    await shared.acquire()  # another worker holds the only one, and keeps it
    twilio = MemoryTwilio()
    async with TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        transport=twilio,
        max_concurrency=shared,
        retry=RetryPolicy(max_elapsed=0.05),
    ) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.purchase(GIVEN)
    assert caught.value.from_limiter
    assert twilio.sent("POST", NUMBERS_URL) == []
