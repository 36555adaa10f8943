"""``AvailablePhoneNumbers/{Country}/{Local,Mobile,TollFree}.json``: numbers nobody owns.

A search walks the catalog's blocks for its country and kind (:meth:`Catalog.walk`) in their
seeded order, skipping numbers someone owns and those the filters refuse, so that its first
result is what an area-code purchase would buy next. The filters that matter for buying are
read as the spec describes them: ``AreaCode`` (US and Canada only), ``Contains``,
``SmsEnabled``, ``MmsEnabled``, ``VoiceEnabled``, ``FaxEnabled``. ``Beta`` and the
``Exclude*AddressRequired`` flags are checked (no sandbox number is new, or needs an
address); the others (``NearNumber``, ``InRegion``...) are ignored, as Twilio ignores what a
country does not support. Pages: ``PageSize`` (1 to 1000, default 50), ``Page``, and
``PageToken`` (``PA<number>``: after that number, ``PB<number>``: before it), so that paging
stays right while numbers are bought.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Container, Iterator, Mapping
from typing import Any, Final

from ._catalog import Walk, capabilities, describe
from ._errors import ApiError, not_found, shown
from ._form import is_valid_area_code
from ._inventory import Inventory
from ._numbers import Kind
from ._paging import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, boolean, integer, page_body

__all__ = ["KINDS", "search_page"]

#: The last part of the path → the kind of number it searches.
KINDS: Final[Mapping[str, Kind]] = {"Local": "local", "Mobile": "mobile", "TollFree": "toll_free"}

_CAPABILITY_FILTERS: Final = {
    "VoiceEnabled": "voice",
    "SmsEnabled": "sms",
    "MmsEnabled": "mms",
    "FaxEnabled": "fax",
}
_CHECKED_FLAGS: Final = (
    "Beta",
    "ExcludeAllAddressRequired",
    "ExcludeLocalAddressRequired",
    "ExcludeForeignAddressRequired",
)
# Repeated in the page's links, in this order, when the query has them.
_FILTERS: Final = ("AreaCode", "Contains", *_CAPABILITY_FILTERS, *_CHECKED_FLAGS)
_AREA_CODE_COUNTRIES: Final = frozenset({"US", "CA"})

# The spec's Contains: 2 to 16 characters; digits and letters (a phone keypad's), "*" for one
# character and "%" for any run, at the start or end only and next to no other kind of
# meta-character; "+" first to match the number's start, "$" last to match its end.
_CONTAINS: Final = re.compile(
    r"(?P<start>\+)?(?P<head>[*%]*)(?P<core>[0-9A-Za-z]+)(?P<tail>[*%]*)(?P<end>\$)?"
)
_KEYPAD: Final = str.maketrans(
    "abcdefghijklmnopqrstuvwxyz", "22233344455566677778889999"
)  # fmt: skip

Match = Callable[[str], bool]
Position = tuple[int, int]  # the block's index in the walk, the number's place in the block


def search_page(
    inventory: Inventory,
    *,
    country: str,
    kind: Kind,
    query: Mapping[str, str],
    path: str,
    seed: int,
) -> dict[str, Any]:
    """One page of the numbers for sale that the query asks for, as the spec's list body.

    Raises :class:`ApiError`: 400 for a bad value, 404 for a country and kind with no numbers.
    """
    page_size = integer(query, "PageSize", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
    page = integer(query, "Page", 0, 0, None)
    for flag in _CHECKED_FLAGS:
        boolean(query, flag)
    area_code = _area_code(query, country)
    match = _matcher(query, seed)
    walk = inventory.catalog.walk(country, kind, area_code)
    if walk is None:
        raise not_found(path)
    sold = inventory.sold

    def found(after: Position) -> Iterator[str]:
        return (number for _, number in _forward(walk, sold, after) if match(number))

    token = query.get("PageToken")
    if token is None:
        ahead = found((0, -1))
        for _ in range(page * page_size):
            if next(ahead, None) is None:
                break
        chunk, more = _take(ahead, page_size)
        earlier = page > 0
    elif token[:2] == "PA":
        chunk, more = _take(found(_anchor(walk, token)), page_size)
        earlier = True
    elif token[:2] == "PB":
        behind = (
            number for _, number in _backward(walk, sold, _anchor(walk, token)) if match(number)
        )
        before, earlier = _take(behind, page_size)
        chunk, more = before[::-1], True
    else:
        raise _bad_token(token)
    return page_body(
        "available_phone_numbers",
        [describe(number, walk.country, seed) for number in chunk],
        path=path,
        filters={key: query[key] for key in _FILTERS if key in query},
        page=page,
        page_size=page_size,
        token=token,
        next_token="PA" + chunk[-1] if more and chunk else None,
        previous_token="PB" + chunk[0] if earlier and chunk else None,
    )


def _area_code(query: Mapping[str, str], country: str) -> str | None:
    area_code = query.get("AreaCode")
    if area_code is None or country not in _AREA_CODE_COUNTRIES:
        return None  # the spec: "applies to only phone numbers in the US and Canada"
    if not is_valid_area_code(area_code):
        raise ApiError(400, 21451, f"AreaCode {shown(area_code)} is not a valid area code")
    return area_code


def _matcher(query: Mapping[str, str], seed: int) -> Match:
    wanted = {
        capability: value
        for key, capability in _CAPABILITY_FILTERS.items()
        if (value := boolean(query, key)) is not None
    }
    contains = query.get("Contains")
    pattern = _contains(contains) if contains is not None else None

    def match(number: str) -> bool:
        if pattern is not None and pattern.search(number) is None:
            return False
        if wanted:
            can = capabilities(number, seed)
            return all(can[name] == value for name, value in wanted.items())
        return True

    return match


@functools.lru_cache(maxsize=256)
def _contains(value: str) -> re.Pattern[str]:
    # An unencoded "+" in a query string arrives as a space.
    text = "+" + value[1:] if value.startswith(" ") else value
    parts = _CONTAINS.fullmatch(text)
    if (
        parts is None
        or not 2 <= len(text) <= 16
        or len(set(parts["head"])) > 1
        or len(set(parts["tail"])) > 1
        or (parts["start"] and parts["head"])
        or (parts["end"] and parts["tail"])
        or ((parts["head"] or parts["tail"]) and len(parts["core"]) < 2)
    ):
        raise ApiError(
            400,
            20001,
            f"Invalid parameter Contains: {shown(value)} is not 2 to 16 digits or letters, "
            "with * or % at its start or end, + first or $ last",
        )
    wildcard = {"*": "[0-9]", "%": "[0-9]*"}
    regex = "".join(
        [
            r"\A\+" if parts["start"] else "",
            "".join(wildcard[c] for c in parts["head"]),
            parts["core"].lower().translate(_KEYPAD),
            "".join(wildcard[c] for c in parts["tail"]),
            r"\Z" if parts["end"] else "",
        ]
    )
    return re.compile(regex)


def _take(items: Iterator[Any], count: int) -> tuple[list[Any], bool]:
    """Up to ``count`` items, and whether there was more."""
    taken: list[Any] = []
    for item in items:
        if len(taken) == count:
            return taken, True
        taken.append(item)
    return taken, False


def _forward(walk: Walk, sold: Container[str], after: Position) -> Iterator[tuple[Position, str]]:
    first_block, place = after
    for index in range(first_block, len(walk.blocks)):
        start = place + 1 if index == first_block else 0
        for found, number in walk.blocks[index].unsold(start, sold):
            yield (index, found), number


def _backward(walk: Walk, sold: Container[str], before: Position) -> Iterator[tuple[Position, str]]:
    last_block, place = before
    for index in range(last_block, -1, -1):
        block = walk.blocks[index]
        end = place if index == last_block else block.size
        for found, number in block.unsold_before(end, sold):
            yield (index, found), number


def _anchor(walk: Walk, token: str) -> Position:
    number = token[2:]
    if number.startswith(" "):  # an unencoded "+" arrives as a space
        number = "+" + number[1:]
    for index, block in enumerate(walk.blocks):
        place = block.index_of(number)
        if place is not None:
            return index, place
    raise _bad_token(token)


def _bad_token(token: str) -> ApiError:
    return ApiError(400, 20001, f"Invalid parameter PageToken: {shown(token)}")
