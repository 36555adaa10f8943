"""The transport: how one HTTP request reaches Twilio and its answer comes back.

A :class:`Transport` sends a :class:`Request` and returns the :class:`Response`, whatever its
status, or raises :class:`~twilio_numbers_async.errors.TransportError`, whose ``sent`` says
whether the request may have reached the server. That is all the rest of the library knows of
HTTP: the purchase engine never sees aiohttp, and tests plug in a transport of their own.

:class:`AiohttpTransport` is the default, and this module is the only one that uses aiohttp's
client: its exceptions become ``TransportError`` here, once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Final, Protocol

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from .errors import ClientClosedError, TransportError

__all__ = ["AiohttpTransport", "Request", "Response", "Transport"]

# Failures that happen while connecting, before any byte of the request is written: the
# request certainly never reached Twilio, so it is safe to send again.
_NOT_SENT: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# Connections kept when the pool's size is not given.
_DEFAULT_POOL: Final = 100


@attrs.frozen
class Request:
    """One HTTP request, ready to send."""

    method: str
    url: str
    #: The credentials travel here: never shown in a repr.
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: bytes | None = None
    #: Seconds the whole exchange may take.
    timeout: float = 30.0


def _case_insensitive(headers: Mapping[str, str]) -> Mapping[str, str]:
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers
    return CIMultiDict(headers)


@attrs.frozen
class Response:
    """The answer to a request, whatever its status. Header names are case-insensitive."""

    status: int
    headers: Mapping[str, str] = attrs.field(converter=_case_insensitive)
    body: bytes = b""


class Transport(Protocol):
    """What sends requests: :class:`AiohttpTransport`, or a test double of your own."""

    async def send(self, request: Request) -> Response:
        """Send ``request`` and read the whole answer.

        Raise :class:`~twilio_numbers_async.errors.TransportError` when no answer came, with
        ``sent=False`` only when the request certainly never reached the server (it failed
        while connecting): a purchase is sent again only then.
        """
        ...

    async def aclose(self) -> None:
        """Release what the transport holds (connections). Idempotent."""
        ...


class AiohttpTransport:
    """The default transport: one ``aiohttp.ClientSession``, made on first use.

    ``session``, if given, is used and never closed here: its owner closes it. Otherwise the
    session is created inside the running loop when the first request is sent (a client may be
    built at import time, before any loop exists), with a pool of ``pool_size`` connections,
    and closed by :meth:`aclose`. Redirects are never followed: a purchase is answered, not
    moved. Connecting may take at most half of a request's timeout (10 s at most), so that a
    failure to connect is known before the request could have been written.
    """

    def __init__(
        self, *, session: aiohttp.ClientSession | None = None, pool_size: int = _DEFAULT_POOL
    ) -> None:
        self._given = session
        self._session = session
        self._pool_size = pool_size
        self._closed = False

    def __repr__(self) -> str:
        owner = "given" if self._given is not None else "own"
        return f"{type(self).__name__}(session={owner!r}, closed={self._closed!r})"

    async def send(self, request: Request) -> Response:
        session = self._session if self._session is not None else self._open()
        if session.closed:
            # The caller's own session, closed under the client: aiohttp would raise a bare
            # RuntimeError, and nothing is sent.
            raise ClientClosedError(
                "the aiohttp session given to the client is closed, so the request was not "
                "sent; close the client before its session, or give it an open one"
            )
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=_client_timeout(request.timeout),
                allow_redirects=False,
            ) as answer:
                body = await answer.read()
                return Response(answer.status, answer.headers, body)
        except _NOT_SENT as exc:
            failure = TransportError(
                f"could not connect, the request was not sent ({_describe(exc)})",
                method=request.method,
                url=request.url,
                sent=False,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            failure = TransportError(
                f"the connection failed after the request was sent; Twilio may have "
                f"processed it ({_describe(exc)})",
                method=request.method,
                url=request.url,
                sent=True,
            )
        # Raised here, outside the except clauses, so that aiohttp's exception is neither the
        # cause nor the context: its request_info holds the Authorization header, and crash
        # reporters render the whole chain. Its type and message are in ours.
        raise failure

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None and session is not self._given:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("the transport is closed; the request was not sent")
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._pool_size))
        return self._session


@functools.lru_cache(maxsize=8)
def _client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    # A client uses one timeout for every request: built once, not per request.
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds / 2, 10.0))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
