"""Impossible phone numbers are refused before any I/O (issue 12, the E.164 bullet).

Twilio answers 21421 to ``+1415``: a country code has numbers of only some lengths. The table of
those lengths is derived from Google's libphonenumber metadata; the first tests derive it again
from the installed ``phonenumbers`` package, so that it can't drift silently.
"""

from __future__ import annotations

import base64

import aiohttp
import pytest
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata
from phonenumbers.phonenumberutil import REGION_CODE_FOR_NON_GEO_ENTITY

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN
from twilio_numbers_async import (
    MobileNumberPurchase,
    NumberPurchase,
    RequestValidationError,
    TwilioApiError,
    TwilioNumbersClient,
)
from twilio_numbers_async._checks import check_e164
from twilio_numbers_async._country_codes import NATIONAL_LENGTHS, OVERRIDES
from twilio_numbers_async.sandbox import Sandbox

#: Every kind of national number libphonenumber describes (short codes are not E.164 numbers).
NUMBER_TYPES = (
    "general_desc",
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
    "no_international_dialling",
)


def metadata_of(code: int) -> list[PhoneMetadata]:
    """The metadata of every region that numbers with country code ``code``."""
    found = []
    for region in COUNTRY_CODE_TO_REGION_CODE[code]:
        metadata = (
            PhoneMetadata.metadata_for_nongeo_region(code)
            if region == REGION_CODE_FOR_NON_GEO_ENTITY
            else PhoneMetadata.metadata_for_region(region)
        )
        assert metadata is not None, (code, region)
        found.append(metadata)
    return found


def possible_lengths(metadata: PhoneMetadata, types: tuple[str, ...] = NUMBER_TYPES) -> set[int]:
    # Lengths dialled only locally are left out: an E.164 number is dialled from abroad. -1
    # means "no number of this type".
    lengths: set[int] = set()
    for name in types:
        desc = getattr(metadata, name, None)
        if desc is not None and desc.possible_length:
            lengths.update(length for length in desc.possible_length if length > 0)
    return lengths


def derived_table() -> dict[str, tuple[int, ...]]:
    """The table as libphonenumber's metadata gives it, before the overrides."""
    table = {}
    for code in sorted(COUNTRY_CODE_TO_REGION_CODE):
        lengths: set[int] = set()
        for metadata in metadata_of(code):
            lengths |= possible_lengths(metadata)
        table[str(code)] = tuple(sorted(lengths))
    return table


# --- the table is libphonenumber's -------------------------------------------------------------


def test_the_table_is_libphonenumbers_with_the_overrides() -> None:
    expected = {**derived_table(), **OVERRIDES}
    changed = {
        code: (NATIONAL_LENGTHS.get(code), lengths)
        for code, lengths in expected.items()
        if NATIONAL_LENGTHS.get(code) != lengths
    }
    gone = sorted(set(NATIONAL_LENGTHS) - set(expected))
    update = "libphonenumber's possible lengths changed: update _country_codes.py"
    assert not changed, f"{update} (code: (ours, theirs)): {changed}"
    assert not gone, f"{update}: codes it no longer has: {gone}"


def test_each_override_is_still_needed_and_still_right() -> None:
    derived = derived_table()
    assert OVERRIDES == {"1": (10,)}
    assert derived["1"] != OVERRIDES["1"]
    # +1 is 10 digits but for Canada's 310 service numbers (a "UAN"), dialled only in Canada.
    for metadata in metadata_of(1):
        other_types = tuple(name for name in NUMBER_TYPES if name not in ("general_desc", "uan"))
        assert possible_lengths(metadata, other_types) == {10}, metadata.id
    assert possible_lengths(PhoneMetadata.metadata_for_region("CA"), ("uan",)) == {7}


def test_country_codes_are_prefix_free_and_one_to_three_digits() -> None:
    codes = list(NATIONAL_LENGTHS)
    assert all(code.isdigit() and 1 <= len(code) <= 3 and code[0] != "0" for code in codes)
    assert not [(a, b) for a in codes for b in codes if a != b and b.startswith(a)]


def test_every_example_number_of_libphonenumber_passes() -> None:
    # Conservative: a number libphonenumber gives as an example of its kind is never refused,
    # but for the one the override is about.
    checked, refused = 0, []
    for code in COUNTRY_CODE_TO_REGION_CODE:
        for metadata in metadata_of(code):
            for name in NUMBER_TYPES:
                desc = getattr(metadata, name, None)
                example = desc.example_number if desc is not None else None
                if example and len(str(code)) + len(example) <= 15:
                    checked += 1
                    try:
                        check_e164("phone_number", f"+{code}{example}")
                    except RequestValidationError:
                        refused.append((metadata.id, name, example))
    assert checked > 1000
    assert refused == [("CA", "uan", "3101234")]


# --- the check ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (
            "+1415",
            "'+1415' can't be a phone number: +1 numbers have 10 digits after the country "
            "code; this one has 3",
        ),
        ("+1415555", "+1 numbers have 10 digits after the country code; this one has 6"),
        ("+141555512345", "+1 numbers have 10 digits after the country code; this one has 11"),
        (
            "+4477009001",
            "+44 numbers have 7, 9 or 10 digits after the country code; this one has 8",
        ),
        ("+3361234567", "+33 numbers have 9 digits after the country code; this one has 8"),
        ("+61123", "+61 numbers have 5 to 10 or 12 digits after the country code; this one has 3"),
        ("+8001234567", "+800 numbers have 8 digits after the country code; this one has 7"),
    ],
)
def test_an_impossible_length_is_refused_saying_why(number: str, reason: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        check_e164("phone_number", number)
    assert caught.value.field == "phone_number"
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    "number",
    [
        # Twilio's test numbers, and the numbers the docs and tests use.
        "+15005550006",
        "+15005550000",
        "+15005550001",
        "+14155551234",
        "+447700900123",
        "+44207946000",  # +44: 7, 9 or 10 digits
        "+33612345678",
        "+80012345678",
        "+4930123456",  # +49: 4 to 15 digits
        # A country code libphonenumber doesn't know (28x are spare) is left for Twilio to judge.
        "+2801234",
        "+99912345678901",
    ],
)
def test_a_possible_number_passes(number: str) -> None:
    assert check_e164("phone_number", number) == number


@pytest.mark.parametrize("kind", [NumberPurchase, MobileNumberPurchase])
def test_requests_refuse_an_impossible_number(
    kind: type[NumberPurchase] | type[MobileNumberPurchase],
) -> None:
    with pytest.raises(RequestValidationError, match="this one has 3"):
        kind(phone_number="+1415")


async def test_a_look_up_refuses_an_impossible_number_before_any_io() -> None:
    # Nothing listens on port 9: the check must come first.
    async with TwilioNumbersClient(
        ACCOUNT_SID, AUTH_TOKEN, base_url="http://127.0.0.1:9", rate_limit=None
    ) as client:
        with pytest.raises(RequestValidationError, match="this one has 6"):
            await client.find_incoming_phone_number("+1415555")


async def test_the_sandbox_answers_21421_to_an_impossible_number() -> None:
    # Our client refuses it before sending: post the form as another client could.
    async with Sandbox() as sandbox, aiohttp.ClientSession() as session:
        credentials = base64.b64encode(f"{sandbox.account_sid}:{sandbox.auth_token}".encode())
        async with session.post(
            f"{sandbox.url}/2010-04-01/Accounts/{sandbox.account_sid}/IncomingPhoneNumbers.json",
            data={"PhoneNumber": "+1415555"},
            headers={"Authorization": f"Basic {credentials.decode()}"},
        ) as response:
            status, body = response.status, await response.json()
    assert (status, body["code"]) == (400, 21421)
    assert sandbox.purchases == []


def test_the_21421_hint_says_what_the_code_means() -> None:
    error = TwilioApiError(status=400, code=21421, message="PhoneNumber is invalid")
    assert error.hint is not None
    assert "E.164" not in error.hint
    assert "country code" in error.hint
    assert "length" in error.hint
