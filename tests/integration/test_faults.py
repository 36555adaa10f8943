"""Every fault Twilio and the network can produce, against a real server on loopback.

Each scenario scripts the sandbox's answer to the next POST, then checks what the caller got,
how many POSTs the server saw, and what it sold: no fault may end with a number bought twice,
or bought without the caller knowing.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import FakeTime, posts, purchase_result, sold
from twilio_numbers_async import (
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseOutcomeUnknownError,
    RateLimitedError,
    RetryEvent,
    TokenBucket,
    TransportError,
    TwilioApiError,
    TwilioNumbersClient,
)
from twilio_numbers_async._purchase import PurchaseResult
from twilio_numbers_async.sandbox import Fault, Faults, Sandbox

GIVEN = NumberPurchase(phone_number="+14155550123")
MOBILE = MobileNumberPurchase(phone_number="+447700900123")
AREA = NumberPurchase(area_code="415")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=7) as sandbox:
        yield sandbox


def client_for(sandbox: Sandbox, fake_time: FakeTime, **kwargs: Any) -> TwilioNumbersClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", fake_time.policy(random=lambda: 0.5))
    return sandbox.client(**kwargs)


async def buy(client: TwilioNumbersClient, request: Any) -> tuple[Any, PurchaseResult]:
    """The number bought (or the error raised), and the purchase's whole result."""
    async with client:
        result = await purchase_result(client, request)
    if result.error is not None:
        raise result.error
    return result.number, result


# --- not processed: retried -------------------------------------------------------------------


async def test_429_with_retry_after(sandbox: Sandbox, fake_time: FakeTime) -> None:
    sandbox.script(Fault.rate_limited(retry_after=2))
    number, result = await buy(client_for(sandbox, fake_time), GIVEN)
    assert number.phone_number == GIVEN.phone_number
    assert fake_time.sleeps == [2.0]
    assert (posts(sandbox), sold(sandbox), result.attempts) == (2, [GIVEN.phone_number], 2)
    assert [r.status for r in sandbox.requests] == [429, 201], "one 429, then the purchase"


async def test_429_without_retry_after(sandbox: Sandbox, fake_time: FakeTime) -> None:
    sandbox.script(Fault.rate_limited(), Fault.rate_limited())
    number, _ = await buy(client_for(sandbox, fake_time), AREA)
    assert number.phone_number is not None
    # Backed off (half of each ceiling: 0.5, 1.0), this request alone: the room may be held by
    # another program on the account, which a retry at once would meet again.
    assert fake_time.sleeps == [0.25, 0.5]
    assert posts(sandbox) == 3
    assert len(sold(sandbox)) == 1


async def test_429s_past_the_budget(sandbox: Sandbox, fake_time: FakeTime) -> None:
    sandbox.script(*[Fault.rate_limited(retry_after=1)] * 5)
    with pytest.raises(RateLimitedError) as caught:
        await buy(client_for(sandbox, fake_time), AREA)
    assert caught.value.retry_after == 1.0
    assert (posts(sandbox), sold(sandbox)) == (5, [])


async def test_connection_refused_is_retried_then_reported(fake_time: FakeTime) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on `port` now: every connect is refused.
    client = TwilioNumbersClient(
        "AC" + "0" * 32,
        "token",
        base_url=f"http://127.0.0.1:{port}",
        rate_limit=None,
        retry=fake_time.policy(max_attempts=3),
    )
    with pytest.raises(TransportError) as caught:
        await buy(client, AREA)
    assert caught.value.sent is False
    assert len(fake_time.sleeps) == 2, "refused connections are safe to retry"


# --- unknown: a given number is reconciled ----------------------------------------------------


async def test_5xx_before_the_purchase(sandbox: Sandbox, fake_time: FakeTime) -> None:
    sandbox.script(Fault.server_error(503))
    number, result = await buy(client_for(sandbox, fake_time), GIVEN)
    assert number.phone_number == GIVEN.phone_number
    assert not result.reconciled, "the look-up found nothing, so it was bought by the retry"
    assert (posts(sandbox), sold(sandbox)) == (2, [GIVEN.phone_number])


@pytest.mark.parametrize("fault", [Fault.error_after_commit(500), Fault.drop_after_commit()])
async def test_purchase_committed_then_the_answer_lost(
    sandbox: Sandbox, fake_time: FakeTime, fault: Fault
) -> None:
    sandbox.script(fault)
    number, result = await buy(client_for(sandbox, fake_time), GIVEN)
    assert result.reconciled
    assert (posts(sandbox), sold(sandbox)) == (1, [GIVEN.phone_number])
    assert number.sid == sandbox.purchases[0].sid


async def test_a_mobile_purchase_is_reconciled_too(sandbox: Sandbox, fake_time: FakeTime) -> None:
    sandbox.script(Fault.drop_after_commit())
    number, result = await buy(client_for(sandbox, fake_time), MOBILE)
    assert result.reconciled
    assert number.phone_number == MOBILE.phone_number
    assert (posts(sandbox), sold(sandbox)) == (1, [MOBILE.phone_number])


async def test_connection_dropped_before_the_purchase(
    sandbox: Sandbox, fake_time: FakeTime
) -> None:
    sandbox.script(Fault.drop_before_commit())
    _, result = await buy(client_for(sandbox, fake_time), GIVEN)
    assert (result.attempts, result.reconciled) == (2, False)
    assert (posts(sandbox), sold(sandbox)) == (2, [GIVEN.phone_number])


async def test_a_response_slower_than_the_timeout(sandbox: Sandbox, fake_time: FakeTime) -> None:
    sandbox.script(Fault.slow_after_commit(5))
    number, result = await buy(client_for(sandbox, fake_time, timeout=0.2), GIVEN)
    assert result.reconciled
    assert number.sid == sandbox.purchases[0].sid
    assert (posts(sandbox), sold(sandbox)) == (1, [GIVEN.phone_number])


async def test_faults_in_a_row_still_buy_once(sandbox: Sandbox, fake_time: FakeTime) -> None:
    sandbox.script(
        Fault.rate_limited(),
        Fault.drop_before_commit(),
        Fault.server_error(502),
        Fault.error_after_commit(504),
    )
    number, result = await buy(client_for(sandbox, fake_time), GIVEN)
    assert result.reconciled
    assert number.phone_number == GIVEN.phone_number
    assert (posts(sandbox), sold(sandbox)) == (4, [GIVEN.phone_number])


# --- unknown: an area code ------------------------------------------------------------------


UNKNOWN_FAULTS = pytest.mark.parametrize(
    ("fault", "bought"),
    [
        (Fault.server_error(500), 0),
        (Fault.drop_before_commit(), 0),
        (Fault.error_after_commit(502), 1),
        (Fault.drop_after_commit(), 1),
        (Fault.slow_after_commit(5), 1),
    ],
)


@UNKNOWN_FAULTS
async def test_an_area_code_bought_through_a_search_is_reconciled_like_a_given_number(
    sandbox: Sandbox, fake_time: FakeTime, fault: Fault, bought: int
) -> None:
    sandbox.script(fault)
    number, result = await buy(client_for(sandbox, fake_time, timeout=0.2), AREA)
    assert number.phone_number.startswith("+1415")
    assert sold(sandbox) == [number.phone_number], "one number, whatever the fault"
    # Committed before the fault: found by a look-up, never POSTed again. Not committed: the
    # look-up finds nothing, and the same candidate is POSTed again.
    assert (result.reconciled, posts(sandbox)) == ((True, 1) if bought else (False, 2))
    searched = [r for r in sandbox.requests if "AvailablePhoneNumbers" in r.path]
    assert len(searched) == 1
    assert {r.form["PhoneNumber"] for r in sandbox.requests if r.method == "POST"} == {
        number.phone_number
    }, "every POST named the candidate, never the area code"


@UNKNOWN_FAULTS
async def test_an_area_code_posted_directly_is_reported_unknown_not_repeated(
    sandbox: Sandbox, fake_time: FakeTime, fault: Fault, bought: int
) -> None:
    sandbox.script(fault)
    with pytest.raises(PurchaseOutcomeUnknownError) as caught:
        await buy(client_for(sandbox, fake_time, timeout=0.2, area_codes="direct"), AREA)
    assert caught.value.request == AREA
    assert posts(sandbox) == 1
    assert len(sold(sandbox)) == bought, "what was sold is exactly what the caller calls unknown"


async def test_an_area_code_with_no_numbers_is_21452_and_nothing_is_posted(
    sandbox: Sandbox, fake_time: FakeTime
) -> None:
    async with client_for(sandbox, fake_time) as client:
        with pytest.raises(TwilioApiError) as caught:
            await client.create_incoming_phone_number(area_code="533")
    assert caught.value.code == 21452
    assert "area code 533" in caught.value.message
    assert posts(sandbox) == 0


# --- rejected ---------------------------------------------------------------------------------


async def test_an_unavailable_number_is_rejected_at_once(
    sandbox: Sandbox, fake_time: FakeTime
) -> None:
    with pytest.raises(TwilioApiError) as caught:
        await buy(client_for(sandbox, fake_time), NumberPurchase(phone_number="+15005550000"))
    assert caught.value.code == 21422
    assert caught.value.request_id is not None
    assert (posts(sandbox), sold(sandbox), fake_time.sleeps) == (1, [], [])


# --- the shared limiter -----------------------------------------------------------------------


async def test_a_429_holds_every_coroutine_of_the_client(sandbox: Sandbox) -> None:
    """After one purchase is told to wait, another one started meanwhile waits too."""
    retry_after = 0.3
    refused = asyncio.Event()

    def on_retry(event: RetryEvent) -> None:
        refused.set()

    sandbox.script(Fault.rate_limited(retry_after=retry_after))
    async with sandbox.client(rate_limit=TokenBucket(100), on_retry=on_retry) as client:
        first = asyncio.create_task(client.purchase(GIVEN))
        await refused.wait()
        second = asyncio.create_task(client.purchase(AREA))
        await asyncio.gather(first, second)
    limited, *later = [r for r in sandbox.requests if r.method == "POST"]
    assert len(later) == 2
    assert limited.status == 429
    assert limited.finished_at is not None
    # The pause began when the client read the 429, after the sandbox had sent it.
    earliest = min(r.started_at for r in later)
    assert earliest >= limited.finished_at + retry_after, "nobody went before the pause ended"


async def test_a_client_closed_mid_purchase_reports_it_unknown_not_lost(
    sandbox: Sandbox, fake_time: FakeTime
) -> None:
    sandbox.script(Fault.slow_after_commit(5))  # bought, and the answer takes its time
    client = client_for(sandbox, fake_time)
    task = asyncio.create_task(client.purchase(GIVEN))
    async with asyncio.timeout(10):
        while not sandbox.purchases:  # noqa: ASYNC110 - the sandbox signals nothing: look
            await asyncio.sleep(0.01)
    await client.aclose()  # the POST's connection goes with the session; no look-up can follow
    with pytest.raises(PurchaseOutcomeUnknownError) as caught:
        await task
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert sold(sandbox) == [GIVEN.phone_number], "bought: the caller was told it may have been"


async def test_max_concurrency_caps_the_requests_in_flight() -> None:
    requests = [NumberPurchase(area_code="212") for _ in range(12)]
    async with (
        Sandbox(seed=2, faults=Faults(latency=0.03)) as sandbox,
        sandbox.client(rate_limit=None, max_concurrency=3) as client,
    ):
        outcomes = [o async for o in client.purchase_many(requests, concurrency=10)]
    assert all(o.ok for o in outcomes)
    spans = [(r.started_at, r.finished_at or r.started_at) for r in sandbox.requests]
    busiest = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert busiest <= 3, "ten workers, three slots: never more than three in flight"
    assert busiest >= 2, "and they did overlap: the cap was tested, not idle"


async def test_a_cancelled_purchase_gives_its_slot_back(
    sandbox: Sandbox, fake_time: FakeTime
) -> None:
    sandbox.script(Fault.slow_after_commit(5))
    async with client_for(sandbox, fake_time, max_concurrency=1) as client:
        task = asyncio.create_task(client.purchase(GIVEN))
        async with asyncio.timeout(10):
            while not sandbox.purchases:  # noqa: ASYNC110 - the sandbox signals nothing: look
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The one slot came back: the next purchase goes through at once.
        number = await asyncio.wait_for(client.purchase(AREA), 5)
    assert number.phone_number is not None
