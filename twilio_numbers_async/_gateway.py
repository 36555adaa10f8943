"""Every request's way out: the in-flight slot, the limiter token, the credentials, the answer.

:meth:`Gateway.send` is the one place an HTTP attempt passes through. It takes a slot of the
concurrency cap, then a limiter token (waiting no longer than the operation's budget allows),
calls ``before_send`` (the bulk journal writes its intent there: after every wait, just before
the request leaves), sends through the :class:`~twilio_numbers_async._transport.Transport`,
and turns an error status into a :class:`~twilio_numbers_async.errors.TwilioApiError`.
The credentials go only to URLs under the client's own base URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._serde import parse_error_body, parse_retry_after
from ._transport import Request, Response, Transport
from .errors import (
    AuthenticationError,
    ClientClosedError,
    RateLimitedError,
    TwilioApiError,
)

if TYPE_CHECKING:
    from ._adaptive import AdaptiveConcurrency, Slot
    from ._retrying import Budget
    from .ratelimit import Limiter

__all__ = ["Gateway", "api_error"]


class Gateway:
    """Sends requests for one client: see the module's docstring."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, Mapping[str, str]],
        transport: Transport,
        concurrency: AdaptiveConcurrency,
        shared_slots: AbstractAsyncContextManager[object] | None,
        limiter: Limiter | None,
        timeout: float,
    ) -> None:
        self.base_url = base_url
        # A prefix, slash included: "https://api.twilio.com.evil.example/" does not start with
        # "https://api.twilio.com/", nor does "https://api.twilio.com@evil.example/".
        self._own = base_url + "/"
        self._headers = headers
        self.transport = transport
        self.concurrency = concurrency
        self._shared = shared_slots
        self.limiter = limiter
        self._timeout = timeout
        self.closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, closed={self.closed!r})"

    def owns(self, url: str) -> bool:
        """Whether ``url`` is on the client's own host, where its credentials may go."""
        return url.startswith(self._own)

    def pause(self, seconds: float) -> None:
        """Hold every request of the client (and of whoever shares its limiter) for
        ``seconds``: a 429's ``Retry-After`` is about the account, not one request."""
        if self.limiter is not None:
            self.limiter.pause(seconds)
        else:
            self.concurrency.pause(seconds)

    async def send(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        *,
        budget: Budget,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> Response:
        """One attempt; the response if its status is 2xx, else the error it stands for.

        The attempt takes a slot of the adaptive concurrency limit, then a limiter token, then a
        place in the shared cap (if any: last, so that a place other processes need is not
        held while this one waits), each waited for no longer than ``budget`` allows; its
        answer tells the adaptive limit how the account took it.

        :raises ClientClosedError: the client was closed before the request left.
        :raises RateLimitedError: a slot or a token could not be had within ``budget``: the
            request was not sent (``from_limiter``).
        :raises TwilioApiError: Twilio answered with an error status.
        :raises TransportError: no answer came (see its ``sent``).
        """
        if not self.owns(url):
            # Only this library builds URLs, and it checks every link it follows: a bug.
            raise ValueError(f"refusing to send credentials off {self.base_url}: {url!r}")
        self._check_open()
        # Entered by hand, not with `async with`: only a wait that outlasts the budget, on
        # entering, is the "not sent" RateLimitedError.
        slot = self.concurrency.slot(max_wait=_left(budget))
        try:
            await slot.__aenter__()
        except TimeoutError:
            raise _limiter_timeout(method, url, budget) from None
        try:
            if self.limiter is not None:
                try:
                    await self.limiter.acquire(max_wait=_left(budget))
                except TimeoutError:
                    raise _limiter_timeout(method, url, budget) from None
            shared = self._shared
            if shared is not None:
                try:
                    async with asyncio.timeout(_left(budget)):
                        await shared.__aenter__()
                except TimeoutError:
                    raise _limiter_timeout(method, url, budget) from None
            try:
                # Closed while this waited for its turn, or while before_send wrote: nothing
                # has been sent.
                self._check_open()
                if before_send is not None:
                    await before_send()
                    self._check_open()
                response = await self.transport.send(
                    Request(method, url, self._headers[method], body, self._timeout)
                )
            finally:
                if shared is not None:
                    await shared.__aexit__(None, None, None)
            _report(slot, response)
        finally:
            await slot.__aexit__(None, None, None)
        if 200 <= response.status < 300:
            return response
        raise api_error(method, url, response)

    def _check_open(self) -> None:
        if self.closed:
            raise ClientClosedError(
                "this TwilioNumbersClient is closed, so the request was not sent; create a new "
                "client (or keep one open for the application's lifetime)"
            )


def _left(budget: Budget) -> float:
    return max(0.0, budget.remaining())


def _report(slot: Slot, response: Response) -> None:
    """Tell the adaptive limit how the account took the request."""
    status = response.status
    if status == 429:
        if response.headers.get("Retry-After") is None:
            slot.rejected()  # refused for concurrency: fewer in flight
        # With a Retry-After it is a rate limit: the wait says it all, the limit stays.
    elif status < 500:
        slot.admitted(
            concurrent_requests=_count(response.headers.get("Twilio-Concurrent-Requests"))
        )
    # A 5xx says nothing about the account's limit.


def _count(value: str | None) -> int | None:
    """A header's whole number, or ``None`` when it is absent or not one (a hint only)."""
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def api_error(method: str, url: str, response: Response) -> TwilioApiError:
    """The :class:`TwilioApiError` (or subclass) for a response with an error status."""
    body = parse_error_body(response.body)
    if body is not None:
        message = body.message or ""
        fields: dict[str, Any] = {
            "code": body.code,
            "more_info": body.more_info,
            "details": body.details,
        }
    else:
        # A proxy's HTML page, say: keep a short excerpt, not a whole document.
        text = response.body.decode("utf-8", "replace").strip()
        message = " ".join(text.split())[:200] or "empty response body"
        fields = {}
    common: dict[str, Any] = {
        "status": response.status,
        "message": message,
        "request_id": response.headers.get("Twilio-Request-Id"),
        "method": method,
        "url": url,
        **fields,
    }
    code = fields.get("code")
    if response.status == 429 or code == 20429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=datetime.now(UTC))
        return RateLimitedError(retry_after=retry_after, **common)
    if response.status == 401 or code == 20003:
        return AuthenticationError(**common)
    return TwilioApiError(**common)


def _limiter_timeout(method: str, url: str, budget: Budget) -> RateLimitedError:
    return RateLimitedError(
        from_limiter=True,
        status=429,
        message=(
            "not sent: the client's rate limiter would not admit this request within the "
            f"retry policy's budget (max_elapsed={budget.policy.max_elapsed:g} s); it is safe "
            "to send again later"
        ),
        method=method,
        url=url,
    )
