"""``TwilioNumbersClient``: the one object a program holds to buy numbers.

It owns the configuration (credentials, host, timeout, retry policy, limiter), builds the
pieces every request goes through (the transport, the gateway, the purchase engine, the
look-ups) and gives them its verbs and its lifecycle. It holds no retry logic of its own.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, Unpack

import aiohttp

from ._adaptive import DEFAULT_CEILING, DEFAULT_INITIAL, AdaptiveConcurrency, LimitChange
from ._candidates import CandidatePools
from ._checks import check_e164, check_sid
from ._gateway import Gateway
from ._purchase import AreaCodes, PurchaseEngine
from ._reads import Reads, Search
from ._retrying import Budget, Retrier, RetryHook
from ._settings import Settings, from_environment, resolve
from ._transport import AiohttpTransport, Request, Response, Transport
from .errors import ClientClosedError, RequestValidationError
from .models import (
    AvailablePhoneNumber,
    IncomingPhoneNumber,
    MobileNumberPurchase,
    MobileNumberPurchaseFields,
    NumberKind,
    NumberPurchase,
    NumberPurchaseFields,
    PurchaseRequest,
)
from .ratelimit import Limiter, TokenBucket
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .bulk import BulkProgress, PurchaseOutcome

# AreaCodes and the transport's types: what a caller's own annotations and transports need.
__all__ = ["AreaCodes", "Request", "Response", "Transport", "TwilioNumbersClient"]


class TwilioNumbersClient:
    """An asyncio client for buying Twilio phone numbers.

    Use it as an async context manager, or call :meth:`aclose` when done. One client holds one
    connection pool: create it once (at application start-up) and share it.

    With no credentials, ``TwilioNumbersClient()`` reads ``TWILIO_*`` variables, as
    :meth:`from_env` does. Authenticate with the account's auth token, or with an API key
    (``SK...``) and its secret; the account SID stays in every URL either way. ``base_url``
    overrides the host (plain ``http`` only to loopback, for the sandbox); otherwise ``edge``
    and ``region`` pick Twilio's ``https://api.{edge}.{region}.twilio.com`` (an edge alone
    implies region ``us1``).

    ``timeout`` bounds each attempt (seconds or a ``timedelta``); connecting may use at most
    half of it, so that a failure to connect is known not to have reached Twilio.

    Requests in flight follow an adaptive limit (:attr:`concurrency`) that finds the account's
    concurrency limit from Twilio's answers: it grows while answers come back fine and drops
    at a 429 without ``Retry-After`` (20429), so no rate needs guessing. ``max_concurrency`` is
    its ceiling (default 1,000), or an async context manager that holds a slot while entered
    (a shared one, such as the Redis limiter's, caps several processes together).
    ``on_limit_change`` is called with a :class:`~twilio_numbers_async.ratelimit.LimitChange`
    each time the limit moves. ``rate_limit`` adds a rate (a
    :class:`~twilio_numbers_async.ratelimit.Limiter` such as a :class:`TokenBucket`, a shared
    one, or requests per second; none by default): every attempt then takes a token too. A 429
    with ``Retry-After`` holds every request of the client that long (60 s at most).
    ``on_retry`` is called before each retry's wait. ``session`` is an ``aiohttp.ClientSession``
    to use (and not close) instead of the client's own; ``transport`` replaces aiohttp
    altogether (a test double, a proxy).

    ``area_codes`` says how an area code is bought: ``"search"`` (the default) searches
    ``AvailablePhoneNumbers`` and buys a candidate as a given number, which can be looked up
    when an answer is lost; ``"direct"`` POSTs the area code, whose lost answer leaves the
    purchase unknown.
    """

    def __init__(
        self,
        account_sid: str | None = None,
        auth_token: str | None = None,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        base_url: str | None = None,
        edge: str | None = None,
        region: str | None = None,
        timeout: float | timedelta = 30.0,
        retry: RetryPolicy | None = None,
        rate_limit: Limiter | float | None = None,
        max_concurrency: int | AbstractAsyncContextManager[object] | None = None,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        on_retry: RetryHook | None = None,
        on_limit_change: Callable[[LimitChange], None] | None = None,
        area_codes: AreaCodes = "search",
    ) -> None:
        given = {
            "account_sid": account_sid,
            "auth_token": auth_token,
            "api_key": api_key,
            "api_secret": api_secret,
            "base_url": base_url,
            "edge": edge,
            "region": region,
        }
        if account_sid is auth_token is api_key is api_secret is None:
            # No credentials at all: the environment's, as the official SDK's Client() does.
            passed = [name for name, value in given.items() if value is not None]
            given = {**given, **from_environment(given=passed)}
        self._settings: Settings = resolve(**given, timeout=timeout)
        limiter = TokenBucket(rate_limit) if isinstance(rate_limit, int | float) else rate_limit
        shared: AbstractAsyncContextManager[object] | None = None
        ceiling = DEFAULT_CEILING
        if isinstance(max_concurrency, AbstractAsyncContextManager):
            shared = max_concurrency
        elif max_concurrency is not None:
            ceiling = _check_ceiling(max_concurrency)
        concurrency = AdaptiveConcurrency(
            initial=min(DEFAULT_INITIAL, ceiling), ceiling=ceiling, on_change=on_limit_change
        )
        if transport is not None and session is not None:
            raise ValueError("pass a session or a transport, not both: a transport has its own")
        self._gateway = Gateway(
            base_url=self._settings.base_url,
            headers=self._settings.headers(),
            # As many connections as requests may be in flight: a smaller pool would set the
            # pace itself, and look to the adaptive limit like requests queueing.
            transport=transport or AiohttpTransport(session=session, pool_size=ceiling),
            concurrency=concurrency,
            shared_slots=shared,
            limiter=limiter,
            timeout=self._settings.timeout,
        )
        if area_codes not in ("search", "direct"):
            raise RequestValidationError(
                "area_codes", f"must be 'search' or 'direct', not {area_codes!r}"
            )
        self._retrier = Retrier(retry or RetryPolicy(), self._gateway.pause, on_retry)
        self._reads = Reads(self._gateway, self._retrier, self._settings)
        self._engine = PurchaseEngine(
            gateway=self._gateway,
            retrier=self._retrier,
            reads=self._reads,
            pools=CandidatePools(self._reads.search),
            settings=self._settings,
            area_codes=area_codes,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Self:
        """A client configured from ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN`` (or
        ``TWILIO_API_KEY`` and ``TWILIO_API_SECRET``), ``TWILIO_BASE_URL``, ``TWILIO_EDGE``
        and ``TWILIO_REGION``. ``kwargs`` are passed on and win over the environment.
        """
        return cls(**{**from_environment(environ, given=kwargs), **kwargs})

    # --- public API ------------------------------------------------------------------------

    @property
    def account_sid(self) -> str:
        """The account that purchases go to unless a call names a subaccount."""
        return self._settings.account_sid

    @property
    def base_url(self) -> str:
        """The scheme and host requests go to, such as ``https://api.twilio.com``."""
        return self._settings.base_url

    @property
    def limiter(self) -> Limiter | None:
        """The rate limiter every attempt passes through, if any."""
        return self._gateway.limiter

    @property
    def concurrency(self) -> AdaptiveConcurrency:
        """The adaptive limit on requests in flight: ``.limit`` is where it stands now."""
        return self._gateway.concurrency

    async def purchase(
        self, request: PurchaseRequest, *, account_sid: str | None = None
    ) -> IncomingPhoneNumber:
        """Buy the number ``request`` describes, on ``account_sid`` (default: the client's).

        A :class:`NumberPurchase` goes to ``IncomingPhoneNumbers.json``, a
        :class:`MobileNumberPurchase` to ``IncomingPhoneNumbers/Mobile.json``. Retries follow
        the client's :class:`RetryPolicy` and never buy twice (see ``retry``).
        """
        if not isinstance(request, NumberPurchase | MobileNumberPurchase):
            raise TypeError(
                f"purchase() takes a NumberPurchase or MobileNumberPurchase, "
                f"not {type(request).__name__}"
            )
        result = await self._engine.start(request, self._account(account_sid)).run()
        if result.error is not None:
            raise result.error
        assert result.number is not None  # noqa: S101 - a result holds one or the other
        return result.number

    async def create_incoming_phone_number(
        self, *, account_sid: str | None = None, **fields: Unpack[NumberPurchaseFields]
    ) -> IncomingPhoneNumber:
        """Buy ``phone_number``, or any number in ``area_code``: Twilio's
        CreateIncomingPhoneNumber. The fields are :class:`NumberPurchase`'s.
        """
        return await self.purchase(NumberPurchase(**fields), account_sid=account_sid)

    async def create_incoming_phone_number_mobile(
        self, *, account_sid: str | None = None, **fields: Unpack[MobileNumberPurchaseFields]
    ) -> IncomingPhoneNumber:
        """Buy the mobile ``phone_number``: Twilio's CreateIncomingPhoneNumberMobile.
        The fields are :class:`MobileNumberPurchase`'s.
        """
        return await self.purchase(MobileNumberPurchase(**fields), account_sid=account_sid)

    async def find_incoming_phone_number(
        self, phone_number: str, *, account_sid: str | None = None
    ) -> IncomingPhoneNumber | None:
        """The number if ``account_sid`` (default: the client's) owns it, else ``None``.

        Reads Twilio's list endpoint filtered by ``PhoneNumber``. That filter also matches
        numbers that merely contain the digits, so only an exact match is returned. Retried as
        the policy allows (a read is safe to repeat), within one ``max_elapsed`` for all pages.
        """
        check_e164("phone_number", phone_number)
        account = self._account(account_sid)
        return await self._reads.find(phone_number, account, Budget.start(self._retrier.policy))

    async def search_available_phone_numbers(
        self,
        country: str = "US",
        *,
        kind: NumberKind = "local",
        area_code: str | None = None,
        contains: str | None = None,
        sms_enabled: bool | None = None,
        mms_enabled: bool | None = None,
        voice_enabled: bool | None = None,
        limit: int | None = None,
        account_sid: str | None = None,
    ) -> list[AvailablePhoneNumber]:
        """Numbers for sale in ``country`` (ISO 3166-1, such as ``"US"``): Twilio's
        ``AvailablePhoneNumbers/{country}/Local.json`` (``kind="mobile"``: ``Mobile.json``,
        ``"toll_free"``: ``TollFree.json``), filtered as Twilio filters them, ``limit`` at
        most (Twilio's default page is 50; 1,000 at most). Retried like any read.
        """
        search = Search(
            country=country,
            kind=kind,
            area_code=area_code,
            contains=contains,
            sms_enabled=sms_enabled,
            mms_enabled=mms_enabled,
            voice_enabled=voice_enabled,
            limit=limit,
        )
        account = self._account(account_sid)
        return await self._reads.search(search, account, Budget.start(self._retrier.policy))

    async def fetch_incoming_phone_number(
        self, sid: str, *, account_sid: str | None = None
    ) -> IncomingPhoneNumber:
        """The number whose SID is ``sid`` (``PN...``) on the account. One that is not there
        (released, or never bought) is a :class:`TwilioApiError` with code 20404."""
        check_sid("sid", sid, "PN")
        account = self._account(account_sid)
        return await self._reads.fetch(sid, account, Budget.start(self._retrier.policy))

    async def release_incoming_phone_number(
        self, sid: str, *, account_sid: str | None = None
    ) -> bool:
        """Release the number ``sid`` from the account: ``True`` when this call released it,
        ``False`` when it was already gone (404). Safe to repeat, so retried like a read.

        aiohttp itself sends a DELETE again, once, when a kept-alive connection drops before
        the answer: such a release reports ``False`` although it released the number.
        """
        check_sid("sid", sid, "PN")
        account = self._account(account_sid)
        return await self._reads.release(sid, account, Budget.start(self._retrier.policy))

    def purchase_many(
        self,
        requests: Iterable[PurchaseRequest] | AsyncIterable[PurchaseRequest],
        *,
        concurrency: int | None = None,
        journal: str | os.PathLike[str] | None = None,
        account_sid: str | None = None,
        progress: BulkProgress | None = None,
    ) -> AsyncGenerator[PurchaseOutcome, None]:
        """Buy many numbers, yielding one outcome each as it completes, in completion order.

        Requests are pulled lazily from any iterable or async iterable, a few more than are in
        flight, so memory stays flat however long the input. ``concurrency`` caps the purchases
        in progress; by default it follows the client's adaptive limit (twice its current
        value), so that the account's limit, not a guess, sets the pace. An error of one request
        is its outcome's ``error``; it never stops the others.

        ``journal`` is a path for a crash-safe record: running again with the same journal and
        input yields what is done with ``from_journal=True`` and sends nothing for it, but for
        a failure Twilio certainly never processed, which is tried again; what was in flight
        when a run died is looked up before anything is sent. ``progress``, if given, is
        updated as outcomes are yielded.

        Close the generator early (``aclose()``, or ``break`` inside ``contextlib.aclosing``)
        or cancel its task to stop: purchases in flight are cancelled and awaited before it
        returns, and the journal stays consistent. To stop without cutting purchases off, end
        the input instead. If the input itself fails, taking stops the same way, and the error
        is raised once what was in flight has been yielded.
        """
        from .bulk._run import purchase_many  # noqa: PLC0415 - loaded only by who uses it

        return purchase_many(
            self._engine,
            requests,
            account_sid=self._account(account_sid),
            concurrency=concurrency,
            journal=journal,
            progress=progress,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self.closed:
            raise ClientClosedError(
                "this TwilioNumbersClient is closed; create a new one (or keep one open for "
                "the application's lifetime)"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Refuse new requests and close the transport (never a session passed in).
        Idempotent. A request already sent finishes or fails as the transport closes."""
        self._gateway.closed = True
        await self._gateway.transport.aclose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called; a closed client refuses new requests."""
        return self._gateway.closed

    def __repr__(self) -> str:
        settings = self._settings
        return (
            f"{type(self).__name__}(account_sid={settings.account_sid!r}, "
            f"base_url={settings.base_url!r}, auth={settings.auth_kind!r})"
        )

    def _account(self, account_sid: str | None) -> str:
        if account_sid is None:
            return self._settings.account_sid
        return check_sid("account_sid", account_sid, "AC")


def _check_ceiling(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestValidationError(
            "max_concurrency",
            f"must be a whole number of requests in flight, at least 1, or a shared slot holder "
            f"(an async context manager), not {value!r}",
        )
    return value
