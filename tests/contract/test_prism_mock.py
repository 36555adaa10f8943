"""The client against ``prism mock``: every request it sends must be one the spec allows.

Prism answers a request that breaks the spec with 422 and a ``validation`` list, and a good
one with the spec's 201 example, which the client must read. Requests come from fixed cases
(the smallest, the fullest) and from hypothesis (any subset of the fields, valid values of
every kind). The other way round: a value Prism refuses must be one our models refuse too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._spec import (
    GENERIC_PATH,
    MOBILE_PATH,
    field_for_key,
    full_request,
    list_response_schema,
    load_spec,
    request_class,
    url_like,
    valid_requests,
)
from tests.contract import PrismProcess, PrismWatch
from twilio_numbers_async import (
    IncomingPhoneNumber,
    MobileNumberPurchase,
    NumberPurchase,
    RequestValidationError,
    RetryPolicy,
    TwilioNumbersClient,
    TwilioNumbersError,
)
from twilio_numbers_async._serde import number_from_json
from twilio_numbers_async.models import PurchaseRequest

pytestmark = pytest.mark.contract

ENDPOINTS = pytest.mark.parametrize("mobile", [False, True], ids=["generic", "mobile"])
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
# Prism's mock takes any Basic credentials (test_mock_wants_basic_credentials_of_any_kind).
AUTH_TOKEN = "any-token-will-do"
HEX32 = "0123456789abcdef" * 2


def example_201(mobile: bool) -> IncomingPhoneNumber:
    """The spec's example answer of one endpoint: what the mock sends back."""
    path = MOBILE_PATH if mobile else GENERIC_PATH
    content = load_spec()["paths"][path]["post"]["responses"]["201"]["content"]
    example = next(iter(content["application/json"]["examples"].values()))["value"]
    return number_from_json(example)


@contextlib.asynccontextmanager
async def mock_client(prism: PrismProcess) -> AsyncIterator[tuple[TwilioNumbersClient, PrismWatch]]:
    """A client of the mock, no retries (Prism's verdict must be seen, not retried away).

    Only Prism's verdict on the requests counts: its answers are the spec's own examples, and
    the list's breaks the spec (see test_the_list_lookup).
    """
    watch = PrismWatch(responses=False)
    async with (
        watch.session() as session,
        TwilioNumbersClient(
            ACCOUNT_SID,
            AUTH_TOKEN,
            base_url=prism.url,
            rate_limit=None,
            retry=RetryPolicy.no_retries(),
            session=session,
        ) as client,
    ):
        yield client, watch


async def buy(prism: PrismProcess, request: PurchaseRequest) -> IncomingPhoneNumber:
    """``client.purchase(request)`` through the mock; fails quoting Prism if it objected."""
    async with mock_client(prism) as (client, watch):
        try:
            number = await client.purchase(request)
        except TwilioNumbersError as exc:
            watch.check()  # Prism's 422 names the field: say that, not just the status
            raise AssertionError(f"{request!r} failed: {exc!r}") from exc
        watch.check()
        return number


async def raw_post(prism: PrismProcess, path: str, form: list[tuple[str, str]]) -> Any:
    """POST a form as given, no model in between; Prism's status and JSON body."""
    url = prism.url + path.replace("{AccountSid}", ACCOUNT_SID)
    headers = {
        "Authorization": aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=urlencode(form).encode(), headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


# --- fixed cases -----------------------------------------------------------------------------

SMALLEST = [
    NumberPurchase(phone_number="+15005550006"),
    NumberPurchase(area_code="500"),
    MobileNumberPurchase(phone_number="+447700900123"),
]


@pytest.mark.parametrize("request_", SMALLEST, ids=["phone-number", "area-code", "mobile"])
async def test_the_smallest_requests(prism_mock: PrismProcess, request_: PurchaseRequest) -> None:
    mobile = isinstance(request_, MobileNumberPurchase)
    assert await buy(prism_mock, request_) == example_201(mobile)


@pytest.mark.parametrize(
    ("mobile", "by"),
    [(False, "phone_number"), (False, "area_code"), (True, "phone_number")],
    ids=["phone-number", "area-code", "mobile"],
)
async def test_the_fullest_requests(prism_mock: PrismProcess, mobile: bool, by: str) -> None:
    request = full_request(mobile, by=by)
    assert await buy(prism_mock, request) == example_201(mobile)


@pytest.mark.parametrize(
    ("mobile", "by"),
    [(False, "phone_number"), (False, "area_code"), (True, "phone_number")],
    ids=["phone-number", "area-code", "mobile"],
)
async def test_the_client_helpers_send_every_field(
    prism_mock: PrismProcess, mobile: bool, by: str
) -> None:
    fields = {k: v for k, v in attrs.asdict(full_request(mobile, by=by)).items() if v is not None}
    async with mock_client(prism_mock) as (client, watch):
        if mobile:
            number = await client.create_incoming_phone_number_mobile(**fields)
        else:
            number = await client.create_incoming_phone_number(**fields)
        watch.check()
    assert number == example_201(mobile)


async def test_the_list_lookup(prism_mock: PrismProcess) -> None:
    operation = load_spec()["paths"][GENERIC_PATH]["get"]["responses"]["200"]["content"]
    page = next(iter(operation["application/json"]["examples"].values()))["value"]
    listed = number_from_json(page["incoming_phone_numbers"][0])
    assert listed.phone_number is not None
    async with mock_client(prism_mock) as (client, watch):
        assert await client.find_incoming_phone_number(listed.phone_number) == listed
        assert await client.find_incoming_phone_number("+15005550006") is None
        watch.check()
    assert [exchange.status for exchange in watch.exchanges] == [200, 200]
    # The spec's own list example breaks the spec, as Twilio does: "" for unset SIDs and URLs,
    # and page links relative to the host. The client reads it all the same (tolerant reading).
    said = {
        ".".join(map(str, violation["location"])) for violation in watch.exchanges[0].violations
    }
    assert {
        "response.body.first_page_uri",
        "response.body.incoming_phone_numbers.0.sms_url",
        "response.body.incoming_phone_numbers.0.sms_application_sid",
    } <= said, said
    assert listed.sms_url is None
    assert listed.sms_application_sid is None
    assert "" in page["incoming_phone_numbers"][0].values()
    assert list_response_schema()["properties"]["first_page_uri"]["format"] == "uri"


async def test_a_subaccount_purchase(prism_mock: PrismProcess) -> None:
    subaccount = "AC" + "fedcba9876543210" * 2
    async with mock_client(prism_mock) as (client, watch):
        await client.purchase(NumberPurchase(area_code="500"), account_sid=subaccount)
        watch.check()
    assert subaccount in watch.exchanges[0].url


async def test_mock_wants_basic_credentials_of_any_kind(prism_mock: PrismProcess) -> None:
    # The spec's security scheme is HTTP Basic: Prism's mock refuses a request without it and
    # takes any user and password. So the mock proves the client sends Basic auth, no more.
    url = prism_mock.url + GENERIC_PATH.replace("{AccountSid}", ACCOUNT_SID)
    form = b"AreaCode=500"
    content = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=form, headers=content) as response:
            assert response.status == 401
        basic = aiohttp.encode_basic_auth("anyone", "anything")
        async with session.post(
            url, data=form, headers={**content, "Authorization": basic}
        ) as response:
            assert response.status == 201


# --- generated requests ----------------------------------------------------------------------


@ENDPOINTS
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_prism_never_refuses_a_valid_request(
    prism_mock: PrismProcess, mobile: bool, data: st.DataObject
) -> None:
    request = data.draw(valid_requests(mobile), label="request")
    # Each example in its own asyncio.run: a fresh loop, session and client, all closed
    # before the next example starts.
    assert asyncio.run(buy(prism_mock, request)) == example_201(mobile)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=url_like())
def test_every_url_we_take_prism_takes(prism_mock: PrismProcess, url: str) -> None:
    # Our URL check may be stricter than the spec's (an empty host, a port above 65535),
    # never looser: a URL a model takes must pass Prism's format: uri.
    try:
        request = NumberPurchase(area_code="500", sms_url=url, voice_url=url)
    except RequestValidationError:
        return
    asyncio.run(buy(prism_mock, request))


# --- refused both ways -----------------------------------------------------------------------

# (form key, a value the spec forbids). Each must be refused by Prism and by our model.
FORBIDDEN: list[tuple[str, Any]] = [
    ("TrunkSid", "TK123"),
    ("SmsApplicationSid", "AD" + HEX32),
    ("VoiceApplicationSid", "AP" + HEX32 + "0"),
    ("BundleSid", "BU" + "g" * 32),
    ("IdentitySid", "ri" + HEX32),
    ("AddressSid", ""),
    ("SmsMethod", "get"),
    ("VoiceMethod", "PUT"),
    ("StatusCallbackMethod", ""),
    ("EmergencyStatus", "active"),
    ("VoiceReceiveMode", "sms"),
    ("VoiceCallerIdLookup", "yes"),
    ("SmsUrl", "not a url"),
    ("SmsUrl", "example.com/sms"),
    ("SmsUrl", "https://example.com/%zz"),
    ("SmsFallbackUrl", "https://example.com/\u20ac"),
    ("VoiceUrl", "https://example.com/[x]"),
    ("VoiceUrl", "https://example.com/?q=[1]"),
    ("StatusCallback", "https://example.com/a#b#c"),
    ("VoiceFallbackUrl", "https://[::1/"),
    ("VoiceFallbackUrl", "https://[::1]x/"),
    ("VoiceFallbackUrl", "https://[fe80::1%25eth0]/"),
    ("VoiceFallbackUrl", "https://ex[ample.com/"),
]


@ENDPOINTS
@pytest.mark.parametrize(("key", "value"), FORBIDDEN, ids=[f"{k}={v!r}" for k, v in FORBIDDEN])
async def test_what_prism_refuses_our_models_refuse(
    prism_mock: PrismProcess, mobile: bool, key: str, value: Any
) -> None:
    path = MOBILE_PATH if mobile else GENERIC_PATH
    status, body = await raw_post(prism_mock, path, [("PhoneNumber", "+15005550006"), (key, value)])
    assert status == 422, body
    assert body["validation"], body
    assert all(item["location"] == ["body", key] for item in body["validation"]), body
    name = field_for_key(mobile, key)
    with pytest.raises(RequestValidationError, match=name):
        request_class(mobile)(phone_number="+15005550006", **{name: value})


async def test_a_missing_mobile_number_is_refused_both_ways(prism_mock: PrismProcess) -> None:
    status, body = await raw_post(prism_mock, MOBILE_PATH, [("FriendlyName", "no number")])
    assert status == 422, body
    assert [item["code"] for item in body["validation"]] == ["required"], body
    with pytest.raises(RequestValidationError, match="phone_number"):
        MobileNumberPurchase(phone_number=None)  # type: ignore[arg-type]


async def test_a_bad_account_sid_is_refused_both_ways(prism_mock: PrismProcess) -> None:
    for bad in ("AC123", "AD" + HEX32, "AC" + "x" * 32):
        url = prism_mock.url + GENERIC_PATH.replace("{AccountSid}", bad)
        headers = {
            "Authorization": aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=b"AreaCode=500", headers=headers) as response,
        ):
            body = await response.json(content_type=None)
        assert response.status == 422, body
        assert {tuple(item["location"]) for item in body["validation"]} == {("path", "accountsid")}
        with pytest.raises(RequestValidationError, match="account_sid"):
            TwilioNumbersClient(bad, AUTH_TOKEN)
