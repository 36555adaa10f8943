"""The requests that are safe to repeat: look-ups, searches, fetches, and the release.

Each runs in the retry loop and spends the budget it is given: a look-up that reconciles a
purchase spends the purchase's own. A GET can be sent again whatever happened to it; so can the
DELETE that releases a number, whose 404 after an attempt of unknown outcome means that attempt
released it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode, urljoin

import attrs

from ._checks import check_area_code, check_contains, check_country, redact_url
from ._retrying import Budget, Retrier, Retryable, raise_last, retry_unless_rejected
from ._serde import parse_available_numbers, parse_number, parse_number_page
from .errors import RequestValidationError, ResponseParseError, TwilioApiError, TwilioNumbersError
from .retry import FailureKind, classify

if TYPE_CHECKING:
    from ._gateway import Gateway
    from ._settings import Settings
    from .models import AvailablePhoneNumber, IncomingPhoneNumber, NumberKind

__all__ = ["Reads", "Search"]

_PAGE_SIZE: Final = 50
#: The most numbers one search returns (the spec's PageSize maximum).
_MOST_FOUND: Final = 1000
_KIND_PATHS: Final = {"local": "Local.json", "mobile": "Mobile.json", "toll_free": "TollFree.json"}


def _optional(check: Callable[[str, object], object]) -> Any:
    """A field that is ``None`` (not sent) or passes ``check(name, value)``."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            check(attribute.name, value)

    return attrs.field(default=None, validator=validate)


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise RequestValidationError(name, f"must be True or False, not {value!r}")


def _check_limit(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MOST_FOUND:
        raise RequestValidationError(
            name, f"must be a whole number from 1 to {_MOST_FOUND} (Twilio's most), not {value!r}"
        )


def _check_kind(name: str, value: object) -> None:
    if value not in _KIND_PATHS:
        raise RequestValidationError(
            name, f"{value!r} is not one of {', '.join(map(repr, _KIND_PATHS))}"
        )


@attrs.frozen(kw_only=True)
class Search:
    """One ``AvailablePhoneNumbers`` search, checked when it is built: equal searches are equal
    keys (the candidate pools of area-code purchases are kept by search)."""

    country: str = attrs.field(
        default="US", validator=lambda _, field, value: check_country(field.name, value)
    )
    kind: NumberKind = attrs.field(
        default="local", validator=lambda _, field, value: _check_kind(field.name, value)
    )
    area_code: str | None = _optional(check_area_code)
    contains: str | None = _optional(check_contains)
    sms_enabled: bool | None = _optional(_check_flag)
    mms_enabled: bool | None = _optional(_check_flag)
    voice_enabled: bool | None = _optional(_check_flag)
    fax_enabled: bool | None = _optional(_check_flag)
    limit: int | None = _optional(_check_limit)

    def query(self) -> str:
        """The query string, Twilio's names for the filters that are set."""
        flags = {
            "AreaCode": self.area_code,
            "Contains": self.contains,
            "SmsEnabled": self.sms_enabled,
            "MmsEnabled": self.mms_enabled,
            "VoiceEnabled": self.voice_enabled,
            "FaxEnabled": self.fax_enabled,
            "PageSize": self.limit or _PAGE_SIZE,
        }
        return urlencode(
            {
                key: str(value).lower() if isinstance(value, bool) else value
                for key, value in flags.items()
                if value is not None
            }
        )

    def endpoint(self) -> str:
        """The path under the account: ``AvailablePhoneNumbers/US/Local.json``."""
        return f"AvailablePhoneNumbers/{self.country}/{_KIND_PATHS[self.kind]}"


class Reads:
    """The requests of one client that are safe to repeat."""

    def __init__(self, gateway: Gateway, retrier: Retrier, settings: Settings) -> None:
        self._gateway = gateway
        self._retrier = retrier
        self._settings = settings

    async def find(
        self, phone_number: str, account_sid: str, budget: Budget
    ) -> IncomingPhoneNumber | None:
        """The number if ``account_sid`` owns it, else ``None``; ``phone_number`` is checked.

        Reads the list endpoint filtered by ``PhoneNumber``, page by page. That filter also
        matches numbers that merely contain the digits, so only an exact match is returned.
        A page link is followed only on the client's own host and never twice, and every page
        spends from ``budget``: a server that pages forever ends the look-up with
        :class:`ResponseParseError`.
        """
        url = (
            f"{self._settings.url(account_sid, 'IncomingPhoneNumbers.json')}"
            f"?PhoneNumber={quote(phone_number, safe='')}&PageSize={_PAGE_SIZE}"
        )
        read = {url}
        while True:
            numbers, next_page, body = await self._retrier.run(
                "find",
                functools.partial(self._page, url, budget),
                decide=retry_unless_rejected,
                give_up=raise_last,
                budget=budget,
            )
            for number in numbers:
                if number.phone_number == phone_number:
                    return number
            if next_page is None:
                return None
            url = self._follow(next_page, body)
            if url in read:
                raise _paging_error(f"next_page_uri {next_page!r} is a page already read", body)
            if budget.remaining() <= 0:
                raise _paging_error(
                    f"Twilio kept paging past the retry policy's max_elapsed "
                    f"({budget.policy.max_elapsed:g} s, {len(read)} pages read)",
                    body,
                )
            read.add(url)

    async def search(
        self, search: Search, account_sid: str, budget: Budget
    ) -> list[AvailablePhoneNumber]:
        """The numbers for sale that ``search`` finds: one page, ``search.limit`` at most."""
        url = f"{self._settings.url(account_sid, search.endpoint())}?{search.query()}"

        async def attempt() -> list[AvailablePhoneNumber]:
            response = await self._gateway.send("GET", url, budget=budget)
            return parse_available_numbers(response.status, response.body)

        return await self._retrier.run(
            "search", attempt, decide=retry_unless_rejected, give_up=raise_last, budget=budget
        )

    async def fetch(self, sid: str, account_sid: str, budget: Budget) -> IncomingPhoneNumber:
        """The number whose SID is ``sid``; a 404 (code 20404) is the TwilioApiError it is."""
        url = self._settings.url(account_sid, f"IncomingPhoneNumbers/{sid}.json")

        async def attempt() -> IncomingPhoneNumber:
            response = await self._gateway.send("GET", url, budget=budget)
            return parse_number(response.status, response.body)

        return await self._retrier.run(
            "fetch", attempt, decide=retry_unless_rejected, give_up=raise_last, budget=budget
        )

    async def release(self, sid: str, account_sid: str, budget: Budget) -> bool:
        """Release the number ``sid``: ``True`` when this call released it, ``False`` when it
        was already gone (404)."""
        url = self._settings.url(account_sid, f"IncomingPhoneNumbers/{sid}.json")
        doubted = False

        def decide(error: TwilioNumbersError) -> Retryable:
            nonlocal doubted
            kind = classify(error)
            if kind is FailureKind.REJECTED:
                raise error
            doubted = doubted or kind is FailureKind.UNKNOWN
            return Retryable(error, kind)

        async def attempt() -> bool:
            try:
                await self._gateway.send("DELETE", url, budget=budget)
            except TwilioApiError as error:
                if error.status != 404:
                    raise
                # Gone: by an earlier attempt of this call whose answer was lost, if one was.
                return doubted
            return True

        return await self._retrier.run(
            "release", attempt, decide=decide, give_up=raise_last, budget=budget
        )

    async def _page(
        self, url: str, budget: Budget
    ) -> tuple[list[IncomingPhoneNumber], str | None, bytes]:
        response = await self._gateway.send("GET", url, budget=budget)
        return (*parse_number_page(response.status, response.body), response.body)

    def _follow(self, link: str, body: bytes) -> str:
        """The URL a page link names, if it is on the client's own host; never another's.

        Twilio's ``next_page_uri`` is a path from the API's root, so a base URL's own path is
        kept. An absolute link to another scheme, host or port would receive the credentials.
        """
        base = self._gateway.base_url
        url = f"{base}{link}" if link.startswith("/") else urljoin(base, link)
        if not self._gateway.owns(url):
            raise _paging_error(
                f"next_page_uri {redact_url(link)!r} points to another host than {base}: not "
                "followed, so the credentials stay on their host",
                body,
            )
        return url


def _paging_error(reason: str, body: bytes) -> ResponseParseError:
    return ResponseParseError(reason, status=200, body=body.decode("utf-8", "replace"), sid=None)
