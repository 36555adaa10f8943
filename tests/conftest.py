"""Shared fixtures: credentials, an in-memory Twilio, and a clock that needs no sleep."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest import mock

import aiohttp
import pytest

from twilio_numbers_async import PurchaseRequest, RetryPolicy, TwilioNumbersClient
from twilio_numbers_async._purchase import PurchaseResult
from twilio_numbers_async._serde import number_from_json
from twilio_numbers_async.models import IncomingPhoneNumber
from twilio_numbers_async.sandbox import Sandbox

from ._memory import MemoryTwilio

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-that-must-never-leak"
BASE = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}"
NUMBERS_URL = f"{BASE}/IncomingPhoneNumbers.json"
MOBILE_URL = f"{BASE}/IncomingPhoneNumbers/Mobile.json"


@contextlib.contextmanager
def aiohttp_refused() -> Iterator[None]:
    """Inside the block, aiohttp's client refuses to send; leaving it fails if anything tried
    (the library may have turned the refusal into an outcome, so raising is not enough)."""
    reached: list[str] = []

    async def refuse(session: aiohttp.ClientSession, method: str, url: Any, **_: Any) -> None:
        reached.append(f"{method} {url}")
        raise AssertionError(f"sent through aiohttp, not the in-memory Twilio: {method} {url}")

    with mock.patch.object(aiohttp.ClientSession, "_request", refuse):
        yield
    assert not reached, f"sent through aiohttp, not the in-memory Twilio: {reached}"


@pytest.fixture
def twilio() -> Iterator[MemoryTwilio]:
    """Twilio in memory: pass it as a client's ``transport``. While a test holds it, aiohttp's
    client refuses to send, so a client left on the default transport fails the test."""
    memory = MemoryTwilio()
    with aiohttp_refused():
        yield memory
    memory.check()


class FakeTime:
    """A clock and a sleep that only move when told: retries are tested without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def policy(self, **kwargs: Any) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, clock=self.clock, **kwargs)


class RecordingLimiter:
    """A limiter that gives every token at once and records what it was asked: a 429's pause
    lands here instead of holding the client's requests on the loop's real clock."""

    def __init__(self) -> None:
        self.acquired = 0
        self.pauses: list[float] = []

    async def acquire(self, tokens: int = 1, *, max_wait: float | None = None) -> None:
        self.acquired += tokens

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def client(fake_time: FakeTime, twilio: MemoryTwilio) -> AsyncIterator[TwilioNumbersClient]:
    # The in-memory Twilio answers what each test scripts: an area code is POSTed as it is, with
    # no search first (tests/test_area_codes.py scripts the search).
    async with TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        rate_limit=None,
        retry=fake_time.policy(random=lambda: 0.5),
        area_codes="direct",
        transport=twilio,
    ) as client:
        yield client


def resource(**overrides: Any) -> dict[str, Any]:
    """A 201 body as Twilio sends it (its unset fields as "" and null, like the real API)."""
    body: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "address_requirements": "none",
        "address_sid": "",
        "api_version": "2010-04-01",
        "beta": False,
        "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
        "date_created": "Thu, 30 Jul 2015 23:19:04 +0000",
        "date_updated": "Thu, 30 Jul 2015 23:19:04 +0000",
        "emergency_status": "Inactive",
        "emergency_address_sid": None,
        "emergency_address_status": "unregistered",
        "friendly_name": "(500) 555-0006",
        "identity_sid": None,
        "origin": "twilio",
        "phone_number": "+15005550006",
        "sid": "PN" + "1" * 32,
        "sms_application_sid": "",
        "sms_fallback_method": "POST",
        "sms_fallback_url": "",
        "sms_method": "POST",
        "sms_url": "",
        "status_callback": "",
        "status_callback_method": "POST",
        "trunk_sid": None,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/PN{'1' * 32}.json",
        "voice_application_sid": "",
        "voice_caller_id_lookup": False,
        "voice_fallback_method": "POST",
        "voice_fallback_url": None,
        "voice_method": "POST",
        "voice_url": None,
        "bundle_sid": None,
        "voice_receive_mode": "voice",
        "status": "in-use",
        "type": "local",
    }
    body.update(overrides)
    return body


def bought_number(**overrides: Any) -> IncomingPhoneNumber:
    """An ``IncomingPhoneNumber`` as a 201 gives it, with ``overrides`` to its properties."""
    return number_from_json(resource(**overrides))


def twilio_error(code: int, status: int = 400, message: str = "error") -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def page(*numbers: dict[str, Any], next_page_uri: str | None = None) -> dict[str, Any]:
    return {
        "incoming_phone_numbers": list(numbers),
        "next_page_uri": next_page_uri,
        "page": 0,
        "page_size": 50,
        "start": 0,
        "end": max(0, len(numbers) - 1),
        "uri": "/2010-04-01/Accounts/x/IncomingPhoneNumbers.json",
        "first_page_uri": "/2010-04-01/Accounts/x/IncomingPhoneNumbers.json",
        "previous_page_uri": None,
    }


async def purchase_result(
    client: TwilioNumbersClient, request: PurchaseRequest, **kwargs: Any
) -> PurchaseResult:
    """A purchase's whole result (attempts, reconciled, in doubt), as ``purchase_many`` gets it
    from the engine: more than ``purchase()``, which returns the number or raises."""
    return await client._engine.start(request, client.account_sid, **kwargs).run()


def sold(sandbox: Sandbox) -> list[str]:
    """The numbers a sandbox sold, in the order it sold them."""
    return [purchase.phone_number for purchase in sandbox.purchases]


def posts(sandbox: Sandbox) -> int:
    """How many POSTs a sandbox has seen: the purchases a client attempted."""
    return sum(record.method == "POST" for record in sandbox.requests)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per reason tests were skipped (the spec or redis-server not found...), and how
    many: not one line per test."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count} skipped: {reason}", yellow=True)
