"""``TwilioNumbersClient``: the one object a program holds to buy numbers.

It owns the configuration (credentials, host, timeouts, retry policy, limiter), one lazily made
``aiohttp.ClientSession``, and the narrow HTTP seam :meth:`TwilioNumbersClient._send` through
which every request passes: the concurrency cap, a limiter token, and the translation of
aiohttp's exceptions into this library's, once.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import platform
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self
from urllib.parse import quote, urljoin, urlsplit

import aiohttp

from ._purchase import (
    PurchaseStats,
    Retrier,
    RetryHook,
    purchase_safely,
    raise_last,
    retry_unless_rejected,
)
from ._serde import (
    encode_form,
    parse_error_body,
    parse_number,
    parse_number_page,
    parse_retry_after,
)
from ._sids import (
    check_count,
    check_e164,
    check_sid,
    check_text,
    is_loopback_host,
    redact_url,
)
from ._version import VERSION
from .errors import (
    AuthenticationError,
    RateLimitedError,
    TransportError,
    TwilioApiError,
)
from .models import (
    EmergencyStatus,
    HttpMethod,
    IncomingPhoneNumber,
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseRequest,
    VoiceReceiveMode,
)
from .ratelimit import Limiter, TokenBucket
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .bulk import BulkProgress, PurchaseOutcome

__all__ = ["TwilioNumbersClient"]

_DEFAULT_HOST: Final = "https://api.twilio.com"
_API_VERSION: Final = "2010-04-01"
_PAGE_SIZE: Final = 50
# Connections kept when the in-flight cap is shared and its size is not known here.
_DEFAULT_POOL: Final = 100
# Failures that happen while connecting, before any byte of the request is written: the
# request certainly never reached Twilio, so it is safe to send again.
_NOT_SENT: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_ENV: Final = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "TWILIO_EDGE",
    "TWILIO_REGION",
)


class _Response:
    """What the seam hands up: the status, the body, and the two headers the library reads."""

    __slots__ = ("body", "request_id", "retry_after", "status")

    def __init__(
        self, status: int, body: bytes, request_id: str | None, retry_after: str | None
    ) -> None:
        self.status = status
        self.body = body
        self.request_id = request_id
        self.retry_after = retry_after


class TwilioNumbersClient:
    """An asyncio client for buying Twilio phone numbers.

    Use it as an async context manager, or call :meth:`close` when done. One client holds one
    connection pool: create it once (at application start-up) and share it.

    Authenticate with the account's auth token, or with an API key (``SK...``) and its secret;
    the account SID stays in every URL either way. ``base_url`` overrides the host (plain
    ``http`` only to loopback, for the sandbox); otherwise ``edge`` and ``region`` pick Twilio's
    ``https://api.{edge}.{region}.twilio.com`` (an edge alone implies region ``us1``).

    ``timeout`` bounds each attempt, in seconds; connecting may use at most half of it, so that
    a failure to connect is known not to have reached Twilio. ``rate_limit`` is a
    :class:`~twilio_numbers_async.ratelimit.Limiter` (a :class:`TokenBucket`, or a shared one),
    a rate in requests per second, or ``None`` for none; every attempt takes a token.
    ``max_concurrency`` caps requests in flight: a number, or any async context manager that
    holds a slot while it is entered (a shared one, such as the Redis limiter's, caps several
    processes together). ``on_retry`` is called before each retry's wait.
    ``session`` is an ``aiohttp.ClientSession`` to use (and not close) instead of the client's own.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str | None = None,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        base_url: str | None = None,
        edge: str | None = None,
        region: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rate_limit: Limiter | float | None = 25.0,
        max_concurrency: int | AbstractAsyncContextManager[object] = 25,
        session: aiohttp.ClientSession | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        self._account_sid = check_sid("account_sid", account_sid, "AC")
        username, password = _credentials(auth_token, api_key, api_secret, account_sid)
        self._auth_kind = "auth token" if auth_token is not None else f"API key {username}"
        self._base_url = _resolve_base_url(base_url, edge, region)
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout / 2, 10.0))
        self._limiter: Limiter | None = (
            TokenBucket(rate_limit) if isinstance(rate_limit, int | float) else rate_limit
        )
        self._retrier = Retrier(retry or RetryPolicy(), self._limiter, on_retry)
        self._in_flight: AbstractAsyncContextManager[object]
        if isinstance(max_concurrency, AbstractAsyncContextManager):
            self._in_flight = max_concurrency
            self._pool_size = _DEFAULT_POOL
        else:
            self._pool_size = check_count("max_concurrency", max_concurrency)
            self._in_flight = asyncio.Semaphore(self._pool_size)
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        common = {
            "Authorization": f"Basic {token}",
            "Accept": "application/json",
            "User-Agent": _user_agent(),
        }
        # Built once: aiohttp would otherwise encode BasicAuth for every request.
        self._headers: Mapping[str, Mapping[str, str]] = {
            "GET": common,
            "POST": {**common, "Content-Type": "application/x-www-form-urlencoded"},
        }
        self._given_session = session
        self._session: aiohttp.ClientSession | None = session
        self._closed = False
        self._urls: dict[tuple[str, str], str] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Self:
        """A client configured from ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN`` (or
        ``TWILIO_API_KEY`` and ``TWILIO_API_SECRET``), ``TWILIO_EDGE`` and ``TWILIO_REGION``.

        ``kwargs`` are passed on and win over the environment.
        """
        env = os.environ if environ is None else environ
        values = {name: env.get(name) or None for name in _ENV}
        account_sid = values["TWILIO_ACCOUNT_SID"]
        if account_sid is None:
            raise ValueError(
                "TWILIO_ACCOUNT_SID is not set: export it (it starts with AC), with "
                "TWILIO_AUTH_TOKEN or TWILIO_API_KEY and TWILIO_API_SECRET"
            )
        settings: dict[str, Any] = {
            "auth_token": values["TWILIO_AUTH_TOKEN"],
            "api_key": values["TWILIO_API_KEY"],
            "api_secret": values["TWILIO_API_SECRET"],
            "edge": values["TWILIO_EDGE"],
            "region": values["TWILIO_REGION"],
        }
        if settings["api_key"] is not None:
            # A key in the environment means key auth; the auth token may sit beside it unused.
            settings["auth_token"] = None
        # Checked here, not only by the constructor, so that an error names the variable to fix.
        check_sid("TWILIO_ACCOUNT_SID", account_sid, "AC")
        if settings["api_key"] is not None and "api_key" not in kwargs:
            check_sid("TWILIO_API_KEY", settings["api_key"], "SK")
        return cls(account_sid, **{**settings, **kwargs})

    # --- public API ------------------------------------------------------------------------

    @property
    def account_sid(self) -> str:
        """The account that purchases go to unless a call names a subaccount."""
        return self._account_sid

    @property
    def base_url(self) -> str:
        """The scheme and host requests go to, such as ``https://api.twilio.com``."""
        return self._base_url

    @property
    def limiter(self) -> Limiter | None:
        """The limiter every attempt passes through, if any."""
        return self._limiter

    async def purchase(
        self, request: PurchaseRequest, *, account_sid: str | None = None
    ) -> IncomingPhoneNumber:
        """Buy the number ``request`` describes, on ``account_sid`` (default: the client's).

        A :class:`NumberPurchase` goes to ``IncomingPhoneNumbers.json``, a
        :class:`MobileNumberPurchase` to ``IncomingPhoneNumbers/Mobile.json``. Retries follow
        the client's :class:`RetryPolicy` and never buy twice (see ``retry``).
        """
        return await self.purchase_tracked(request, PurchaseStats(), account_sid=account_sid)

    async def purchase_tracked(
        self,
        request: PurchaseRequest,
        stats: PurchaseStats,
        *,
        account_sid: str | None = None,
        in_doubt: BaseException | None = None,
    ) -> IncomingPhoneNumber:
        """:meth:`purchase`, recording attempts, reconciliation and 429s in ``stats``.

        ``in_doubt`` says why an earlier attempt, outside this call, may already have bought
        the number (a run that died with it in flight): a given number is then looked up before
        anything is sent, and an area code is reported as :class:`PurchaseOutcomeUnknownError`.
        """
        if not isinstance(request, NumberPurchase | MobileNumberPurchase):
            raise TypeError(
                f"purchase() takes a NumberPurchase or MobileNumberPurchase, "
                f"not {type(request).__name__}"
            )
        account = self._account(account_sid)
        url = self._url(account, request.endpoint)
        body = encode_form(request)

        async def post() -> IncomingPhoneNumber:
            response = await self._send("POST", url, body)
            if 200 <= response.status < 300:
                return parse_number(response.status, response.body)
            raise _api_error("POST", url, response)

        async def find(phone_number: str) -> IncomingPhoneNumber | None:
            return await self.find_incoming_phone_number(phone_number, account_sid=account)

        return await purchase_safely(
            request,
            account_sid=account,
            post=post,
            find=find,
            retrier=self._retrier,
            stats=stats,
            in_doubt=in_doubt,
        )

    async def create_incoming_phone_number(
        self,
        *,
        phone_number: str | None = None,
        area_code: str | None = None,
        api_version: str | None = None,
        friendly_name: str | None = None,
        sms_application_sid: str | None = None,
        sms_fallback_method: HttpMethod | Literal["GET", "POST"] | None = None,
        sms_fallback_url: str | None = None,
        sms_method: HttpMethod | Literal["GET", "POST"] | None = None,
        sms_url: str | None = None,
        status_callback: str | None = None,
        status_callback_method: HttpMethod | Literal["GET", "POST"] | None = None,
        voice_application_sid: str | None = None,
        voice_caller_id_lookup: bool | None = None,
        voice_fallback_method: HttpMethod | Literal["GET", "POST"] | None = None,
        voice_fallback_url: str | None = None,
        voice_method: HttpMethod | Literal["GET", "POST"] | None = None,
        voice_url: str | None = None,
        emergency_status: EmergencyStatus | Literal["Active", "Inactive"] | None = None,
        emergency_address_sid: str | None = None,
        trunk_sid: str | None = None,
        identity_sid: str | None = None,
        address_sid: str | None = None,
        voice_receive_mode: VoiceReceiveMode | Literal["voice", "fax"] | None = None,
        bundle_sid: str | None = None,
        account_sid: str | None = None,
    ) -> IncomingPhoneNumber:
        """Buy ``phone_number``, or any number in ``area_code``: Twilio's
        CreateIncomingPhoneNumber. The fields are :class:`NumberPurchase`'s.
        """
        request = NumberPurchase(
            phone_number=phone_number,
            area_code=area_code,
            api_version=api_version,
            friendly_name=friendly_name,
            sms_application_sid=sms_application_sid,
            sms_fallback_method=sms_fallback_method,
            sms_fallback_url=sms_fallback_url,
            sms_method=sms_method,
            sms_url=sms_url,
            status_callback=status_callback,
            status_callback_method=status_callback_method,
            voice_application_sid=voice_application_sid,
            voice_caller_id_lookup=voice_caller_id_lookup,
            voice_fallback_method=voice_fallback_method,
            voice_fallback_url=voice_fallback_url,
            voice_method=voice_method,
            voice_url=voice_url,
            emergency_status=emergency_status,
            emergency_address_sid=emergency_address_sid,
            trunk_sid=trunk_sid,
            identity_sid=identity_sid,
            address_sid=address_sid,
            voice_receive_mode=voice_receive_mode,
            bundle_sid=bundle_sid,
        )
        return await self.purchase(request, account_sid=account_sid)

    async def create_incoming_phone_number_mobile(
        self,
        *,
        phone_number: str,
        api_version: str | None = None,
        friendly_name: str | None = None,
        sms_application_sid: str | None = None,
        sms_fallback_method: HttpMethod | Literal["GET", "POST"] | None = None,
        sms_fallback_url: str | None = None,
        sms_method: HttpMethod | Literal["GET", "POST"] | None = None,
        sms_url: str | None = None,
        status_callback: str | None = None,
        status_callback_method: HttpMethod | Literal["GET", "POST"] | None = None,
        voice_application_sid: str | None = None,
        voice_caller_id_lookup: bool | None = None,
        voice_fallback_method: HttpMethod | Literal["GET", "POST"] | None = None,
        voice_fallback_url: str | None = None,
        voice_method: HttpMethod | Literal["GET", "POST"] | None = None,
        voice_url: str | None = None,
        identity_sid: str | None = None,
        address_sid: str | None = None,
        emergency_status: EmergencyStatus | Literal["Active", "Inactive"] | None = None,
        emergency_address_sid: str | None = None,
        trunk_sid: str | None = None,
        voice_receive_mode: VoiceReceiveMode | Literal["voice", "fax"] | None = None,
        bundle_sid: str | None = None,
        account_sid: str | None = None,
    ) -> IncomingPhoneNumber:
        """Buy the mobile ``phone_number``: Twilio's CreateIncomingPhoneNumberMobile.
        The fields are :class:`MobileNumberPurchase`'s.
        """
        request = MobileNumberPurchase(
            phone_number=phone_number,
            api_version=api_version,
            friendly_name=friendly_name,
            sms_application_sid=sms_application_sid,
            sms_fallback_method=sms_fallback_method,
            sms_fallback_url=sms_fallback_url,
            sms_method=sms_method,
            sms_url=sms_url,
            status_callback=status_callback,
            status_callback_method=status_callback_method,
            voice_application_sid=voice_application_sid,
            voice_caller_id_lookup=voice_caller_id_lookup,
            voice_fallback_method=voice_fallback_method,
            voice_fallback_url=voice_fallback_url,
            voice_method=voice_method,
            voice_url=voice_url,
            identity_sid=identity_sid,
            address_sid=address_sid,
            emergency_status=emergency_status,
            emergency_address_sid=emergency_address_sid,
            trunk_sid=trunk_sid,
            voice_receive_mode=voice_receive_mode,
            bundle_sid=bundle_sid,
        )
        return await self.purchase(request, account_sid=account_sid)

    async def find_incoming_phone_number(
        self, phone_number: str, *, account_sid: str | None = None
    ) -> IncomingPhoneNumber | None:
        """The number if ``account_sid`` (default: the client's) owns it, else ``None``.

        Reads Twilio's list endpoint filtered by ``PhoneNumber``. That filter also matches
        numbers that merely contain the digits, so only an exact match is returned. Retried as
        the policy allows (a read is safe to repeat).
        """
        check_e164("phone_number", phone_number)
        account = self._account(account_sid)
        url = (
            f"{self._url(account, 'IncomingPhoneNumbers.json')}"
            f"?PhoneNumber={quote(phone_number, safe='')}&PageSize={_PAGE_SIZE}"
        )
        while True:
            numbers, next_page = await self._retrier.run(
                "find",
                functools.partial(self._get_page, url),
                decide=retry_unless_rejected,
                give_up=raise_last,
                stats=PurchaseStats(),
            )
            for number in numbers:
                if number.phone_number == phone_number:
                    return number
            if next_page is None:
                return None
            # Twilio's next_page_uri is a path from the API's root: keep a base_url's own path.
            url = (
                f"{self._base_url}{next_page}"
                if next_page.startswith("/")
                else urljoin(self._base_url, next_page)
            )

    def purchase_many(
        self,
        requests: Iterable[PurchaseRequest] | AsyncIterable[PurchaseRequest],
        *,
        concurrency: int = 8,
        journal: str | os.PathLike[str] | None = None,
        account_sid: str | None = None,
        progress: BulkProgress | None = None,
    ) -> AsyncGenerator[PurchaseOutcome, None]:
        """Buy many numbers, yielding one outcome each as it completes.

        See :func:`twilio_numbers_async.bulk.purchase_many`: streaming input, at most
        ``concurrency`` purchases at once, and a crash-safe ``journal`` to resume from.
        """
        from .bulk import purchase_many  # noqa: PLC0415 - bulk builds on the client, not back

        return purchase_many(
            self,
            requests,
            concurrency=concurrency,
            journal=journal,
            account_sid=account_sid,
            progress=progress,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client's own session (never one passed in). Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and session is not self._given_session:
            await session.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called; a closed client refuses new requests."""
        return self._closed

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(account_sid={self._account_sid!r}, "
            f"base_url={self._base_url!r}, auth={self._auth_kind!r})"
        )

    # --- the HTTP seam ---------------------------------------------------------------------

    async def _send(self, method: str, url: str, body: bytes | None = None) -> _Response:
        """One HTTP attempt: a concurrency slot, a limiter token, the request, its whole body.

        aiohttp's exceptions become :class:`TransportError` here and nowhere else, with
        ``sent=False`` only where the request certainly never reached Twilio.
        """
        session = self._session if self._session is not None else self._open_session()
        async with self._in_flight:
            if self._limiter is not None:
                await self._limiter.acquire()
            try:
                async with session.request(
                    method,
                    url,
                    data=body,
                    headers=self._headers[method],
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as response:
                    payload = await response.read()
                    headers = response.headers
                    return _Response(
                        response.status,
                        payload,
                        headers.get("Twilio-Request-Id"),
                        headers.get("Retry-After"),
                    )
            except _NOT_SENT as exc:
                raise TransportError(
                    f"could not connect, the request was not sent ({_describe(exc)})",
                    method=method,
                    url=url,
                    sent=False,
                ) from exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise TransportError(
                    f"the connection failed after the request was sent; Twilio may have "
                    f"processed it ({_describe(exc)})",
                    method=method,
                    url=url,
                    sent=True,
                ) from exc

    async def _get_page(self, url: str) -> tuple[list[IncomingPhoneNumber], str | None]:
        response = await self._send("GET", url)
        if response.status == 200:
            return parse_number_page(response.status, response.body)
        raise _api_error("GET", url, response)

    def _open_session(self) -> aiohttp.ClientSession:
        self._check_open()
        # Created here, inside the running loop, never at construction: a client may be built
        # at import time, before any loop exists.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._pool_size),
        )
        return self._session

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(
                "this TwilioNumbersClient is closed; create a new one (or keep one open for "
                "the application's lifetime)"
            )

    def _account(self, account_sid: str | None) -> str:
        if account_sid is None:
            return self._account_sid
        return check_sid("account_sid", account_sid, "AC")

    def _url(self, account_sid: str, endpoint: str) -> str:
        key = (account_sid, endpoint)
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = (
                f"{self._base_url}/{_API_VERSION}/Accounts/{account_sid}/{endpoint}"
            )
        return url


def _api_error(method: str, url: str, response: _Response) -> TwilioApiError:
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
        "request_id": response.request_id,
        "method": method,
        "url": url,
        **fields,
    }
    code = fields.get("code")
    if response.status == 429 or code == 20429:
        return RateLimitedError(
            retry_after=parse_retry_after(response.retry_after, now=datetime.now(UTC)), **common
        )
    if response.status == 401 or code == 20003:
        return AuthenticationError(**common)
    return TwilioApiError(**common)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _credentials(
    auth_token: str | None, api_key: str | None, api_secret: str | None, account_sid: str
) -> tuple[str, str]:
    if api_key is not None or api_secret is not None:
        if auth_token is not None:
            raise ValueError(
                "pass either auth_token or api_key with api_secret, not both: "
                "the two are different ways to sign the same requests"
            )
        if api_key is None or api_secret is None:
            raise ValueError("api_key and api_secret go together: pass both")
        check_sid("api_key", api_key, "SK")
        check_text("api_secret", api_secret)
        return api_key, api_secret
    if auth_token is None:
        raise ValueError(
            "no credentials: pass auth_token, or api_key and api_secret "
            "(TwilioNumbersClient.from_env() reads them from TWILIO_* variables)"
        )
    check_text("auth_token", auth_token)
    if not auth_token:
        raise ValueError("auth_token is empty")
    return account_sid, auth_token


def _resolve_base_url(base_url: str | None, edge: str | None, region: str | None) -> str:
    if base_url is None:
        if edge is None and region is None:
            return _DEFAULT_HOST
        labels = [_host_label("edge", edge), _host_label("region", region or "us1")]
        return f"https://api.{'.'.join(label for label in labels if label)}.twilio.com"
    check_text("base_url", base_url)
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = redact_url(base_url)
        raise ValueError(f"base_url must be an absolute http(s) URL, not {shown!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("base_url takes a scheme, a host and a path: no credentials or query")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"base_url {base_url!r} is plain http to a host that is not loopback: credentials "
            "would cross the network unencrypted; use https (http is for a local sandbox)"
        )
    return base_url.rstrip("/")


def _host_label(name: str, value: str | None) -> str:
    if value is None:
        return ""
    text = check_text(name, value)
    if not text or not all(c.isascii() and (c.isalnum() or c == "-") for c in text):
        raise ValueError(f"{name} must be a host label such as 'sydney' or 'au1', not {value!r}")
    return text.lower()


def _user_agent() -> str:
    return (
        f"twilio-numbers-async/{VERSION} Python/{platform.python_version()} "
        f"aiohttp/{aiohttp.__version__}"
    )
