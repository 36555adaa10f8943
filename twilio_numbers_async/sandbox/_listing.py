"""The GET list of an account's numbers: filters, pages and page tokens, as Twilio does them.

Filters: ``PhoneNumber`` (partial: the digits given, ``*`` for any one digit, found anywhere in
the number), ``FriendlyName`` (exact), ``Origin``; ``Beta`` is checked but changes nothing, as
no sandbox number is new to the platform. Pages: ``PageSize`` (1 to 1000, default 50), ``Page``
and ``PageToken`` (``PA<sid>``: after that resource, ``PB<sid>``: before it, even released),
so that paging stays right while purchases and releases go on. A full number (the common case:
reconciling a purchase) is an O(1) look-up; other filters scan the one account.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Mapping
from typing import Any, Final

from ._errors import ApiError, shown
from ._inventory import Holdings
from ._paging import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, boolean, integer, page_body

__all__ = ["list_page"]

_FILTERS: Final = ("FriendlyName", "Beta", "PhoneNumber", "Origin")
_PATTERN: Final = re.compile(r"\+?[0-9*]+")
_FULL_NUMBER: Final = re.compile(r"\+[0-9]+")
_FORMATTING: Final = str.maketrans("", "", " ()-.")

Resource = dict[str, Any]


def list_page(holdings: Holdings, query: Mapping[str, str], path: str) -> dict[str, Any]:
    """One page of ``holdings`` as the list endpoint's body; raises :class:`ApiError` (400)."""
    page_size = integer(query, "PageSize", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX)
    page = integer(query, "Page", 0, 0, None)
    boolean(query, "Beta")  # checked; no sandbox number is new to the platform
    items, positions = _matching(holdings, query)
    token = query.get("PageToken")
    start, chunk = _slice(holdings, items, positions, token=token, page=page, page_size=page_size)
    return page_body(
        "incoming_phone_numbers",
        chunk,
        path=path,
        filters={key: query[key] for key in _FILTERS if key in query},
        page=page,
        page_size=page_size,
        token=token,
        next_token="PA" + chunk[-1]["sid"] if start + len(chunk) < len(items) else None,
        previous_token=(f"PB{chunk[0]['sid']}" if chunk else None) if start else None,
    )


def _matching(
    holdings: Holdings, query: Mapping[str, str]
) -> tuple[list[Resource], list[int] | None]:
    """The resources the filters keep, and their positions in the account (``None``: each
    one's index)."""
    pattern = _phone_pattern(query.get("PhoneNumber"))
    name = query.get("FriendlyName")
    origin = query.get("Origin")
    if pattern is None and name is None and origin is None:
        return holdings.resources, holdings.positions()
    if pattern is not None and _FULL_NUMBER.fullmatch(pattern) and len(pattern) >= holdings.longest:
        # A number holding "+digits" starts with them: none held is longer, so exact is all.
        candidates = holdings.with_number(pattern)
        regex = None
    else:
        candidates = holdings.resources
        regex = _compile(pattern) if pattern is not None else None
    kept = [
        resource
        for resource in candidates
        if (regex is None or regex.search(resource["phone_number"]))
        and (name is None or resource["friendly_name"] == name)
        and (origin is None or resource["origin"] == origin)
    ]
    positions = [_position(holdings, resource) for resource in kept]
    return kept, positions


def _position(holdings: Holdings, resource: Resource) -> int:
    position = holdings.position(resource["sid"])
    if position is None:  # every held resource has one
        raise RuntimeError(f"{resource['sid']} is not indexed")
    return position


def _phone_pattern(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    # An unencoded "+" in a query string arrives as a space.
    if value.startswith(" "):
        value = "+" + value.lstrip()
    pattern = value.translate(_FORMATTING)
    if not _PATTERN.fullmatch(pattern):
        raise ApiError(
            400, 20001, f"Invalid parameter PhoneNumber: {shown(value)} is not a (partial) number"
        )
    return pattern


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(r"\+" if c == "+" else "[0-9]" if c == "*" else c for c in pattern))


def _slice(
    holdings: Holdings,
    items: list[Resource],
    positions: list[int] | None,
    *,
    token: str | None,
    page: int,
    page_size: int,
) -> tuple[int, list[Resource]]:
    """Where the page starts in ``items``, and its resources."""
    if token is None:
        start = page * page_size
        return start, items[start : start + page_size]
    anchor = holdings.position(token[2:]) if token[:2] in ("PA", "PB") else None
    if anchor is None:
        raise ApiError(400, 20001, f"Invalid parameter PageToken: {shown(token)}")
    if token.startswith("PA"):
        start = anchor + 1 if positions is None else bisect.bisect_right(positions, anchor)
        return start, items[start : start + page_size]
    end = anchor if positions is None else bisect.bisect_left(positions, anchor)
    start = max(end - page_size, 0)
    return start, items[start:end]
