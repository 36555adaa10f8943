"""The country of a NANP area code, held to Google's libphonenumber metadata."""

from __future__ import annotations

import re

import phonenumbers
import pytest

from twilio_numbers_async._nanp import CANADIAN_AREA_CODES, country_of_area_code

# Codes our table has that libphonenumber's metadata does not (yet): each one checked by hand.
ASSIGNED_NOT_YET_IN_LIBPHONENUMBER = frozenset({"387"})


def libphonenumber_canadian_area_codes() -> set[str]:
    """Canada's geographic area codes as libphonenumber knows them: those whose numbers its
    fixed-line pattern for CA accepts (non-geographic 600, 622... are not fixed lines)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CA")
    assert metadata is not None
    pattern = re.compile(metadata.fixed_line.national_number_pattern)
    return {
        str(code)
        for code in range(200, 1000)
        if pattern.fullmatch(f"{code}2345678") and pattern.fullmatch(f"{code}8765432")
    }


def test_the_table_is_libphonenumbers_canada() -> None:
    theirs = libphonenumber_canadian_area_codes()
    assert len(theirs) > 50  # the pattern was read, not an empty match
    assert theirs - CANADIAN_AREA_CODES == set(), "a Canadian area code our table lacks"
    assert CANADIAN_AREA_CODES - theirs <= ASSIGNED_NOT_YET_IN_LIBPHONENUMBER


@pytest.mark.parametrize(
    ("area_code", "country"),
    [("604", "CA"), ("416", "CA"), ("867", "CA"), ("415", "US"), ("212", "US"), ("800", "US")],
)
def test_country_of_area_code(area_code: str, country: str) -> None:
    assert country_of_area_code(area_code) == country


def test_every_canadian_code_is_a_us_region_code_for_nobody() -> None:
    # No code in the table is one libphonenumber places in the US.
    for code in CANADIAN_AREA_CODES - ASSIGNED_NOT_YET_IN_LIBPHONENUMBER:
        number = phonenumbers.parse(f"+1{code}2345678")
        assert phonenumbers.region_code_for_number(number) == "CA", code


@pytest.mark.parametrize("bad", ["41", "4155", "041", "123", "abc", "", " 415"])
def test_not_an_area_code_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="three digits"):
        country_of_area_code(bad)
