"""The requests that are safe to repeat: the look-ups that reconcile a purchase.

Each runs in the retry loop with :func:`~twilio_numbers_async._retrying.retry_unless_rejected`
(a read can be sent again whatever happened to it) and spends the budget it is given: a
look-up that reconciles a purchase spends the purchase's own.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urljoin

from ._retrying import Budget, Retrier, raise_last, retry_unless_rejected
from ._serde import parse_number_page
from ._sids import redact_url
from .errors import ResponseParseError

if TYPE_CHECKING:
    from ._gateway import Gateway
    from ._settings import Settings
    from .models import IncomingPhoneNumber

__all__ = ["Reads"]

_PAGE_SIZE: Final = 50


class Reads:
    """The look-ups of one client."""

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
