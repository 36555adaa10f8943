"""What an outside fault suite broke (issue 12): hostile answers, a raising hook, leaks.

Each test here failed before its fix. They run against Twilio in memory on a fake clock, or, for
what only a real socket can produce (a malformed status line), a raw server on loopback, or, for
a bulk run stopped midway, the sandbox.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests._memory import MemoryTwilio, reply
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    NUMBERS_URL,
    FakeTime,
    page,
    posts,
    resource,
    sold,
    twilio_error,
)
from twilio_numbers_async import (
    ClientClosedError,
    NumberPurchase,
    OutcomeStatus,
    PurchaseOutcome,
    PurchaseOutcomeUnknownError,
    RateLimitedError,
    ResponseParseError,
    RetryEvent,
    TokenBucket,
    TransportError,
    TwilioApiError,
    TwilioNumbersClient,
)
from twilio_numbers_async._transport import Request, Response
from twilio_numbers_async.sandbox import Faults, Sandbox

FIND_URL = f"{NUMBERS_URL}?PhoneNumber=%2B15005550006&PageSize=50"
PAGE_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
GIVEN = NumberPurchase(phone_number="+15005550006")
ANY_IN_415 = NumberPurchase(area_code="415")
CREDENTIALS = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


def make_client(fake_time: FakeTime, twilio: MemoryTwilio, **kwargs: Any) -> TwilioNumbersClient:
    kwargs.setdefault("retry", fake_time.policy(random=lambda: 0.5))
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("area_codes", "direct")  # no search first: each answer is scripted
    return TwilioNumbersClient(ACCOUNT_SID, AUTH_TOKEN, transport=twilio, **kwargs)


# --- 1. credentials only ever go to the configured host ---------------------------------------


@pytest.mark.parametrize(
    "next_page_uri",
    [
        f"https://evil.example{PAGE_PATH}?Page=1",
        f"https://api.twilio.com:8443{PAGE_PATH}?Page=1",
        f"http://api.twilio.com{PAGE_PATH}?Page=1",
        f"http://evil.example{PAGE_PATH}?Page=1",
    ],
)
async def test_a_page_link_to_another_origin_is_never_followed(
    fake_time: FakeTime, twilio: MemoryTwilio, next_page_uri: str
) -> None:
    twilio.get(FIND_URL, 200, page(next_page_uri=next_page_uri))
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(ResponseParseError, match="another host"):
            await client.find_incoming_phone_number("+15005550006")
    assert len(twilio.requests) == 1, "the link was not followed"


# --- 4. a look-up always ends -----------------------------------------------------------------


async def test_a_page_link_back_to_a_page_already_read_ends_the_look_up(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    again = f"{PAGE_PATH}?PhoneNumber=%2B15005550006&PageSize=50"
    twilio.get(FIND_URL, 200, page(next_page_uri=again), repeat=True)
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(ResponseParseError, match="already read"):
            await client.find_incoming_phone_number("+15005550006")
    assert len(twilio.sent("GET", FIND_URL)) == 1


async def test_paging_that_never_ends_is_bounded_by_the_time_budget(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    pages_read = 0

    def next_page(request: Request) -> Response:
        nonlocal pages_read
        pages_read += 1
        fake_time.now += 1.0  # each page takes a second of the budget
        return reply(200, page(next_page_uri=f"{PAGE_PATH}?Page={pages_read}&PageToken=t"))

    # Every page links to the next, however many are read: only the budget can end the look-up.
    twilio.get(FIND_URL, next_page)
    for number in range(1, 200):
        url = f"https://api.twilio.com{PAGE_PATH}?Page={number}&PageToken=t"
        twilio.get(url, next_page, repeat=True)
    async with make_client(fake_time, twilio, retry=fake_time.policy(max_elapsed=10)) as client:
        with pytest.raises(ResponseParseError, match="max_elapsed"):
            await client.find_incoming_phone_number("+15005550006")
    assert pages_read <= 11


# --- 6. an unreadable error body is just an unreadable body -----------------------------------


async def test_a_deeply_nested_5xx_body_still_reconciles_a_given_number(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 500, "[" * 100_000, headers={"Content-Type": "application/json"})
    twilio.get(FIND_URL, 200, page(resource()))
    async with make_client(fake_time, twilio) as client:
        number = await client.purchase(GIVEN)
    assert number.phone_number == "+15005550006"
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1


async def test_a_deeply_nested_5xx_body_leaves_an_area_code_unknown(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 502, "[" * 100_000, headers={"Content-Type": "application/json"})
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(PurchaseOutcomeUnknownError) as caught:
            await client.purchase(ANY_IN_415)
    assert isinstance(caught.value.cause, TwilioApiError)
    assert caught.value.cause.status == 502


# --- 7. a user's hook can never change an outcome ---------------------------------------------


async def test_a_raising_retry_hook_is_logged_and_the_purchase_goes_on(
    fake_time: FakeTime, twilio: MemoryTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_metrics(event: RetryEvent) -> None:
        raise ConnectionError("metrics backend down")

    twilio.post(NUMBERS_URL, 500, twilio_error(20500, 500))
    twilio.get(FIND_URL, 200, page(resource()))
    caplog.set_level(logging.ERROR, logger="twilio_numbers_async")
    async with make_client(fake_time, twilio, on_retry=broken_metrics) as client:
        number = await client.purchase(GIVEN)
    assert number.phone_number == "+15005550006", "the number sold is still found and returned"
    assert "on_retry" in caplog.text
    assert "metrics backend down" in caplog.text


# --- 8. a 2xx that names no number is not a purchase ------------------------------------------

NAMELESS = {"friendly_name": "support", "status": "in-use"}


async def test_a_2xx_naming_no_number_is_looked_up_for_a_given_number(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, NAMELESS)
    twilio.get(FIND_URL, 200, page(resource()))
    async with make_client(fake_time, twilio) as client:
        number = await client.purchase(GIVEN)
    assert number.sid == "PN" + "1" * 32
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1


async def test_a_2xx_naming_no_number_leaves_an_area_code_unknown_with_its_body(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, NAMELESS)
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(PurchaseOutcomeUnknownError) as caught:
            await client.purchase(ANY_IN_415)
    cause = caught.value.cause
    assert isinstance(cause, ResponseParseError)
    assert '"friendly_name": "support"' in cause.body or '"friendly_name":"support"' in cause.body
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1


@pytest.mark.parametrize("missing", ["sid", "phone_number"])
async def test_a_2xx_lacking_its_sid_or_number_is_fetched_by_the_sid_it_names(
    fake_time: FakeTime, twilio: MemoryTwilio, missing: str
) -> None:
    body = resource()
    body[missing] = ""
    twilio.post(NUMBERS_URL, 201, body)
    # Its uri still names the resource bought: that is fetched, never a half number returned.
    twilio.get(f"{NUMBERS_URL[: -len('.json')]}/PN{'1' * 32}.json", 200, resource())
    async with make_client(fake_time, twilio) as client:
        number = await client.purchase(ANY_IN_415)
    assert (number.sid, number.phone_number) == ("PN" + "1" * 32, "+15005550006")
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1


# --- 2. no credential reachable from an exception ---------------------------------------------


@pytest.fixture
async def malformed_status_server() -> AsyncIterator[str]:
    """A server that answers every request with a status line no HTTP parser accepts."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 two hundred OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


def reachable(root: object) -> Iterator[object]:
    """Every object reachable from an exception through its chain, attributes and args."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen or node is None:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node, BaseException):
            stack += [node.__cause__, node.__context__, *node.args]
        if isinstance(node, dict):
            stack += [*node.keys(), *node.values()]
        elif isinstance(node, list | tuple | set | frozenset):
            stack += list(node)
        elif hasattr(node, "__dict__") and not isinstance(node, type):
            stack += list(vars(node).values())


async def test_no_credential_is_reachable_from_a_transport_error(
    malformed_status_server: str, fake_time: FakeTime
) -> None:
    async with TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        base_url=malformed_status_server,
        rate_limit=None,
        retry=fake_time.policy(max_attempts=1),
    ) as client:
        with pytest.raises(TransportError) as caught:
            await client.find_incoming_phone_number("+15005550006")
    texts = [repr(node) for node in reachable(caught.value)]
    assert any("two hundred" in text or "status" in text.lower() for text in texts)
    for text in texts:
        assert CREDENTIALS not in text
        assert AUTH_TOKEN not in text
    assert not any(isinstance(node, aiohttp.ClientError) for node in reachable(caught.value))


# --- 5. one huge Retry-After never wedges the client ------------------------------------------


async def test_a_day_long_retry_after_fails_that_call_and_pauses_the_others_a_minute(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    bucket = TokenBucket(25)
    twilio.post(
        NUMBERS_URL,
        429,
        twilio_error(20429, 429),
        headers={"Retry-After": "100000"},
    )
    async with make_client(fake_time, twilio, rate_limit=bucket) as client:
        with pytest.raises(RateLimitedError) as first:
            await client.purchase(ANY_IN_415)
        assert first.value.retry_after == 100000.0
        assert not first.value.from_limiter
        assert fake_time.sleeps == [], "that call ends at once"
        loop = asyncio.get_running_loop()
        paused_for = bucket._last - loop.time()
        assert 59 < paused_for <= 60, "the others wait a minute at most, not 27 hours"
        # The next call's budget (120 s on its clock) would outlast the pause, but its clock
        # says the pause outlasts what a 1-second budget leaves: it fails at once, unsent.
        quick = make_client(
            fake_time, twilio, rate_limit=bucket, retry=fake_time.policy(max_elapsed=1)
        )
        async with quick, asyncio.timeout(5):
            with pytest.raises(RateLimitedError) as second:
                await quick.purchase(ANY_IN_415)
    assert second.value.from_limiter, "our own limiter said no: nothing was sent"
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1


# --- 9. closing the client mid-bulk: what was never sent is "not sent" -------------------------


async def test_closing_the_client_mid_bulk_marks_unsent_requests_not_sent(
    fake_time: FakeTime, tmp_path: Path
) -> None:
    numbers = [f"+1415555{n:04d}" for n in range(10)]
    requests = [NumberPurchase(phone_number=number) for number in numbers]
    journal = tmp_path / "buy.jsonl"
    async with Sandbox(seed=3, faults=Faults(latency=0.05)) as sandbox:
        client = sandbox.client(
            rate_limit=None, max_concurrency=2, retry=fake_time.policy(max_attempts=1)
        )
        outcomes: list[PurchaseOutcome] = []

        async def close_after_two() -> None:
            async for outcome in client.purchase_many(requests, concurrency=10, journal=journal):
                outcomes.append(outcome)
                if len(outcomes) == 2:
                    await client.aclose()

        with pytest.raises(ClientClosedError):
            await close_after_two()
        refused = [o for o in outcomes if isinstance(o.error, ClientClosedError)]
        assert refused, "some requests were still waiting for a slot"
        for outcome in refused:
            assert (outcome.status, outcome.attempts) == (OutcomeStatus.FAILED, 0)
            assert outcome.request.phone_number not in sold(sandbox), "never sent"
        # The next run sends exactly what was never sent, and buys nothing twice.
        async with sandbox.client(rate_limit=None, retry=fake_time.policy()) as again:
            rerun = [o async for o in again.purchase_many(requests, journal=journal)]
        fresh = {o.request.phone_number for o in rerun if not o.from_journal}
        assert {o.request.phone_number for o in refused} <= fresh
        assert sorted(sold(sandbox)) == sorted(set(sold(sandbox))), "nothing bought twice"


# --- 10. the intent is written after every wait, just before the POST --------------------------


async def test_requests_waiting_for_a_token_when_the_run_stops_leave_no_intent(
    fake_time: FakeTime, tmp_path: Path
) -> None:
    journal = tmp_path / "buy.jsonl"
    requests = [NumberPurchase(area_code="415") for _ in range(5)]
    async with Sandbox(seed=4) as sandbox:
        # One token now, the next in an hour: four requests wait for theirs when the run stops.
        bucket = TokenBucket(1 / 3600)
        patient = fake_time.policy(max_elapsed=100_000)  # the waits fit in the budget
        # "direct": an area code POSTed as it is, whose false "unknown" was the harm.
        async with sandbox.client(rate_limit=bucket, retry=patient, area_codes="direct") as client:
            run = client.purchase_many(requests, concurrency=5, journal=journal)
            first = await anext(run)
            assert first.ok
            await run.aclose()
        intents = [
            r for r in map(json.loads, journal.read_text().splitlines()) if r["kind"] == "intent"
        ]
        assert len(intents) == 1, "only the request that got a token wrote an intent"
        # The rerun buys the other four: none is a false "unknown".
        async with sandbox.client(rate_limit=None, retry=fake_time.policy()) as again:
            rerun = [o async for o in again.purchase_many(requests, journal=journal)]
    assert sorted(o.status.value for o in rerun) == ["bought"] * 5
    assert sum(o.from_journal for o in rerun) == 1


async def test_a_request_stopped_while_its_intent_is_written_is_recorded_not_sent(
    fake_time: FakeTime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "buy.jsonl"
    requests = [NumberPurchase(area_code="415")]
    disk = threading.Event()  # the disk answers fsync only when the test says so
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (disk.wait(10), fsync(fd))[1])
    async with Sandbox(seed=5) as sandbox:
        async with sandbox.client(rate_limit=None, retry=fake_time.policy()) as client:
            run = client.purchase_many(requests, journal=journal)
            first = asyncio.ensure_future(anext(run))
            async with asyncio.timeout(10):
                while not journal.exists() or "intent" not in journal.read_text():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            first.cancel()  # stopped while the intent waits for the disk: nothing was sent
            async with asyncio.timeout(10):
                while "outcome" not in journal.read_text():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            disk.set()  # the run may now close its journal
            with pytest.raises(asyncio.CancelledError):
                await first
            await run.aclose()
        assert posts(sandbox) == 0
        kinds = [json.loads(line)["kind"] for line in journal.read_text().splitlines()]
        assert kinds == ["intent", "outcome"], "the outcome says: not sent"
        # The next run sends it as new, and no false "unknown" appears.
        async with sandbox.client(rate_limit=None, retry=fake_time.policy()) as again:
            (rerun,) = [o async for o in again.purchase_many(requests, journal=journal)]
    assert (rerun.status, rerun.from_journal) == (OutcomeStatus.BOUGHT, False)


async def test_a_client_closed_while_an_intent_is_written_sends_nothing_and_says_so(
    fake_time: FakeTime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "buy.jsonl"
    disk = threading.Event()
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (disk.wait(10), fsync(fd))[1])
    async with Sandbox(seed=6) as sandbox:
        client = sandbox.client(rate_limit=None, retry=fake_time.policy())
        run = client.purchase_many([GIVEN], journal=journal)
        first = asyncio.ensure_future(anext(run))
        async with asyncio.timeout(10):
            while not journal.exists() or "intent" not in journal.read_text():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await client.aclose()  # while the intent waits for the disk
        disk.set()
        outcome = await first
        await run.aclose()
        assert posts(sandbox) == 0
    assert isinstance(outcome.error, ClientClosedError)
    assert outcome.attempts == 0, "the attempt never left: not counted"
    (record,) = [
        r for r in map(json.loads, journal.read_text().splitlines()) if r["kind"] == "outcome"
    ]
    assert record["resend"] is True, "the next run buys it"


async def test_a_2xx_naming_no_number_that_no_look_up_finds_ends_unknown_not_failed(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, NAMELESS, repeat=True)
    twilio.get(FIND_URL, 200, page(), repeat=True)
    async with make_client(fake_time, twilio, retry=fake_time.policy(max_attempts=2)) as client:
        with pytest.raises(PurchaseOutcomeUnknownError) as caught:
            await client.purchase(GIVEN)
    assert isinstance(caught.value.cause, ResponseParseError)
    assert "support" in caught.value.cause.body
