"""The in-memory Twilio the unit tests run on: it answers as scripted and fails loudly otherwise.

A test double whose checks could not fail would make every test built on it pass for nothing:
each check here is shown failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from tests._memory import Hang, Lost, MemoryTwilio, form, reply
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, NUMBERS_URL, aiohttp_refused
from twilio_numbers_async import TransportError, TwilioNumbersClient
from twilio_numbers_async._transport import Request, Response

FIND_URL = f"{NUMBERS_URL}?PhoneNumber=%2B15005550006&PageSize=50"


def get(url: str) -> Request:
    return Request("GET", url, {})


def post(body: bytes = b"AreaCode=415") -> Request:
    return Request("POST", NUMBERS_URL, {}, body)


async def test_answers_come_in_the_order_scripted_and_a_repeat_from_then_on() -> None:
    twilio = MemoryTwilio()
    twilio.post(NUMBERS_URL, 500, "busy")
    twilio.post(NUMBERS_URL, 201, {"sid": "PN1"}, repeat=True)
    statuses = [(await twilio.send(post())).status for _ in range(4)]
    assert statuses == [500, 201, 201, 201]
    assert len(twilio.sent("POST", NUMBERS_URL)) == 4
    twilio.check()


async def test_what_was_sent_is_recorded_as_sent() -> None:
    twilio = MemoryTwilio()
    twilio.post(NUMBERS_URL, 201, {})
    request = Request("POST", NUMBERS_URL, {"Authorization": "Basic x"}, b"A=1&B=%2B2", 5.0)
    await twilio.send(request)
    assert twilio.requests == [request]
    assert form(request) == {"A": "1", "B": "+2"}


async def test_query_parameters_match_in_any_order_and_decoded_as_twilio_decodes() -> None:
    twilio = MemoryTwilio()
    twilio.get(FIND_URL, 200, {"incoming_phone_numbers": []}, repeat=True)
    await twilio.send(get(f"{NUMBERS_URL}?PageSize=50&PhoneNumber=%2B15005550006"))
    assert len(twilio.sent("GET", FIND_URL)) == 1
    # An unencoded "+" is a space to Twilio: not the number scripted.
    with pytest.raises(AssertionError, match="nobody scripted"):
        await twilio.send(get(f"{NUMBERS_URL}?PhoneNumber=+15005550006&PageSize=50"))


async def test_a_request_nobody_scripted_fails_the_send_and_the_check() -> None:
    twilio = MemoryTwilio()
    twilio.get(FIND_URL, 200, {})
    with pytest.raises(AssertionError, match=r"POST .*IncomingPhoneNumbers.json; answers are"):
        await twilio.send(post())
    # The library may have turned that error into an outcome: the check still sees it.
    with pytest.raises(AssertionError, match="nobody scripted an answer for: POST"):
        twilio.check()


async def test_an_answer_never_asked_for_fails_the_check() -> None:
    twilio = MemoryTwilio()
    twilio.post(NUMBERS_URL, 201, {})
    twilio.post(NUMBERS_URL, 400, {})
    twilio.get(FIND_URL, 200, {}, repeat=True)
    await twilio.send(post())
    with pytest.raises(AssertionError, match=r"never asked for: POST .*IncomingPhoneNumbers.json$"):
        twilio.check()


def test_a_body_goes_with_a_status_not_with_a_scripted_answer() -> None:
    with pytest.raises(TypeError, match="with a status"):
        MemoryTwilio().post(NUMBERS_URL, Lost(sent=True), "body")


@pytest.mark.parametrize("sent", [True, False])
async def test_lost_is_a_transport_error_with_its_sent(sent: bool) -> None:
    twilio = MemoryTwilio()
    twilio.post(NUMBERS_URL, Lost(sent=sent, reason="connection reset"))
    with pytest.raises(TransportError, match="connection reset") as caught:
        await twilio.send(post())
    assert (caught.value.sent, caught.value.method, caught.value.url) == (sent, "POST", NUMBERS_URL)


async def test_hang_holds_the_request_until_it_is_cancelled() -> None:
    twilio = MemoryTwilio()
    hang = Hang()
    twilio.post(NUMBERS_URL, hang, repeat=True)
    tasks = [asyncio.create_task(twilio.send(post())) for _ in range(2)]
    await hang.reached()
    await asyncio.sleep(0)
    assert not any(task.done() for task in tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task
    assert hang.started == hang.cancelled == 2


async def test_a_callable_answers_from_the_request_and_may_await_first() -> None:
    twilio = MemoryTwilio()
    go = asyncio.Event()

    def echo(request: Request) -> Response:
        return reply(201, form(request))

    async def later(request: Request) -> Response:
        await go.wait()
        return reply(201, {"after": "the wait"})

    twilio.post(NUMBERS_URL, echo)
    twilio.post(NUMBERS_URL, later)
    assert json.loads((await twilio.send(post(b"AreaCode=212"))).body) == {"AreaCode": "212"}
    waiting = asyncio.create_task(twilio.send(post()))
    await asyncio.sleep(0)
    assert not waiting.done()
    go.set()
    assert json.loads((await waiting).body) == {"after": "the wait"}


def test_reply_is_json_unless_it_is_text_and_headers_are_case_insensitive() -> None:
    document = reply(429, {"code": 20429}, headers={"Retry-After": "3"})
    assert (document.body, document.headers["content-type"]) == (
        b'{"code": 20429}',
        "application/json",
    )
    assert document.headers["retry-after"] == "3"
    page = reply(502, "<html>bad gateway</html>", headers={"Content-Type": "text/html"})
    assert (page.body, page.headers["Content-Type"]) == (b"<html>bad gateway</html>", "text/html")


async def test_a_client_left_on_aiohttp_fails_even_when_its_refusal_was_swallowed() -> None:
    async def look_up_swallowing_errors() -> None:
        async with TwilioNumbersClient(ACCOUNT_SID, AUTH_TOKEN, rate_limit=None) as client:
            with contextlib.suppress(AssertionError):
                await client.find_incoming_phone_number("+15005550006")

    refused = r"sent through aiohttp.*IncomingPhoneNumbers"
    with pytest.raises(AssertionError, match=refused), aiohttp_refused():
        await look_up_swallowing_errors()
