"""Requests are validated at construction, before any I/O, and encoded exactly as Twilio expects."""

from __future__ import annotations

import json
import pickle
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import attrs
import pytest

from twilio_numbers_async import (
    EmergencyStatus,
    HttpMethod,
    MobileNumberPurchase,
    NumberPurchase,
    RequestValidationError,
    TwilioNumbersError,
    VoiceReceiveMode,
)
from twilio_numbers_async._serde import encode_form, form_fields

SID = {prefix: prefix + "0123456789abcdef" * 2 for prefix in ("AP", "AD", "TK", "RI", "BU")}
FULL_FIELDS: dict[str, Any] = {
    "api_version": "2010-04-01",
    "friendly_name": "Support line & more",
    "sms_application_sid": SID["AP"],
    "sms_fallback_method": "GET",
    "sms_fallback_url": "https://example.com/sms-fallback",
    "sms_method": HttpMethod.POST,
    "sms_url": "https://example.com/sms?team=a+b",
    "status_callback": "http://example.com/status",
    "status_callback_method": "POST",
    "voice_application_sid": SID["AP"],
    "voice_caller_id_lookup": False,
    "voice_fallback_method": "GET",
    "voice_fallback_url": "https://example.com/voice-fallback",
    "voice_method": "GET",
    "voice_url": "https://example.com/voice",
    "emergency_status": "Active",
    "emergency_address_sid": SID["AD"],
    "trunk_sid": SID["TK"],
    "identity_sid": SID["RI"],
    "address_sid": SID["AD"],
    "voice_receive_mode": "fax",
    "bundle_sid": SID["BU"],
}


def form_of(request: NumberPurchase | MobileNumberPurchase) -> dict[str, str]:
    return dict(
        parse_qsl(encode_form(request).decode(), keep_blank_values=True, strict_parsing=True)
    )


# --- the generic endpoint's either/or ---------------------------------------------------------


def test_phone_number_purchase_sends_only_the_number() -> None:
    assert form_of(NumberPurchase(phone_number="+15005550006")) == {"PhoneNumber": "+15005550006"}


def test_area_code_purchase_sends_only_the_area_code() -> None:
    assert form_of(NumberPurchase(area_code="415")) == {"AreaCode": "415"}


@pytest.mark.parametrize(
    "fields", [{}, {"phone_number": "+15005550006", "area_code": "415"}], ids=["neither", "both"]
)
def test_generic_endpoint_takes_exactly_one_of_number_and_area_code(fields: dict[str, str]) -> None:
    with pytest.raises(RequestValidationError, match="exactly one of phone_number"):
        NumberPurchase(**fields)


def test_mobile_purchase_requires_a_number() -> None:
    with pytest.raises(TypeError, match="phone_number"):
        MobileNumberPurchase()  # type: ignore[call-arg]


# --- every field, encoded ---------------------------------------------------------------------


def test_every_field_is_encoded_with_its_pascal_case_key() -> None:
    form = form_of(NumberPurchase(phone_number="+14155551234", **FULL_FIELDS))
    assert form == {
        "PhoneNumber": "+14155551234",
        "ApiVersion": "2010-04-01",
        "FriendlyName": "Support line & more",
        "SmsApplicationSid": SID["AP"],
        "SmsFallbackMethod": "GET",
        "SmsFallbackUrl": "https://example.com/sms-fallback",
        "SmsMethod": "POST",
        "SmsUrl": "https://example.com/sms?team=a+b",
        "StatusCallback": "http://example.com/status",
        "StatusCallbackMethod": "POST",
        "VoiceApplicationSid": SID["AP"],
        "VoiceCallerIdLookup": "false",
        "VoiceFallbackMethod": "GET",
        "VoiceFallbackUrl": "https://example.com/voice-fallback",
        "VoiceMethod": "GET",
        "VoiceUrl": "https://example.com/voice",
        "EmergencyStatus": "Active",
        "EmergencyAddressSid": SID["AD"],
        "TrunkSid": SID["TK"],
        "IdentitySid": SID["RI"],
        "AddressSid": SID["AD"],
        "VoiceReceiveMode": "fax",
        "BundleSid": SID["BU"],
    }


def test_mobile_encodes_the_same_fields() -> None:
    form = form_of(MobileNumberPurchase(phone_number="+447700900123", **FULL_FIELDS))
    assert form["PhoneNumber"] == "+447700900123"
    assert "AreaCode" not in form
    assert len(form) == 23


def test_field_counts_match_the_two_endpoints() -> None:
    assert len(form_fields(NumberPurchase)) == 24
    assert len(form_fields(MobileNumberPurchase)) == 23


def test_the_body_is_percent_encoded_bytes() -> None:
    body = encode_form(NumberPurchase(phone_number="+15005550006", friendly_name="a b&c=d"))
    assert isinstance(body, bytes)
    assert body == b"FriendlyName=a+b%26c%3Dd&PhoneNumber=%2B15005550006"


@pytest.mark.parametrize(("value", "sent"), [(True, "true"), (False, "false")])
def test_an_explicit_boolean_is_sent(value: bool, sent: str) -> None:
    form = form_of(NumberPurchase(area_code="415", voice_caller_id_lookup=value))
    assert form["VoiceCallerIdLookup"] == sent


def test_enum_fields_take_members_or_their_values() -> None:
    by_value = NumberPurchase(
        area_code="415", sms_method="GET", emergency_status="Inactive", voice_receive_mode="voice"
    )
    by_member = NumberPurchase(
        area_code="415",
        sms_method=HttpMethod.GET,
        emergency_status=EmergencyStatus.INACTIVE,
        voice_receive_mode=VoiceReceiveMode.VOICE,
    )
    assert by_value == by_member
    assert by_value.sms_method is HttpMethod.GET


def test_every_optional_field_defaults_to_not_sent() -> None:
    request = NumberPurchase(area_code="415")
    unset = [f.name for f in attrs.fields(NumberPurchase) if getattr(request, f.name) is None]
    assert len(unset) == 23


def test_requests_are_frozen_and_hashable() -> None:
    request = NumberPurchase(area_code="415")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        request.area_code = "212"  # type: ignore[misc]
    assert len({request, NumberPurchase(area_code="415")}) == 1


def test_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        NumberPurchase("+15005550006")  # type: ignore[misc]


# --- validation: each rule names its field ----------------------------------------------------

INVALID: list[tuple[str, object, str]] = [
    ("phone_number", "4155551234", "not an E.164 number"),
    ("phone_number", "+0123456789", "not an E.164 number"),
    ("phone_number", "+1415555123456789", "not an E.164 number"),
    ("phone_number", "+1 415 555 1234", "not an E.164 number"),
    ("phone_number", "+1415", "+1 numbers have 10 digits after the country code; this one has 3"),
    ("phone_number", "+1415555", "this one has 6"),
    ("phone_number", "+4477009001", "+44 numbers have 7, 9 or 10 digits"),
    ("phone_number", "+14155551234\n", "CR, LF or NUL"),
    ("phone_number", 14155551234, "must be a string"),
    ("area_code", "41", "not an area code"),
    ("area_code", "4155", "not an area code"),
    ("area_code", "41a", "not an area code"),
    ("sms_application_sid", "AP123", "not the SID of an Application"),
    ("sms_application_sid", "PN" + "0" * 32, "not the SID of an Application"),
    ("voice_application_sid", "AP" + "g" * 32, "not the SID of an Application"),
    ("address_sid", "AD" + "0" * 31, "not the SID of an Address"),
    ("emergency_address_sid", "AP" + "0" * 32, "not the SID of an Address"),
    ("trunk_sid", "TK" + "0" * 33, "not the SID of a SIP Trunk"),
    ("identity_sid", "ri" + "0" * 32, "not the SID of an Identity"),
    ("bundle_sid", "BU" + "0" * 32 + "\x00", "CR, LF or NUL"),
    ("sms_method", "get", "not one of 'GET', 'POST'"),
    ("voice_method", "PUT", "not one of 'GET', 'POST'"),
    ("emergency_status", "active", "not one of 'Active', 'Inactive'"),
    ("voice_receive_mode", "sms", "not one of 'voice', 'fax'"),
    ("sms_url", "example.com/sms", "not an absolute http(s) URL"),
    ("sms_url", "ftp://example.com/sms", "not an absolute http(s) URL"),
    ("voice_url", "https:///path-only", "not an absolute http(s) URL"),
    ("voice_url", "https://example.com/a b", "characters a URL can't hold"),
    ("status_callback", "https://example.com/%zz", "characters a URL can't hold"),
    ("voice_fallback_url", "https://example.com:99999/", "invalid port"),
    ("sms_fallback_url", "https://example.com/\r\nX-Injected: 1", "CR, LF or NUL"),
    ("friendly_name", "x" * 65, "65 characters long; Twilio allows 64"),
    ("friendly_name", "line\rbreak", "CR, LF or NUL"),
    ("api_version", "2010-04-01\n", "CR, LF or NUL"),
    ("voice_caller_id_lookup", "true", "must be True or False"),
    ("voice_caller_id_lookup", 1, "must be True or False"),
]


@pytest.mark.parametrize(("field", "value", "reason"), INVALID)
def test_invalid_values_are_refused_naming_the_field(
    field: str, value: object, reason: str
) -> None:
    base = {} if field in ("phone_number", "area_code") else {"area_code": "415"}
    with pytest.raises(RequestValidationError) as caught:
        NumberPurchase(**{**base, field: value})
    assert caught.value.field == field
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"{field}: ")


def test_validation_errors_are_value_errors_and_library_errors() -> None:
    with pytest.raises(ValueError, match="area_code"):
        NumberPurchase(area_code="1")
    assert issubclass(RequestValidationError, TwilioNumbersError)


def test_mobile_validates_like_the_generic_endpoint() -> None:
    with pytest.raises(RequestValidationError, match="phone_number"):
        MobileNumberPurchase(phone_number="07700900123")
    with pytest.raises(RequestValidationError, match="trunk_sid"):
        MobileNumberPurchase(phone_number="+447700900123", trunk_sid="TK1")


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com",
        "http://example.com:8080/sms?x=1&y=%20#frag",
        "https://user:secret@example.com/hook",
        "https://[::1]/ipv6",
        "HTTPS://EXAMPLE.COM/upper",
    ],
)
def test_valid_urls_are_accepted(value: str) -> None:
    assert NumberPurchase(area_code="415", sms_url=value).sms_url == value


def test_friendly_name_of_64_characters_is_accepted() -> None:
    assert NumberPurchase(area_code="415", friendly_name="x" * 64).friendly_name == "x" * 64


def test_validation_errors_pickle() -> None:
    with pytest.raises(RequestValidationError) as caught:
        NumberPurchase(area_code="4")
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.field, again.reason, str(again)) == (
        caught.value.field,
        caught.value.reason,
        str(caught.value),
    )


# --- repr --------------------------------------------------------------------------------------


def test_repr_shows_only_what_is_sent() -> None:
    assert repr(NumberPurchase(area_code="415", sms_method="GET")) == (
        "NumberPurchase(sms_method=<HttpMethod.GET: 'GET'>, area_code='415')"
    )


def test_repr_and_errors_hide_url_passwords() -> None:
    request = NumberPurchase(area_code="415", sms_url="https://bob:hunter2@example.com/sms")
    assert "hunter2" not in repr(request)
    assert "bob:***@example.com" in repr(request)
    with pytest.raises(RequestValidationError) as caught:
        NumberPurchase(area_code="415", voice_url="https://bob:hunter2@example.com/a b")
    assert "hunter2" not in str(caught.value)


def test_a_property_the_purchase_does_not_hang_on_is_dropped_when_it_cant_be_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bought number with a legacy trunk SID is still a number bought: failing to read it
    would make a sale "unknown". What identifies the number must still read."""
    from tests.conftest import resource
    from twilio_numbers_async._serde import parse_number
    from twilio_numbers_async.errors import ResponseParseError

    body = resource(trunk_sid="TK-legacy", beta="false", bundle_sid="nonsense")
    number = parse_number(201, json.dumps(body).encode())
    assert (number.trunk_sid, number.beta, number.bundle_sid) == (None, None, None)
    assert number.sid == body["sid"]
    (said,) = [r.getMessage() for r in caplog.records]
    assert "ignoring what can't be read in beta, bundle_sid, trunk_sid" in said
    with pytest.raises(ResponseParseError, match=r"\$\.sid"):
        parse_number(201, json.dumps(resource(sid="XX" + "1" * 32)).encode())


def test_a_201_is_read_tolerantly() -> None:
    from tests.conftest import resource
    from twilio_numbers_async import AddressRequirement, IncomingPhoneNumber
    from twilio_numbers_async._serde import parse_number

    body = resource(
        status="porting-in",
        address_requirements="regional",  # a value newer than the spec: kept, as a string
        sms_url="",  # Twilio's "unset"
        sms_application_sid="",
        date_created="Mon, 02 Mar 2026 09:30:00 -0500",
        date_updated="2 Mar 2026 14:30:00 GMT",  # RFC 2822 allows both
    )
    number = parse_number(201, json.dumps(body).encode())
    assert isinstance(number, IncomingPhoneNumber)
    assert number.status == "porting-in"
    assert number.address_requirements == "regional"
    assert not isinstance(number.address_requirements, AddressRequirement)
    assert (number.sms_url, number.sms_application_sid) == (None, None)
    assert number.date_created is not None
    assert number.date_created.utcoffset() == timedelta(hours=-5), "the offset as given"
    assert number.date_updated == number.date_created
    assert number.emergency_status is EmergencyStatus.INACTIVE
