"""One request as it goes through the sandbox, and the answers Twilio would give it.

Every answer carries ``Twilio-Request-Id`` and ``Twilio-Concurrent-Requests``. Twilio's docs
tell a client to watch the latter "to see when request volume is approaching account
concurrency limits" (error 20429's page and 45780's, twilio.com/docs/api/errors) and call it a
REST API header "for monitoring account-level concurrency" (Twilio support, "Monitoring
TaskRouter API Usage"): it holds the account's number of requests in flight. The sandbox
counts them when the request arrives, itself included.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, Final

import attrs
from aiohttp import web

from ._errors import ApiError, rate_limited
from ._faults import Fate, Fault
from ._records import RequestRecord

__all__ = [
    "Dropped",
    "Exchange",
    "empty_response",
    "error_response",
    "fault_response",
    "json_response",
    "server_error",
]

# 502 and 503 come from the load balancer in front of Twilio, as HTML: a client must cope.
_HTML_STATUSES: Final = frozenset({502, 503})
_HTML_PAGE: Final = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n"
)


class Dropped(Exception):  # noqa: N818 - a signal, not an error
    """Close the connection without an answer."""


@attrs.define
class Exchange:
    """One request as it goes: what :class:`RequestRecord` will say about it."""

    method: str
    path: str
    request_id: str
    started_at: float
    account_sid: str | None
    query: dict[str, str]
    concurrent: int
    form: dict[str, str] = attrs.Factory(dict)
    fate: Fate | None = None
    fault: str | None = None
    status: int | None = None
    finished_at: float | None = None

    def record(self) -> RequestRecord:
        """The frozen record of this request, as it stands."""
        return RequestRecord(
            method=self.method,
            path=self.path,
            account_sid=self.account_sid,
            form=dict(self.form),
            query=dict(self.query),
            status=self.status,
            fault=self.fault,
            request_id=self.request_id,
            started_at=self.started_at,
            finished_at=self.finished_at,
            concurrent=self.concurrent,
        )


def _headers(exchange: Exchange, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {
        "Twilio-Request-Id": exchange.request_id,
        "Twilio-Concurrent-Requests": str(exchange.concurrent),
    }
    if extra:
        headers.update(extra)
    return headers


def json_response(exchange: Exchange, status: int, payload: Any) -> web.Response:
    """A JSON answer."""
    exchange.status = status
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=_headers(exchange),
    )


def empty_response(exchange: Exchange, status: int) -> web.Response:
    """An answer with no body (a DELETE's 204)."""
    exchange.status = status
    return web.Response(status=status, headers=_headers(exchange))


def error_response(exchange: Exchange, error: ApiError) -> web.Response:
    """Twilio's JSON error answer."""
    exchange.status = error.status
    return web.Response(
        status=error.status,
        body=error.body(),
        content_type="application/json",
        charset="utf-8",
        headers=_headers(exchange, error.headers),
    )


def server_error(exchange: Exchange, status: int) -> web.Response:
    """A 5xx: Twilio's JSON body, or for 502 and 503 a load balancer's HTML page."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Server Error"
    if status not in _HTML_STATUSES:
        return error_response(exchange, ApiError(status, 20500, phrase))
    exchange.status = status
    return web.Response(
        status=status,
        text=_HTML_PAGE.format(status=status, phrase=phrase),
        content_type="text/html",
        headers=_headers(exchange),
    )


def fault_response(exchange: Exchange, fault: Fault) -> web.Response:
    """The answer to a fault that comes before the request is processed: nothing is done."""
    if fault.name == "rate_limited":
        return error_response(exchange, rate_limited(fault.retry_after))
    if fault.name == "server_error":
        return server_error(exchange, fault.status or 500)
    raise Dropped  # drop_before_commit
