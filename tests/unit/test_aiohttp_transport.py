"""``AiohttpTransport``, the default transport: what it gives aiohttp, what aiohttp's errors become.

aiohttp is the subject here, so aiohttp is mocked where it is called (aioresponses), or, for
what only a socket shows, answered by a server on loopback. The library's other unit tests run
on Twilio in memory (tests/_memory.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, NUMBERS_URL, FakeTime, resource
from twilio_numbers_async import (
    ClientClosedError,
    NumberPurchase,
    TransportError,
    TwilioNumbersClient,
)
from twilio_numbers_async._transport import AiohttpTransport, Request
from twilio_numbers_async.bulk import OutcomeStatus, PurchaseOutcome

HEADERS = {"Authorization": "Basic c2VjcmV0", "Content-Type": "application/x-www-form-urlencoded"}
FORM = b"AreaCode=415"


class _FinishedUpload:
    """Stands in for the request writer of a response that aioresponses builds."""

    output_size = 0


class MockResponse(aiohttp.ClientResponse):
    # aiohttp 3.14 made ``stream_writer`` a required argument that aioresponses 0.7.9 does not
    # pass (pnuckowski/aioresponses#289). ``response_class`` is aioresponses' own, public
    # extension point, so the shim needs none of its internals.
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _FinishedUpload())
        super().__init__(method, url, **kwargs)


class MockAiohttp(aioresponses):
    """aioresponses whose every response is built to work on aiohttp 3.14."""

    def add(self, url: Any, method: str = "GET", **kwargs: Any) -> None:
        kwargs.setdefault("response_class", MockResponse)
        super().add(url, method, **kwargs)

    def sent(self, method: str, url: str) -> list[Any]:
        """The calls made to ``method url`` (query string included), in order."""
        # aioresponses keys its record by the URL with its query parameters sorted.
        key = URL(url)
        return self.requests.get((method, key.with_query(sorted(key.query.items()))), [])


@pytest.fixture
def mocked() -> Iterator[MockAiohttp]:
    with MockAiohttp() as mock:
        yield mock


def purchase(timeout: float = 30.0) -> Request:
    return Request("POST", NUMBERS_URL, HEADERS, FORM, timeout)


def client(**kwargs: Any) -> TwilioNumbersClient:
    return TwilioNumbersClient(
        ACCOUNT_SID, AUTH_TOKEN, area_codes="direct", rate_limit=None, **kwargs
    )


# --- what aiohttp is given --------------------------------------------------------------------


async def test_the_request_goes_to_aiohttp_as_it_was_built(mocked: MockAiohttp) -> None:
    mocked.post(NUMBERS_URL, status=201, payload=resource())
    transport = AiohttpTransport()
    try:
        await transport.send(purchase())
    finally:
        await transport.aclose()
    (call,) = mocked.sent("POST", NUMBERS_URL)
    assert call.kwargs["data"] == FORM
    assert call.kwargs["headers"] == HEADERS


@pytest.mark.parametrize(("total", "connect"), [(30.0, 10.0), (4.0, 2.0), (0.5, 0.25)])
async def test_connecting_may_take_half_the_timeout_and_ten_seconds_at_most(
    mocked: MockAiohttp, total: float, connect: float
) -> None:
    mocked.post(NUMBERS_URL, status=201, payload=resource())
    transport = AiohttpTransport()
    try:
        await transport.send(purchase(timeout=total))
    finally:
        await transport.aclose()
    (call,) = mocked.sent("POST", NUMBERS_URL)
    timeout = call.kwargs["timeout"]
    assert (timeout.total, timeout.sock_connect) == (total, connect)


async def test_redirects_are_not_followed(mocked: MockAiohttp) -> None:
    elsewhere = "https://evil.example/take-the-credentials"
    mocked.post(NUMBERS_URL, status=307, headers={"Location": elsewhere})
    transport = AiohttpTransport()
    try:
        response = await transport.send(purchase())
    finally:
        await transport.aclose()
    assert (response.status, response.headers["location"]) == (307, elsewhere)
    (call,) = mocked.sent("POST", NUMBERS_URL)
    assert call.kwargs["allow_redirects"] is False
    assert mocked.sent("POST", elsewhere) == []


@pytest.fixture
async def chunked_server() -> AsyncIterator[tuple[str, bytes]]:
    """A server on loopback that answers with a large body written in pieces."""
    body = b'{"message": "' + b"x" * 1_000_000 + b'"}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(len(FORM))
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\nTwilio-Request-Id: RQ1\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        for start in range(0, len(body), 300_000):
            writer.write(body[start : start + 300_000])
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/2010-04-01/x.json", body


async def test_the_answer_is_read_whole_with_headers_in_any_case(
    chunked_server: tuple[str, bytes],
) -> None:
    url, body = chunked_server
    transport = AiohttpTransport()
    try:
        response = await transport.send(Request("POST", url, HEADERS, FORM))
    finally:
        await transport.aclose()
    assert (response.status, response.body) == (400, body)
    assert response.headers["twilio-request-id"] == response.headers["TWILIO-REQUEST-ID"] == "RQ1"


# --- the session: its own, or the caller's ----------------------------------------------------


def test_construction_needs_no_event_loop() -> None:
    transport = AiohttpTransport()
    TwilioNumbersClient(ACCOUNT_SID, AUTH_TOKEN, transport=transport)
    assert transport._session is None, "the session is made inside the loop, on first use"


async def test_the_client_closes_the_session_it_made(mocked: MockAiohttp) -> None:
    mocked.post(NUMBERS_URL, status=201, payload=resource())
    transport = AiohttpTransport()
    async with client(transport=transport) as buyer:
        await buyer.create_incoming_phone_number(area_code="500")
        session = transport._session
        assert session is not None
    assert session.closed
    with pytest.raises(ClientClosedError, match="the transport is closed"):
        await transport.send(purchase())


async def test_a_session_passed_in_is_used_and_left_open(mocked: MockAiohttp) -> None:
    mocked.post(NUMBERS_URL, status=201, payload=resource())
    async with aiohttp.ClientSession(headers={"X-Session": "the caller's"}) as session:
        async with client(session=session) as buyer:
            await buyer.create_incoming_phone_number(area_code="500")
        assert not session.closed
    (sent,) = mocked.sent("POST", NUMBERS_URL)
    assert sent.kwargs["headers"]["Authorization"].startswith("Basic ")
    assert session.headers["X-Session"] == "the caller's"


async def test_a_session_its_owner_closed_sends_nothing_and_says_so(
    mocked: MockAiohttp, tmp_path: Path
) -> None:
    """aiohttp would raise a bare RuntimeError; a bulk run would record "maybe bought"."""
    session = aiohttp.ClientSession()
    await session.close()
    async with client(session=session) as buyer:
        with pytest.raises(ClientClosedError, match="session given to the client is closed"):
            await buyer.purchase(NumberPurchase(phone_number="+15005550006"))
        outcomes: list[PurchaseOutcome] = []

        async def run() -> None:
            requests = [NumberPurchase(phone_number="+15005550006")]
            async for outcome in buyer.purchase_many(requests, journal=tmp_path / "j.jsonl"):
                outcomes.append(outcome)  # noqa: PERF401 - kept as they come, then it raises

        with pytest.raises(ClientClosedError):  # the run stops: every request would fail so
            await run()
    (outcome,) = outcomes
    assert outcome.status is OutcomeStatus.FAILED, "not sent: a rerun sends it"
    assert (outcome.attempts, mocked.sent("POST", NUMBERS_URL)) == (0, [])


def test_a_session_and_a_transport_are_not_both_taken() -> None:
    with pytest.raises(ValueError, match="not both"):
        client(session=object(), transport=AiohttpTransport())


# --- aiohttp's errors become TransportError, once ---------------------------------------------

CONNECTOR_KEY: Any = SimpleNamespace(host="api.twilio.com", port=443, ssl=True)


@pytest.mark.parametrize(
    ("failure", "sent"),
    [
        # While connecting: the request never left, so it is safe to send again.
        (aiohttp.ConnectionTimeoutError("connect timed out"), False),
        (
            aiohttp.ClientConnectorError(CONNECTOR_KEY, ConnectionRefusedError(111, "refused")),
            False,
        ),
        # Once connected: Twilio may have read the request and acted on it.
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.SocketTimeoutError("read timed out"), True),
        (TimeoutError(), True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), True),
        (aiohttp.ClientPayloadError("the body was cut short"), True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
async def test_what_an_aiohttp_failure_says_about_the_request_being_sent(
    mocked: MockAiohttp, failure: BaseException, sent: bool
) -> None:
    mocked.post(NUMBERS_URL, exception=failure)
    transport = AiohttpTransport()
    try:
        with pytest.raises(TransportError) as caught:
            await transport.send(purchase())
    finally:
        await transport.aclose()
    error = caught.value
    assert error.sent is sent
    assert (error.method, error.url) == ("POST", NUMBERS_URL)
    assert type(failure).__name__ in str(error), "aiohttp's error is named"
    # ... but neither chained nor kept as context: its request_info holds the Authorization.
    assert error.__cause__ is None
    assert error.__context__ is None


async def test_a_connect_failure_reaches_the_caller_unsent_and_unchained(
    mocked: MockAiohttp, fake_time: FakeTime
) -> None:
    mocked.post(NUMBERS_URL, exception=aiohttp.ConnectionTimeoutError("x"), repeat=True)
    async with client(retry=fake_time.policy(max_attempts=2)) as buyer:
        with pytest.raises(TransportError) as caught:
            await buyer.create_incoming_phone_number(area_code="415")
    assert caught.value.sent is False
    assert "ConnectionTimeoutError" in str(caught.value)
    assert caught.value.__cause__ is None
    assert len(mocked.sent("POST", NUMBERS_URL)) == 2, "sent again: it never left"
