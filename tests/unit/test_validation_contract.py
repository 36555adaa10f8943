"""Validation bugs the contract tests found (tests/contract), one test each.

Each was a request our models accepted but Twilio's spec forbids, or one they accepted that
could not be sent at all. The rule each test restates is quoted from the spec.
"""

from __future__ import annotations

import pytest

from twilio_numbers_async import MobileNumberPurchase, NumberPurchase, RequestValidationError
from twilio_numbers_async._checks import check_url, redact_url
from twilio_numbers_async._serde import encode_form

# --- URLs: `format: uri` is RFC 3986 ---------------------------------------------------------
# Prism (ajv's "uri" format) refused these with 422, our check_url took them.


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/[x]",  # "[" and "]" only enclose an IP literal host
        "https://example.com/?q=[1]",
        "https://example.com/#x[",
        "https://ex[ample.com/",
        "https://example.com]/",
        "https://[::1]x/",  # nothing but ":port" may follow the IP literal
        "https://[fe80::1%25eth0]/",  # RFC 3986 has no zone index
        "https://[zzz]/",  # not an IPv6 address
        "https://[::1/",  # unclosed
        "https://example.com/a#b#c",  # the fragment holds no "#"
        "https://u@p@example.com/",  # the user information holds no "@"
    ],
)
def test_urls_rfc_3986_forbids_are_refused(url: str) -> None:
    with pytest.raises(RequestValidationError, match="sms_url"):
        NumberPurchase(area_code="415", sms_url=url)


def test_a_malformed_ipv6_url_names_its_field_and_hides_its_password() -> None:
    # It used to escape as urlsplit's bare ValueError, naming no field.
    with pytest.raises(RequestValidationError) as caught:
        NumberPurchase(area_code="415", voice_url="https://bob:hunter2@[::1/hook")
    assert caught.value.field == "voice_url"
    assert "hunter2" not in str(caught.value)
    assert redact_url("https://bob:hunter2@[::1/hook") == "https://***@[::1/hook"


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1]/ipv6",
        "https://[2001:db8::1]:8443/a?b=c#d",
        "https://[v1.fe]/future",
        "https://user:p%40ss@example.com/",
        "https://example.com/%5Bx%5D?q=%5B1%5D#a%23b",
        "https://example.com/a/b;c=d?e=f/g?h#i/j?k:l@m",
        "http://example.com:/empty-port",
    ],
)
def test_urls_rfc_3986_allows_are_still_taken(url: str) -> None:
    assert check_url("sms_url", url) == url


# --- text: what can't be encoded can't be sent -----------------------------------------------


@pytest.mark.parametrize("field", ["friendly_name", "api_version"])
def test_a_lone_surrogate_is_refused(field: str) -> None:
    # The form is UTF-8; encode_form used to raise UnicodeEncodeError at send time instead.
    with pytest.raises(RequestValidationError, match=field):
        NumberPurchase(area_code="415", **{field: "caf\ud800"})  # type: ignore[arg-type]


def test_any_other_unicode_is_sent() -> None:
    request = NumberPurchase(area_code="415", friendly_name="caf\u00e9 \U0001f4de")
    assert b"FriendlyName=caf%C3%A9+%F0%9F%93%9E" in encode_form(request)


# --- Mobile: `"required": ["PhoneNumber"]` -------------------------------------------------


def test_the_mobile_phone_number_is_required() -> None:
    # None passed as "not sent", and encode_form then sent PhoneNumber=None.
    with pytest.raises(RequestValidationError, match="phone_number: is required"):
        MobileNumberPurchase(phone_number=None)  # type: ignore[arg-type]
