"""Which country a North American area code is in: Canada's, or (by Twilio's rule) the US.

The North American Numbering Plan shares country code +1 between the US, Canada and some
Caribbean countries, but Twilio's ``AvailablePhoneNumbers`` search is per country: an area code
must be searched in its own country (``/CA/Local.json?AreaCode=604``), or the search comes back
empty. :func:`country_of_area_code` answers which, with no I/O.

The table is Canada's geographic area codes (NPAs), in service or assigned to a province for
a coming overlay. Source: the Canadian Numbering Administrator's list of Canadian area codes
(CNAC, cnac.ca), which NANPA's NPA reports (nationalnanpa.com) repeat, as of 2025.
Non-geographic codes (600, 622, 633...: Canadian services, never sold as local numbers) are
left out. ``tests/unit/test_nanp.py`` holds it to Google's libphonenumber metadata (the
``phonenumbers`` package), so that an overlay added there can't go unnoticed here.
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = [
    "CANADIAN_AREA_CODES",
    "TOLL_FREE_AREA_CODES",
    "Country",
    "country_of_area_code",
]

Country = Literal["US", "CA"]

#: The NANP's toll-free codes in service (NANPA): numbers in them are Twilio's ``TollFree``
#: ones, not ``Local``, and the US and Canada share them.
TOLL_FREE_AREA_CODES: Final = ("800", "833", "844", "855", "866", "877", "888")

#: Canada's geographic area codes, by province or territory.
CANADIAN_AREA_CODES: Final = frozenset(
    {
        # Alberta
        "368", "403", "587", "780", "825",
        # British Columbia
        "236", "250", "257", "604", "672", "778",
        # Manitoba
        "204", "431", "584",
        # New Brunswick
        "428", "506",
        # Newfoundland and Labrador
        "709", "879",
        # Nova Scotia and Prince Edward Island
        "782", "902",
        # Ontario (387: assigned for an overlay, not yet in libphonenumber's metadata)
        "226", "249", "273", "289", "343", "365", "382", "387", "416", "437", "519", "548",
        "613", "647", "683", "705", "742", "753", "807", "905", "942",
        # Quebec
        "263", "354", "367", "418", "438", "450", "468", "514", "579", "581", "819", "873",
        # Saskatchewan
        "306", "474", "639",
        # Yukon, Northwest Territories and Nunavut
        "867",
    }
)  # fmt: skip

# NXX: a first digit from 2 to 9, as every NANP area code has.
_AREA_CODE: Final = re.compile(r"[2-9][0-9]{2}")


def country_of_area_code(area_code: str) -> Country:
    """``"CA"`` for one of Canada's area codes, else ``"US"``: Twilio's country for the search.

    ``ValueError`` for anything that is not three digits starting 2 to 9.
    """
    if _AREA_CODE.fullmatch(area_code) is None:
        raise ValueError(f"an area code is three digits starting 2 to 9, not {area_code!r}")
    return "CA" if area_code in CANADIAN_AREA_CODES else "US"
