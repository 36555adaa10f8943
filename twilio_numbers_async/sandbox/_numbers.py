"""Facts about phone numbers that the sandbox's parts share: Twilio's magic test values, the
NANP's toll-free codes, a number's kind and its default FriendlyName."""

from __future__ import annotations

import re
from typing import Final, Literal

from twilio_numbers_async._nanp import TOLL_FREE_AREA_CODES

__all__ = [
    "MAGIC_AREA_CODE",
    "MAGIC_INVALID",
    "MAGIC_NUMBER",
    "MAGIC_UNAVAILABLE",
    "NO_STOCK_AREA_CODE",
    "TOLL_FREE_AREA_CODES",
    "Kind",
    "friendly_name",
    "number_kind",
]

Kind = Literal["local", "mobile", "toll_free"]

#: Twilio's test-credential numbers: always for sale (any number of times, by anyone), never
#: available (21422), and invalid (21421).
MAGIC_NUMBER: Final = "+15005550006"
MAGIC_UNAVAILABLE: Final = "+15005550000"
MAGIC_INVALID: Final = "+15005550001"
#: Twilio's test-credential area codes: 500 sells :data:`MAGIC_NUMBER`, 533 has nothing.
MAGIC_AREA_CODE: Final = "500"
NO_STOCK_AREA_CODE: Final = "533"

_NANP: Final = re.compile(r"\+1([2-9][0-9]{2})([0-9]{3})([0-9]{4})")


def friendly_name(phone_number: str) -> str:
    """Twilio's default FriendlyName: ``(415) 555-0100`` for +1 numbers, else the number."""
    match = _NANP.fullmatch(phone_number)
    if match is None:
        return phone_number
    area, exchange, line = match.groups()
    return f"({area}) {exchange}-{line}"


def number_kind(phone_number: str) -> Kind:
    """What kind of number it is, from its prefix: UK ``+447`` numbers are mobile, the NANP's
    toll-free codes toll free, everything else local."""
    if phone_number.startswith("+447"):
        return "mobile"
    match = _NANP.fullmatch(phone_number)
    if match is not None and match[1] in TOLL_FREE_AREA_CODES:
        return "toll_free"
    return "local"
