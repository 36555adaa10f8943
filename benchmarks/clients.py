"""The four clients the CPU benchmark compares, each making the same CreateIncomingPhoneNumber call.

Every client sends the same five form fields (``PhoneNumber`` varies per request), gets the same
canned 201 and turns it into something a program can use; each checks the status, so a request
that did not succeed fails the benchmark instead of being counted.

- ``ours``: :class:`~twilio_numbers_async.TwilioNumbersClient` with everything on: a validated
  :class:`~twilio_numbers_async.NumberPurchase` built per request, a :class:`TokenBucket` at a
  rate that never binds, the default retry policy, the concurrency cap, and the full, tolerant
  parse into a frozen :class:`~twilio_numbers_async.IncomingPhoneNumber`.
- ``plain``: aiohttp as most people write it: ``data=dict``, ``auth=BasicAuth``,
  ``resp.json()``; the result is a dict, dates left as strings.
- ``tuned``: aiohttp written for speed: the body encoded to bytes by hand, a precomputed
  ``Authorization`` header, orjson (stdlib json if orjson is missing), a slicing RFC 2822 parser,
  and a ``__slots__`` object with every property (the same information ``ours`` returns, without
  the validation and the tolerant reading).
- ``sdk``: the official ``twilio`` package's async path,
  ``client.api.v2010.accounts(sid).incoming_phone_numbers.create_async(...)`` over
  ``AsyncTwilioHttpClient``, its API domain's ``base_url`` pointed at the local server.
"""

from __future__ import annotations

import base64
import email.utils
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from urllib.parse import quote_plus

import aiohttp

from twilio_numbers_async import NumberPurchase, TokenBucket, TwilioNumbersClient

try:
    import orjson

    loads: Callable[[bytes], Any] = orjson.loads
    JSON_LIBRARY = f"orjson {orjson.__version__}"
except ImportError:  # pragma: no cover - orjson is optional
    loads = json.loads
    JSON_LIBRARY = "json (stdlib)"

from .server import ACCOUNT_SID, AUTH_TOKEN, CREATE_PATH

# The call every client makes; only the number changes from one request to the next.
FRIENDLY_NAME: Final = "Benchmark line"
SMS_URL: Final = "https://example.com/sms?team=bench"
VOICE_URL: Final = "https://example.com/voice"
VOICE_METHOD: Final = "POST"

# Loose enough for 64 in flight: the cap and the bucket are exercised, never waited on.
POOL: Final = 100
NAMES: Final = ("ours", "tuned", "plain", "sdk")


def phone_number(i: int) -> str:
    return f"+1415{5550000 + i % 4_000_000:07d}"


class BenchClient(Protocol):
    name: str

    async def open(self, base_url: str) -> None: ...

    async def create(self, i: int) -> object: ...

    async def close(self) -> None: ...


class StatusError(Exception):
    """A benchmark request that did not get its 201."""


# --- ours --------------------------------------------------------------------------------------


class Ours:
    name = "ours"

    def __init__(self) -> None:
        self.client: TwilioNumbersClient | None = None

    async def open(self, base_url: str) -> None:
        self.client = TwilioNumbersClient(
            ACCOUNT_SID,
            AUTH_TOKEN,
            base_url=base_url,
            rate_limit=TokenBucket(1e9),  # on, at a rate no benchmark reaches
            max_concurrency=POOL,
        )

    async def create(self, i: int) -> object:
        assert self.client is not None
        request = NumberPurchase(
            phone_number=phone_number(i),
            friendly_name=FRIENDLY_NAME,
            sms_url=SMS_URL,
            voice_url=VOICE_URL,
            voice_method=VOICE_METHOD,
        )
        return await self.client.purchase(request)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


# --- plain aiohttp -----------------------------------------------------------------------------


class Plain:
    name = "plain"

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def open(self, base_url: str) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL))
        self.url = base_url + CREATE_PATH
        self.auth = aiohttp.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)

    async def create(self, i: int) -> object:
        assert self.session is not None
        form = {
            "PhoneNumber": phone_number(i),
            "FriendlyName": FRIENDLY_NAME,
            "SmsUrl": SMS_URL,
            "VoiceUrl": VOICE_URL,
            "VoiceMethod": VOICE_METHOD,
        }
        async with self.session.post(self.url, data=form, auth=self.auth) as response:
            if response.status != 201:
                raise StatusError(response.status)
            result: dict[str, Any] = await response.json()
            return result

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


# --- hand-tuned aiohttp ------------------------------------------------------------------------

_MONTHS: Final = {
    name: n
    for n, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def fast_rfc2822(text: str) -> datetime:
    """Twilio's ``Thu, 30 Jul 2015 23:19:04 +0000`` by slicing; anything else the slow way."""
    if len(text) == 31 and text.endswith("+0000"):
        return datetime(
            int(text[12:16]),
            _MONTHS[text[8:11]],
            int(text[5:7]),
            int(text[17:19]),
            int(text[20:22]),
            int(text[23:25]),
            tzinfo=UTC,
        )
    return email.utils.parsedate_to_datetime(text)


class TunedNumber:
    """The resource, as a hand-tuned client would keep it: every property, dates parsed."""

    __slots__ = (
        "account_sid",
        "address_requirements",
        "address_sid",
        "api_version",
        "beta",
        "bundle_sid",
        "capabilities",
        "date_created",
        "date_updated",
        "emergency_address_sid",
        "emergency_address_status",
        "emergency_status",
        "friendly_name",
        "identity_sid",
        "origin",
        "phone_number",
        "sid",
        "sms_application_sid",
        "sms_fallback_method",
        "sms_fallback_url",
        "sms_method",
        "sms_url",
        "status",
        "status_callback",
        "status_callback_method",
        "trunk_sid",
        "type",
        "uri",
        "voice_application_sid",
        "voice_caller_id_lookup",
        "voice_fallback_method",
        "voice_fallback_url",
        "voice_method",
        "voice_receive_mode",
        "voice_url",
    )

    def __init__(self, data: dict[str, Any]) -> None:
        # Written out, as a hand-tuned client would: no loop, no getattr.
        get = data.get
        self.account_sid = get("account_sid")
        self.address_requirements = get("address_requirements")
        self.address_sid = get("address_sid")
        self.api_version = get("api_version")
        self.beta = get("beta")
        self.bundle_sid = get("bundle_sid")
        self.emergency_address_sid = get("emergency_address_sid")
        self.emergency_address_status = get("emergency_address_status")
        self.emergency_status = get("emergency_status")
        self.friendly_name = get("friendly_name")
        self.identity_sid = get("identity_sid")
        self.origin = get("origin")
        self.phone_number = get("phone_number")
        self.sid = get("sid")
        self.sms_application_sid = get("sms_application_sid")
        self.sms_fallback_method = get("sms_fallback_method")
        self.sms_fallback_url = get("sms_fallback_url")
        self.sms_method = get("sms_method")
        self.sms_url = get("sms_url")
        self.status = get("status")
        self.status_callback = get("status_callback")
        self.status_callback_method = get("status_callback_method")
        self.trunk_sid = get("trunk_sid")
        self.type = get("type")
        self.uri = get("uri")
        self.voice_application_sid = get("voice_application_sid")
        self.voice_caller_id_lookup = get("voice_caller_id_lookup")
        self.voice_fallback_method = get("voice_fallback_method")
        self.voice_fallback_url = get("voice_fallback_url")
        self.voice_method = get("voice_method")
        self.voice_receive_mode = get("voice_receive_mode")
        self.voice_url = get("voice_url")
        created, updated = get("date_created"), get("date_updated")
        self.date_created = fast_rfc2822(created) if created else None
        self.date_updated = (
            self.date_created if updated == created else fast_rfc2822(updated) if updated else None
        )
        flags = get("capabilities") or {}
        self.capabilities = (
            flags.get("voice"),
            flags.get("sms"),
            flags.get("mms"),
            flags.get("fax"),
        )


class Tuned:
    name = "tuned"

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def open(self, base_url: str) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL))
        self.url = base_url + CREATE_PATH
        token = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        self.headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        self.rest = (
            f"&FriendlyName={quote_plus(FRIENDLY_NAME)}&SmsUrl={quote_plus(SMS_URL)}"
            f"&VoiceUrl={quote_plus(VOICE_URL)}&VoiceMethod={VOICE_METHOD}"
        )

    async def create(self, i: int) -> object:
        assert self.session is not None
        body = f"PhoneNumber={quote_plus(phone_number(i))}{self.rest}".encode()
        async with self.session.post(self.url, data=body, headers=self.headers) as response:
            payload = await response.read()
            if response.status != 201:
                raise StatusError(response.status)
        return TunedNumber(loads(payload))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


# --- the official SDK --------------------------------------------------------------------------


class Sdk:
    name = "sdk"

    def __init__(self) -> None:
        self.http: Any = None

    async def open(self, base_url: str) -> None:
        from twilio.http.async_http_client import (  # type: ignore[import-untyped]
            AsyncTwilioHttpClient,
        )
        from twilio.rest import Client  # type: ignore[import-untyped]

        # Made inside the running loop: AsyncTwilioHttpClient opens its ClientSession at once.
        self.http = AsyncTwilioHttpClient()
        self.client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=self.http)
        # The SDK builds every URL from its domain's base_url: point the API domain here.
        self.client.api.base_url = base_url

    async def create(self, i: int) -> object:
        return await self.client.api.v2010.accounts(
            ACCOUNT_SID
        ).incoming_phone_numbers.create_async(
            phone_number=phone_number(i),
            friendly_name=FRIENDLY_NAME,
            sms_url=SMS_URL,
            voice_url=VOICE_URL,
            voice_method=VOICE_METHOD,
        )

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()


FACTORIES: Final[dict[str, Callable[[], BenchClient]]] = {
    "ours": Ours,
    "tuned": Tuned,
    "plain": Plain,
    "sdk": Sdk,
}


def check_result(name: str, result: object) -> None:
    """Fail loudly if a client's answer is not the number the server sold."""
    if isinstance(result, dict):
        sid, date = result.get("sid"), result.get("date_created")
    else:
        sid, date = getattr(result, "sid", None), getattr(result, "date_created", None)
    if not (isinstance(sid, str) and sid.startswith("PN")) or date is None:
        raise AssertionError(f"{name}: unexpected result {result!r}")
    if name != "plain" and not isinstance(date, datetime):
        raise AssertionError(f"{name}: date_created was not parsed: {date!r}")
