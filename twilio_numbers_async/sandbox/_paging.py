"""What Twilio's list endpoints share: query parameters read with Twilio's 400s, and the page
body with its links (``PageSize``, ``Page``, ``PageToken``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote, urlencode

from ._errors import ApiError

__all__ = [
    "PAGE_SIZE_DEFAULT",
    "PAGE_SIZE_MAX",
    "boolean",
    "integer",
    "page_body",
]

PAGE_SIZE_DEFAULT: Final = 50
PAGE_SIZE_MAX: Final = 1000
_BOOLEANS: Final = {"true": True, "false": False}


def integer(query: Mapping[str, str], key: str, default: int, low: int, high: int | None) -> int:
    """The integer ``query[key]`` (``default`` when absent), from ``low`` to ``high``;
    :class:`ApiError` 400 / 20001 naming the key otherwise."""
    text = query.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        limit = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ApiError(400, 20001, f"Invalid parameter {key}: must be an integer {limit}")
    return value


def boolean(query: Mapping[str, str], key: str) -> bool | None:
    """``query[key]`` as ``true``/``false`` (``None`` when absent); 400 / 20001 otherwise."""
    text = query.get(key)
    if text is None:
        return None
    value = _BOOLEANS.get(text)
    if value is None:
        raise ApiError(400, 20001, f"Invalid parameter {key}: must be true or false")
    return value


def page_body(
    key: str,
    chunk: Sequence[Any],
    *,
    path: str,
    filters: Mapping[str, str],
    page: int,
    page_size: int,
    token: str | None,
    next_token: str | None,
    previous_token: str | None,
) -> dict[str, Any]:
    """One page of a list: ``chunk`` under ``key``, and the links Twilio gives with it.

    Links are paths with their query (``filters``, then ``PageSize``, ``Page`` and a
    ``PageToken``), relative to the host as Twilio sends them. ``next_token`` is ``None`` on
    the last page, ``previous_token`` on the first.
    """

    def uri(number: int, page_token: str | None) -> str:
        params = {**filters, "PageSize": str(page_size), "Page": str(number)}
        if page_token is not None:
            params["PageToken"] = page_token
        return f"{path}?{urlencode(params, quote_via=quote)}"

    return {
        key: list(chunk),
        "page": page,
        "page_size": page_size,
        "start": page * page_size,
        "end": page * page_size + max(len(chunk) - 1, 0),
        "uri": uri(page, token),
        "first_page_uri": uri(0, None),
        "next_page_uri": uri(page + 1, next_token) if next_token is not None else None,
        "previous_page_uri": (
            uri(max(page - 1, 0), previous_token) if previous_token is not None else None
        ),
    }
