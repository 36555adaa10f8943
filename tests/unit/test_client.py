"""The client against Twilio in memory: what goes on the wire, what comes back, its lifecycle."""

from __future__ import annotations

import base64
import contextlib
import logging
import platform
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests._memory import MemoryTwilio
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BASE,
    MOBILE_URL,
    NUMBERS_URL,
    FakeTime,
    RecordingLimiter,
    page,
    resource,
    twilio_error,
)
from twilio_numbers_async import (
    AuthenticationError,
    Capabilities,
    HttpMethod,
    IncomingPhoneNumber,
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseOutcomeUnknownError,
    RequestValidationError,
    ResponseParseError,
    TwilioApiError,
    TwilioNumbersClient,
    __version__,
)
from twilio_numbers_async._transport import Request
from twilio_numbers_async.models import MobileNumberPurchaseFields, NumberPurchaseFields

SUBACCOUNT = "AC" + "f" * 32
API_KEY = "SK" + "e" * 32
API_SECRET = "api-secret-that-must-never-leak"
FIND_URL = f"{NUMBERS_URL}?PhoneNumber=%2B15005550006&PageSize=50"


def only_call(twilio: MemoryTwilio, method: str, url: str) -> Request:
    calls = twilio.sent(method, url)
    assert len(calls) == 1, f"expected one {method} {url}, saw {len(calls)}"
    return calls[0]


# --- what goes on the wire --------------------------------------------------------------------


async def test_buys_a_given_number(client: TwilioNumbersClient, twilio: MemoryTwilio) -> None:
    twilio.post(NUMBERS_URL, 201, resource())
    number = await client.create_incoming_phone_number(
        phone_number="+15005550006", sms_url="https://example.com/sms", sms_method="GET"
    )
    assert isinstance(number, IncomingPhoneNumber)
    assert number.sid == "PN" + "1" * 32
    assert number.capabilities == Capabilities(voice=True, sms=True, mms=True, fax=False)
    assert number.date_created == datetime(2015, 7, 30, 23, 19, 4, tzinfo=UTC)
    call = only_call(twilio, "POST", NUMBERS_URL)
    assert call.body == (
        b"SmsMethod=GET&SmsUrl=https%3A%2F%2Fexample.com%2Fsms&PhoneNumber=%2B15005550006"
    )


async def test_buys_any_number_in_an_area_code(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, resource(phone_number="+14155550100"))
    number = await client.create_incoming_phone_number(area_code="415")
    assert number.phone_number == "+14155550100"
    assert only_call(twilio, "POST", NUMBERS_URL).body == b"AreaCode=415"


async def test_buys_a_mobile_number_on_its_own_endpoint(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    body = resource(phone_number="+447700900123")
    del body["type"]
    twilio.post(MOBILE_URL, 201, body)
    number = await client.create_incoming_phone_number_mobile(
        phone_number="+447700900123", voice_receive_mode="fax"
    )
    assert number.phone_number == "+447700900123"
    assert number.type is None
    sent = only_call(twilio, "POST", MOBILE_URL).body
    assert parse_qsl(sent.decode()) == [
        ("PhoneNumber", "+447700900123"),
        ("VoiceReceiveMode", "fax"),
    ]


async def test_purchase_dispatches_on_the_request_type(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, resource())
    twilio.post(MOBILE_URL, 201, resource(phone_number="+447700900123"))
    await client.purchase(NumberPurchase(area_code="500"))
    await client.purchase(MobileNumberPurchase(phone_number="+447700900123"))
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1
    assert len(twilio.sent("POST", MOBILE_URL)) == 1


async def test_a_subaccount_goes_in_the_path(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    url = NUMBERS_URL.replace(ACCOUNT_SID, SUBACCOUNT)
    twilio.post(url, 201, resource(account_sid=SUBACCOUNT))
    number = await client.purchase(NumberPurchase(area_code="415"), account_sid=SUBACCOUNT)
    assert number.account_sid == SUBACCOUNT
    only_call(twilio, "POST", url)


async def test_headers_carry_basic_auth_and_a_user_agent(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, resource())
    await client.create_incoming_phone_number(area_code="500")
    headers = only_call(twilio, "POST", NUMBERS_URL).headers
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"].startswith(f"twilio-numbers-async/{__version__} ")
    assert f"Python/{platform.python_version()}" in headers["User-Agent"]


async def test_an_api_key_signs_requests_and_the_account_stays_in_the_path(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, resource())
    async with TwilioNumbersClient(
        ACCOUNT_SID,
        api_key=API_KEY,
        api_secret=API_SECRET,
        rate_limit=None,
        area_codes="direct",
        transport=twilio,
    ) as client:
        await client.create_incoming_phone_number(area_code="500")
    headers = only_call(twilio, "POST", NUMBERS_URL).headers
    expected = base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"


async def test_invalid_input_is_refused_before_any_request(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    with pytest.raises(RequestValidationError, match="sms_url"):
        await client.create_incoming_phone_number(area_code="415", sms_url="not a url")
    with pytest.raises(RequestValidationError, match="account_sid"):
        await client.purchase(NumberPurchase(area_code="415"), account_sid="AC123")
    with pytest.raises(TypeError, match="NumberPurchase or MobileNumberPurchase"):
        await client.purchase({"AreaCode": "415"})  # type: ignore[arg-type]
    assert twilio.requests == []


# --- what comes back --------------------------------------------------------------------------


async def test_twilio_errors_carry_everything_twilio_said(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    twilio.post(
        NUMBERS_URL,
        400,
        twilio_error(21422, message="PhoneNumber +15005550000 is not available"),
        headers={"Twilio-Request-Id": "RQ" + "a" * 32},
    )
    with pytest.raises(TwilioApiError) as caught:
        await client.create_incoming_phone_number(phone_number="+15005550000")
    error = caught.value
    assert type(error) is TwilioApiError
    assert (error.status, error.code) == (400, 21422)
    assert error.message == "PhoneNumber +15005550000 is not available"
    assert error.more_info == "https://www.twilio.com/docs/errors/21422"
    assert error.request_id == "RQ" + "a" * 32
    assert (error.method, error.url) == ("POST", NUMBERS_URL)
    assert error.hint is not None
    assert "21422" in str(error)
    assert error.hint in str(error)
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1, "a rejection is never retried"


async def test_401_is_an_authentication_error(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 401, twilio_error(20003, 401, "Authenticate"))
    with pytest.raises(AuthenticationError) as caught:
        await client.create_incoming_phone_number(area_code="415")
    assert caught.value.code == 20003
    assert "auth token" in str(caught.value)


async def test_a_non_json_error_page_becomes_an_api_error(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"
    twilio.post(NUMBERS_URL, 502, html, headers={"Content-Type": "text/html"})
    with pytest.raises(PurchaseOutcomeUnknownError) as caught:
        await client.create_incoming_phone_number(area_code="415")
    cause = caught.value.cause
    assert isinstance(cause, TwilioApiError)
    assert (cause.status, cause.code) == (502, None)
    assert "502 Bad Gateway" in cause.message
    assert "\n" not in cause.message


async def test_an_unreadable_201_naming_its_sid_is_fetched(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    body = '{"sid": "PN' + "2" * 32 + '", "date_created": "yesterday"}'
    twilio.post(NUMBERS_URL, 201, body)
    twilio.get(f"{BASE}/IncomingPhoneNumbers/PN{'2' * 32}.json", 200, resource(sid="PN" + "2" * 32))
    number = await client.create_incoming_phone_number(area_code="415")
    assert number.sid == "PN" + "2" * 32
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1, "a 201 is never retried"


async def test_an_unreadable_201_that_cant_be_fetched_is_unknown_and_names_the_number(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    body = '{"sid": "PN' + "2" * 32 + '", "date_created": "yesterday"}'
    twilio.post(NUMBERS_URL, 201, body)
    twilio.get(
        f"{BASE}/IncomingPhoneNumbers/PN{'2' * 32}.json",
        403,
        twilio_error(20403, 403),
    )
    with pytest.raises(PurchaseOutcomeUnknownError) as caught:
        await client.create_incoming_phone_number(area_code="415")
    cause = caught.value.cause
    assert isinstance(cause, ResponseParseError)
    assert (cause.status, cause.sid, cause.body) == (201, "PN" + "2" * 32, body)
    assert "date_created" in str(cause)
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1, "a 201 is never retried"


# --- finding a number -------------------------------------------------------------------------


async def test_find_returns_only_an_exact_match(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    # Twilio's filter also matches numbers that merely contain the digits.
    twilio.get(FIND_URL, 200, page(resource(phone_number="+150055500061")))
    assert await client.find_incoming_phone_number("+15005550006") is None
    twilio.get(FIND_URL, 200, page(resource(phone_number="+15005550006")))
    found = await client.find_incoming_phone_number("+15005550006")
    assert found is not None
    assert found.phone_number == "+15005550006"


async def test_find_follows_next_pages(client: TwilioNumbersClient, twilio: MemoryTwilio) -> None:
    next_uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json?Page=1&PageToken=x"
    twilio.get(FIND_URL, 200, page(resource(phone_number="+150055500060"), next_page_uri=next_uri))
    twilio.get(f"https://api.twilio.com{next_uri}", 200, page(resource()))
    found = await client.find_incoming_phone_number("+15005550006")
    assert found is not None
    assert found.sid == "PN" + "1" * 32


async def test_find_checks_its_input(client: TwilioNumbersClient, twilio: MemoryTwilio) -> None:
    with pytest.raises(RequestValidationError, match="phone_number"):
        await client.find_incoming_phone_number("5550006")
    assert twilio.requests == []


# --- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "https://api.twilio.com"),
        ({"edge": "sydney"}, "https://api.sydney.us1.twilio.com"),
        ({"edge": "sydney", "region": "au1"}, "https://api.sydney.au1.twilio.com"),
        ({"region": "ie1"}, "https://api.ie1.twilio.com"),
        ({"base_url": "http://127.0.0.1:8080/"}, "http://127.0.0.1:8080"),
        ({"base_url": "http://localhost:8080"}, "http://localhost:8080"),
        ({"base_url": "http://[::1]:8080"}, "http://[::1]:8080"),
        ({"base_url": "https://proxy.example.com/twilio"}, "https://proxy.example.com/twilio"),
    ],
)
def test_the_host_is_chosen_as_documented(kwargs: dict[str, str], expected: str) -> None:
    assert TwilioNumbersClient(ACCOUNT_SID, AUTH_TOKEN, **kwargs).base_url == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "http://api.example.com"}, "plain http to a host that is not loopback"),
        ({"base_url": "http://10.0.0.1:80"}, "plain http to a host that is not loopback"),
        ({"base_url": "ftp://127.0.0.1"}, "absolute http"),
        ({"base_url": "https://u:p@example.com"}, "no credentials"),
        ({"edge": "syd ney"}, "host label"),
        ({"base_url": "https://example.com\r\nX: y"}, "CR, LF or NUL"),
        ({"timeout": 0}, "timeout"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TwilioNumbersClient(ACCOUNT_SID, AUTH_TOKEN, **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((ACCOUNT_SID,), {}, "no credentials"),
        ((ACCOUNT_SID, AUTH_TOKEN), {"api_key": API_KEY, "api_secret": "s"}, "not both"),
        ((ACCOUNT_SID,), {"api_key": API_KEY}, "go together"),
        ((ACCOUNT_SID,), {"api_key": "AC" + "0" * 32, "api_secret": "s"}, "api_key"),
        (("SK" + "0" * 32, AUTH_TOKEN), {}, "account_sid"),
        ((ACCOUNT_SID, "token\nX-Injected: 1"), {}, "CR, LF or NUL"),
        ((ACCOUNT_SID, ""), {}, "empty"),
    ],
)
def test_bad_credentials_are_refused(
    args: tuple[str, ...], kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TwilioNumbersClient(*args, **kwargs)


def test_from_env_reads_the_twilio_variables() -> None:
    client = TwilioNumbersClient.from_env(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_EDGE": "dublin",
            "TWILIO_REGION": "ie1",
        }
    )
    assert client.account_sid == ACCOUNT_SID
    assert client.base_url == "https://api.dublin.ie1.twilio.com"


def test_from_env_prefers_an_api_key_and_lets_arguments_win() -> None:
    client = TwilioNumbersClient.from_env(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_KEY": API_KEY,
            "TWILIO_API_SECRET": API_SECRET,
        },
        base_url="http://127.0.0.1:9",
    )
    assert API_KEY in repr(client)
    assert client.base_url == "http://127.0.0.1:9"


def test_from_env_says_what_is_missing() -> None:
    with pytest.raises(
        RequestValidationError, match=r"account_sid: is missing.*TWILIO_ACCOUNT_SID"
    ):
        TwilioNumbersClient.from_env({})
    with pytest.raises(ValueError, match="no credentials"):
        TwilioNumbersClient.from_env({"TWILIO_ACCOUNT_SID": ACCOUNT_SID})


# --- lifecycle --------------------------------------------------------------------------------


async def test_a_closed_client_refuses_requests(twilio: MemoryTwilio) -> None:
    client = TwilioNumbersClient(
        ACCOUNT_SID, AUTH_TOKEN, rate_limit=None, area_codes="direct", transport=twilio
    )
    twilio.post(NUMBERS_URL, 201, resource())
    await client.create_incoming_phone_number(area_code="500")
    await client.aclose()
    await client.aclose()  # idempotent
    assert client.closed
    assert twilio.closed, "closing the client closes its transport"
    with pytest.raises(RuntimeError, match="closed"):
        await client.create_incoming_phone_number(area_code="500")
    with pytest.raises(RuntimeError, match="closed"):
        async with client:
            pass


async def test_a_shared_in_flight_cap_is_used_as_given(twilio: MemoryTwilio) -> None:
    entered = 0

    class Slots:
        async def __aenter__(self) -> None:
            nonlocal entered
            entered += 1

        async def __aexit__(self, *exc: object) -> None:
            pass

    twilio.post(NUMBERS_URL, 201, resource(), repeat=True)
    slots: Any = Slots()
    assert isinstance(slots, contextlib.AbstractAsyncContextManager)
    async with TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        area_codes="direct",
        max_concurrency=slots,
        rate_limit=None,
        transport=twilio,
    ) as client:
        await client.create_incoming_phone_number(area_code="500")
        await client.create_incoming_phone_number(area_code="500")
    assert entered == 2


# --- secrets ----------------------------------------------------------------------------------


async def test_no_secret_in_repr_errors_or_logs(
    fake_time: FakeTime, twilio: MemoryTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [
        AUTH_TOKEN,
        API_SECRET,
        # The Authorization headers actually sent, whole and as their base64 payloads.
        *(
            base64.b64encode(f"{user}:{password}".encode()).decode()
            for user, password in ((ACCOUNT_SID, AUTH_TOKEN), (API_KEY, API_SECRET))
        ),
    ]
    twilio.post(
        NUMBERS_URL,
        429,
        twilio_error(20429, 429),
        headers={"Retry-After": "1"},
        repeat=True,
    )
    seen: list[str] = []
    for auth in ({"auth_token": AUTH_TOKEN}, {"api_key": API_KEY, "api_secret": API_SECRET}):
        # The 429's pause goes to a limiter that only records it: nobody waits a real second.
        async with TwilioNumbersClient(
            ACCOUNT_SID,
            retry=fake_time.policy(max_attempts=2),
            rate_limit=RecordingLimiter(),
            area_codes="direct",
            transport=twilio,
            **auth,
        ) as client:
            seen += [repr(client), str(client)]
            with pytest.raises(TwilioApiError) as caught:
                await client.create_incoming_phone_number(area_code="212")
            seen += [str(caught.value), repr(caught.value), repr(vars(caught.value))]
    seen.append(caplog.text)
    assert caplog.records, "the retries should have been logged"
    for text in seen:
        for secret in secrets:
            assert secret not in text


async def test_only_the_account_reaches_the_url(
    client: TwilioNumbersClient, twilio: MemoryTwilio
) -> None:
    twilio.post(NUMBERS_URL, 201, resource())
    await client.create_incoming_phone_number(area_code="500")
    (request,) = twilio.requests
    assert (request.method, request.url) == ("POST", NUMBERS_URL)
    assert AUTH_TOKEN not in request.url


def test_methods_take_every_field_of_their_request_typed_as_the_request_takes_it() -> None:
    import typing

    import attrs

    for fields, request in (
        (NumberPurchaseFields, NumberPurchase),
        (MobileNumberPurchaseFields, MobileNumberPurchase),
    ):
        declared = typing.get_type_hints(fields, include_extras=True)
        accepted = typing.get_type_hints(request.__init__)
        accepted.pop("return")
        assert set(declared) == {field.name for field in attrs.fields(request)}
        for name, hint in declared.items():
            if request is MobileNumberPurchase and name == "phone_number":
                assert hint == typing.Required[str], "the one required keyword"
                continue
            assert hint in (accepted[name], accepted[name] | None), name


def test_http_method_values() -> None:
    assert [m.value for m in HttpMethod] == ["GET", "POST"]


def test_an_error_without_context_has_no_empty_brackets() -> None:
    assert str(TwilioApiError(status=400, code=21452, message="none left")).endswith(
        "try a nearby one)"
    )


def test_a_bad_base_url_is_shown_without_its_password() -> None:
    with pytest.raises(ValueError, match="absolute http") as caught:
        TwilioNumbersClient(ACCOUNT_SID, AUTH_TOKEN, base_url="htps://AC1:hunter2@example.com")
    assert "hunter2" not in str(caught.value)


async def test_paging_keeps_the_base_urls_path(fake_time: FakeTime, twilio: MemoryTwilio) -> None:
    base = "https://proxy.example.com/twilio"
    first = f"{base}/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
    next_uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json?Page=1&PageToken=x"
    twilio.get(
        f"{first}?PhoneNumber=%2B15005550006&PageSize=50",
        200,
        page(resource(phone_number="+150055500060"), next_page_uri=next_uri),
    )
    twilio.get(f"{base}{next_uri}", 200, page(resource()))
    async with TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        area_codes="direct",
        base_url=base,
        rate_limit=None,
        retry=fake_time.policy(),
        transport=twilio,
    ) as client:
        found = await client.find_incoming_phone_number("+15005550006")
    assert found is not None
