"""How many digits may follow each country code in an E.164 number: the table behind the
check that refuses ``+1415`` before Twilio answers 21421.

Derived from Google's libphonenumber metadata, as the ``phonenumbers`` package 9.0.43 ships it:
for each country code of ``COUNTRY_CODE_TO_REGION_CODE``, the ``possible_length`` of every
number type of every region that shares the code (``PhoneMetadata``), united. Lengths dialled
only within an area (``possible_length_local_only``) are left out, as an E.164 number is
dialled from anywhere. ``tests/unit/test_checks.py`` derives the table again from the installed
package and fails, naming each change, when the two differ.

Being united across regions and types, the table refuses only a length no number of that code
has: it never refuses a number Twilio sells. A code it does not hold is left for Twilio to judge.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Mapping
from typing import Final

__all__ = ["BY_FIRST_DIGITS", "NATIONAL_LENGTHS", "OVERRIDES"]

#: Where the table departs from libphonenumber. +1 (the North American Numbering Plan) is ten
#: digits everywhere; libphonenumber adds seven for Canada's 310 service numbers (a "UAN"),
#: which are dialled without an area code and only within Canada.
OVERRIDES: Final[Mapping[str, tuple[int, ...]]] = {"1": (10,)}

#: Country code (its digits, no "+") -> the lengths its national numbers may have, ascending.
#: One line group per world numbering zone (the code's first digit).
# fmt: off
NATIONAL_LENGTHS: Final[Mapping[str, tuple[int, ...]]] = {
    **OVERRIDES,
    "20": (8, 9, 10), "27": (5, 6, 7, 8, 9, 10), "211": (9,), "212": (9,), "213": (8, 9),
    "216": (8,), "218": (9,), "220": (7, 9), "221": (9,), "222": (8,), "223": (8,), "224": (8, 9),
    "225": (10,), "226": (8,), "227": (8,), "228": (8,), "229": (10,), "230": (7, 8, 10),
    "231": (7, 8, 9), "232": (8,), "233": (8, 9), "234": (10, 11, 12, 13, 14), "235": (8,),
    "236": (8,), "237": (8, 9), "238": (7,), "239": (7,), "240": (9,), "241": (7, 8), "242": (9,),
    "243": (7, 8, 9, 10), "244": (9,), "245": (7, 9), "246": (7,), "247": (5, 6), "248": (7,),
    "249": (9,), "250": (8, 9), "251": (9,), "252": (6, 7, 8, 9), "253": (8,), "254": (7, 8, 9, 10),
    "255": (9,), "256": (9,), "257": (8,), "258": (8, 9), "260": (9,), "261": (9,), "262": (9,),
    "263": (7, 9, 10), "264": (8, 9), "265": (7, 9), "266": (8,), "267": (7, 8, 10), "268": (8, 9),
    "269": (7,), "290": (4, 5), "291": (7,), "297": (7,), "298": (6,), "299": (6,),
    "30": (10, 11, 12), "31": (5, 6, 7, 8, 9, 10, 11), "32": (8, 9), "33": (9,), "34": (9,),
    "36": (8, 9), "39": (6, 7, 8, 9, 10, 11, 12), "350": (8,), "351": (9,),
    "352": (4, 5, 6, 7, 8, 9, 10, 11), "353": (7, 8, 9, 10), "354": (7, 9), "355": (6, 7, 8, 9),
    "356": (8,), "357": (8,), "358": (5, 6, 7, 8, 9, 10, 11, 12), "359": (6, 7, 8, 9, 12),
    "370": (8,), "371": (8,), "372": (7, 8, 10), "373": (8,), "374": (8,),
    "375": (6, 7, 8, 9, 10, 11), "376": (6, 8, 9), "377": (8, 9), "378": (8, 10), "380": (9, 10),
    "381": (6, 7, 8, 9, 10, 11, 12), "382": (8, 9), "383": (8, 9, 10, 11, 12), "385": (7, 8, 9),
    "386": (5, 6, 7, 8), "387": (8, 9), "389": (8,),
    "40": (6, 9), "41": (9, 12), "43": (4, 5, 6, 7, 8, 9, 10, 11, 12, 13), "44": (7, 9, 10),
    "45": (8,), "46": (6, 7, 8, 9, 10, 12), "47": (5, 8), "48": (6, 7, 8, 9, 10),
    "49": (4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), "420": (9, 10, 11, 12), "421": (6, 7, 9),
    "423": (7, 9),
    "51": (8, 9), "52": (10,), "53": (6, 7, 8, 10), "54": (10, 11), "55": (8, 9, 10, 11),
    "56": (9, 10, 11), "57": (8, 10, 11), "58": (10,), "500": (5,), "501": (7, 11), "502": (8, 11),
    "503": (7, 8, 11), "504": (8, 11), "505": (8,), "506": (8, 10), "507": (7, 8, 10, 11),
    "508": (6, 9), "509": (8,), "590": (9,), "591": (8, 9), "592": (7,), "593": (8, 9, 10, 11),
    "594": (9,), "595": (6, 7, 8, 9, 10, 11), "596": (9,), "597": (6, 7),
    "598": (4, 5, 6, 7, 8, 9, 10, 11, 12, 13), "599": (7, 8),
    "60": (8, 9, 10), "61": (5, 6, 7, 8, 9, 10, 12),
    "62": (7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17), "63": (6, 8, 9, 10, 11, 12, 13),
    "64": (5, 6, 7, 8, 9, 10), "65": (8, 10, 11), "66": (8, 9, 10, 13), "670": (7, 8), "672": (6,),
    "673": (7,), "674": (7,), "675": (7, 8), "676": (5, 7), "677": (5, 7), "678": (5, 7),
    "679": (7, 11), "680": (7,), "681": (6, 9), "682": (5,), "683": (4, 7), "685": (5, 6, 7, 10),
    "686": (5, 8), "687": (6,), "688": (5, 6, 7), "689": (6, 8, 9), "690": (4, 5, 6, 7),
    "691": (7,), "692": (7,),
    "7": (10, 14),
    "81": (8, 9, 10, 11, 12, 13, 14, 15, 16, 17), "82": (5, 6, 8, 9, 10, 11, 12, 13, 14),
    "84": (7, 8, 9, 10), "86": (7, 8, 9, 10, 11, 12), "800": (8,), "808": (8,), "850": (8, 10),
    "852": (5, 6, 7, 8, 9, 11), "853": (7, 8), "855": (8, 9, 10), "856": (8, 9, 10), "870": (9, 12),
    "878": (12,), "880": (6, 7, 8, 9, 10), "881": (9, 10), "882": (7, 8, 9, 10, 11, 12),
    "883": (8, 9, 10, 11, 12), "886": (7, 8, 9, 10, 11), "888": (11,),
    "90": (7, 10, 12, 13), "91": (8, 9, 10, 11, 12, 13), "92": (8, 9, 10, 11, 12), "93": (9,),
    "94": (9,), "95": (6, 7, 8, 9, 10), "98": (4, 5, 6, 7, 10), "960": (7, 10), "961": (7, 8),
    "962": (8, 9), "963": (8, 9), "964": (8, 9, 10), "965": (7, 8), "966": (9, 10),
    "967": (7, 8, 9), "968": (7, 8, 9), "970": (8, 9, 10), "971": (5, 6, 7, 8, 9, 10, 11, 12),
    "972": (7, 8, 9, 10, 11, 12), "973": (8,), "974": (7, 8, 9, 11), "975": (7, 8),
    "976": (8, 9, 10), "977": (8, 10, 11), "979": (9,), "992": (9,), "993": (8,), "994": (9,),
    "995": (9,), "996": (9, 10), "998": (9,),
}
# fmt: on


def _by_first_digits() -> dict[str, tuple[int, tuple[int, ...]]]:
    # Country codes are prefix-free and one to three digits long, so a number's first two or
    # three digits name at most one: every such start, mapped to its code's entry.
    table = {}
    for code, lengths in NATIONAL_LENGTHS.items():
        entry = (1 + len(code), lengths)
        for size in (2, 3):
            if len(code) <= size:
                for rest in itertools.product(string.digits, repeat=size - len(code)):
                    table[code + "".join(rest)] = entry
    return table


#: ``NATIONAL_LENGTHS`` by the first two or three digits after the "+" (``text[1:4]``), with
#: the index where the national number starts in the text: one look-up per check.
BY_FIRST_DIGITS: Final[Mapping[str, tuple[int, tuple[int, ...]]]] = _by_first_digits()
