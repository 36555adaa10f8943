"""What the sandbox has for sale: blocks of numbers, in a seeded order, and what each one is.

A :class:`Block` is one run of numbers with a common prefix (an area code's ``+1 415 555
xxxx``, London's ``+44 20 7946 xxxx``, UK mobiles' ``+44 7700 9xxxxx``), at most
``area_code_stock`` of them, handed out in a seeded order. An area-code purchase takes the
first number of its block nobody owns; a search lists them in the same order, so that what a
search shows is what an area-code purchase would get. :meth:`Catalog.walk` says which blocks
a search of one country and kind goes through.

Each number's capabilities are drawn from the seed and the number alone, so a search and the
purchase that follows it agree, whatever happened in between.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Container, Iterator
from typing import Any, Final

import attrs

from twilio_numbers_async._nanp import country_of_area_code

from ._numbers import (
    MAGIC_AREA_CODE,
    MAGIC_NUMBER,
    NO_STOCK_AREA_CODE,
    TOLL_FREE_AREA_CODES,
    Kind,
    friendly_name,
    number_kind,
)

__all__ = [
    "Block",
    "Catalog",
    "Walk",
    "capabilities",
    "describe",
]

# A search with no AreaCode walks these, in order: a few busy area codes of each country.
_DEFAULT_AREA_CODES: Final = {
    "US": ("415", "212", "312", "512", "617", "206", "303", "404"),
    "CA": ("604", "416", "514", "403", "613"),
}
# Numbers are +1 {area} {first + k}, seven digits: 555-0000 upward, as the sandbox always had.
_NANP_FIRST: Final = 5_550_000
# The UK's blocks start in Ofcom's ranges for drama (020 7946 0xxx, 07700 900xxx).
_LONDON: Final = ("+4420", 79_460_000, 8)
_UK_MOBILE: Final = ("+447700", 900_000, 6)

# Where a number is, for the search results: a few blocks only, any other's are null. Only the
# locality applies outside the US and Canada (the spec: the others are "available for only
# phone numbers from the US and Canada").
_Place = tuple[str | None, str, str | None, float | None, float | None, str | None]
_PLACES: Final[dict[str, _Place]] = {
    # prefix: region, locality, LATA, latitude, longitude, postal code
    "+1415": ("CA", "San Francisco", "722", 37.77, -122.42, "94103"),
    "+1212": ("NY", "New York", "132", 40.71, -74.01, "10007"),
    "+1312": ("IL", "Chicago", "358", 41.88, -87.63, "60602"),
    "+1512": ("TX", "Austin", "558", 30.27, -97.74, "78701"),
    "+1617": ("MA", "Boston", "128", 42.36, -71.06, "02108"),
    "+1206": ("WA", "Seattle", "674", 47.61, -122.33, "98101"),
    "+1303": ("CO", "Denver", "656", 39.74, -104.99, "80202"),
    "+1404": ("GA", "Atlanta", "438", 33.75, -84.39, "30303"),
    "+1604": ("BC", "Vancouver", None, 49.28, -123.12, "V6B"),
    "+1416": ("ON", "Toronto", None, 43.65, -79.38, "M5H"),
    "+1514": ("QC", "Montreal", None, 45.50, -73.57, "H2Y"),
    "+1403": ("AB", "Calgary", None, 51.05, -114.07, "T2P"),
    "+1613": ("ON", "Ottawa", None, 45.42, -75.70, "K1P"),
    "+4420": (None, "London", None, None, None, None),
}

# How likely each capability is (voice, sms, mms, fax), by kind of number: varied, so that a
# search's capability filters have something to filter.
_ODDS: Final[dict[Kind, tuple[float, float, float, float]]] = {
    "local": (0.95, 0.85, 0.7, 0.25),
    "toll_free": (0.95, 0.8, 0.3, 0.2),
    "mobile": (0.8, 1.0, 0.3, 0.0),
}
_CAPABILITIES: Final = ("voice", "sms", "mms", "fax")
_MAGIC_CAPABILITIES: Final = {"voice": True, "sms": True, "mms": True, "fax": False}


class Block:
    """The numbers ``prefix + (first + k)`` for ``k < size``, ``width`` digits each, in the
    seeded order ``i → k = (offset + step·i) mod size`` (``step`` coprime to ``size``): every
    number once, O(1) each, and the list never built.

    ``cursor`` is where the first number that may be unsold is: numbers are found by scanning
    from it, and a number released moves it back.
    """

    __slots__ = ("_cursor", "_first", "_inverse", "_offset", "_step", "_width", "prefix", "size")

    def __init__(self, prefix: str, first: int, width: int, *, size: int, rng_key: str) -> None:
        rng = random.Random(rng_key)  # noqa: S311 - a reproducible order, not a secret
        self.prefix = prefix
        self.size = size
        self._first = first
        self._width = width
        self._cursor = 0
        self._offset = rng.randrange(size) if size else 0
        self._step = 1
        if size > 2:
            self._step = rng.randrange(1, size)
            while math.gcd(self._step, size) != 1:
                self._step = rng.randrange(1, size)
        self._inverse = pow(self._step, -1, size) if size > 1 else 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.prefix!r}, size={self.size})"

    def number_at(self, index: int) -> str:
        """The number in place ``index`` of the order."""
        k = (self._offset + self._step * index) % self.size
        return f"{self.prefix}{self._first + k:0{self._width}d}"

    def index_of(self, number: str) -> int | None:
        """The place of ``number`` in the order, ``None`` if it is not in this block."""
        digits = number[len(self.prefix) :]
        if not number.startswith(self.prefix) or len(digits) != self._width:
            return None
        if not digits.isascii() or not digits.isdigit():
            return None
        k = int(digits) - self._first
        if not 0 <= k < self.size:
            return None
        return ((k - self._offset) * self._inverse) % self.size

    def unsold(self, start: int, sold: Container[str]) -> Iterator[tuple[int, str]]:
        """Each number nobody owns, from place ``start`` on, with its place.

        Call it and use it without an ``await`` in between: what is sold may change then.
        """
        index = max(start, self._cursor)
        while index < self.size:
            number = self.number_at(index)
            if number not in sold:
                yield index, number
            elif index == self._cursor:
                self._cursor += 1  # sold numbers at the front are never looked at again
            index += 1

    def unsold_before(self, end: int, sold: Container[str]) -> Iterator[tuple[int, str]]:
        """Each number nobody owns before place ``end``, backwards, with its place."""
        for index in range(min(end, self.size) - 1, self._cursor - 1, -1):
            number = self.number_at(index)
            if number not in sold:
                yield index, number

    def returned(self, number: str) -> None:
        """``number`` is for sale again (it was released): scans must look at it again."""
        index = self.index_of(number)
        if index is not None:
            self._cursor = min(self._cursor, index)


@attrs.frozen
class Walk:
    """The blocks a search goes through, in order, and the country it shows its numbers in."""

    country: str
    blocks: tuple[Block, ...]


class Catalog:
    """Every block, made on first use, with ``stock`` numbers each (fewer where the prefix
    leaves less room)."""

    def __init__(self, *, stock: int, seed: int) -> None:
        self._stock = stock
        self._seed = seed
        self._blocks: dict[str, Block] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(blocks={len(self._blocks)}, stock={self._stock})"

    def area_block(self, area_code: str) -> Block:
        """The block an area-code purchase sells from: ``+1 {area} 555 0000`` onward."""
        if area_code == MAGIC_AREA_CODE:
            return self._block("+1500", 5_550_006, 7, size=1, name=area_code)
        # The seed's key is the area code alone, as it always was: a seed keeps its numbers.
        return self._block(f"+1{area_code}", _NANP_FIRST, 7, name=area_code)

    def walk(self, country: str, kind: Kind, area_code: str | None) -> Walk | None:
        """The blocks a search of ``country`` and ``kind`` goes through; ``None`` when the
        sandbox has no such numbers at all (Twilio: 404). ``area_code`` applies to the US and
        Canada only, as the spec says; elsewhere it is ignored."""
        if country in _DEFAULT_AREA_CODES:
            codes = self._nanp_codes(country, kind, area_code)
            if codes is None:
                return None
            return Walk(country, tuple(self.area_block(code) for code in codes))
        if country == "GB" and kind in ("local", "mobile"):
            prefix, first, width = _LONDON if kind == "local" else _UK_MOBILE
            return Walk(country, (self._block(prefix, first, width, name=prefix),))
        return None

    def returned(self, number: str) -> None:
        """``number`` was released: the block it came from may sell it again."""
        for length in {len(prefix) for prefix in self._blocks}:
            block = self._blocks.get(number[:length])
            if block is not None:
                block.returned(number)

    def _nanp_codes(
        self, country: str, kind: Kind, area_code: str | None
    ) -> tuple[str, ...] | None:
        if kind == "mobile":
            return None  # Twilio sells no mobile numbers in the US or Canada
        if kind == "toll_free":
            if area_code is None:
                return TOLL_FREE_AREA_CODES
            return (area_code,) if area_code in TOLL_FREE_AREA_CODES else ()
        if area_code is None:
            return _DEFAULT_AREA_CODES[country]
        if area_code == MAGIC_AREA_CODE and country == "US":
            return (area_code,)
        if (
            area_code == NO_STOCK_AREA_CODE
            or area_code in TOLL_FREE_AREA_CODES
            or country_of_area_code(area_code) != country
        ):
            return ()
        return (area_code,)

    def _block(
        self, prefix: str, first: int, width: int, *, name: str, size: int | None = None
    ) -> Block:
        block = self._blocks.get(prefix)
        if block is None:
            room = 10**width - first
            block = self._blocks[prefix] = Block(
                prefix,
                first,
                width,
                size=min(self._stock, room) if size is None else size,
                rng_key=f"{self._seed}:stock:{name}",
            )
        return block


def capabilities(number: str, seed: int) -> dict[str, bool]:
    """What ``number`` can do: drawn from ``seed`` and the number alone, so that the search
    that shows it and the purchase that buys it agree. The magic number can do everything
    but fax, as on Twilio's test account."""
    if number == MAGIC_NUMBER:
        return dict(_MAGIC_CAPABILITIES)
    draws = hashlib.blake2b(f"{seed}:capabilities:{number}".encode(), digest_size=4).digest()
    odds = _ODDS[number_kind(number)]
    return {
        name: draw / 256 < chance
        for name, draw, chance in zip(_CAPABILITIES, draws, odds, strict=True)
    }


def describe(number: str, country: str, seed: int) -> dict[str, Any]:
    """``number`` as a search lists it: every property of the spec's AvailablePhoneNumber, in
    its order. Latitude and longitude are numbers, as the spec types them (Twilio's own
    example shows strings); ``friendly_name`` is formatted as Twilio's example shows it, though
    the spec gives it the ``phone-number`` format."""
    place = _PLACES.get(number[:5])
    region, locality, lata, latitude, longitude, postal = place or (None,) * 6
    return {
        "friendly_name": friendly_name(number),
        "phone_number": number,
        "lata": lata,
        "locality": locality,
        # A rate center is a US and Canadian notion: named after the locality here.
        "rate_center": locality.upper().replace(" ", "") if region and locality else None,
        "latitude": latitude,
        "longitude": longitude,
        "region": region,
        "postal_code": postal,
        "iso_country": country,
        "address_requirements": "none",
        "beta": False,
        "capabilities": capabilities(number, seed),
    }
