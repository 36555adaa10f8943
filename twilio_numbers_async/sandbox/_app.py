"""The aiohttp application: routes, authentication, faults, records and Twilio's answers.

Each request goes through :meth:`SandboxApp._dispatch`: it gets a ``Twilio-Request-Id`` and a
record, is refused with 429 if too many are in flight, waits out the injected latency, and then
meets its handler. Handlers raise :class:`ApiError` for Twilio's error answers and
:class:`_Dropped` to close the connection without one. Nothing here awaits between choosing a
number and recording its purchase, so concurrent requests can't buy a number twice.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Final

import attrs
from aiohttp import web

from ._accounts import Accounts
from ._errors import ApiError, not_found, rate_limited
from ._faults import Fault, FaultPicker
from ._form import ValidForm, parse_form, validate_form
from ._ids import IdSource
from ._inventory import Inventory
from ._listing import list_page
from ._pauses import Pauses
from ._records import PurchaseRecord, RequestRecord
from ._resource import API_VERSION, build_resource, for_response

__all__ = ["GENERIC_ENDPOINT", "MOBILE_ENDPOINT", "SandboxApp"]

_BASE: Final = f"/{API_VERSION}/Accounts/{{AccountSid}}"
GENERIC_ENDPOINT: Final = "IncomingPhoneNumbers.json"
MOBILE_ENDPOINT: Final = "IncomingPhoneNumbers/Mobile.json"
_KNOWN_PATHS: Final = {
    re.compile(rf"/{API_VERSION}/Accounts/[^/]+/IncomingPhoneNumbers\.json"): "GET, POST",
    re.compile(rf"/{API_VERSION}/Accounts/[^/]+/IncomingPhoneNumbers/Mobile\.json"): "POST",
}
_UNAUTHORIZED_HEADERS: Final = {"WWW-Authenticate": 'Basic realm="Twilio API"'}
# 502 and 503 come from the load balancer in front of Twilio, as HTML: a client must cope.
_HTML_STATUSES: Final = frozenset({502, 503})
_HTML_PAGE: Final = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n"
)

Handler = Callable[[web.Request, "_Exchange"], Awaitable[web.StreamResponse]]


class _Dropped(Exception):  # noqa: N818 - a signal, not an error
    """Close the connection without an answer."""


@attrs.define
class _Exchange:
    """One request as it goes: what :class:`RequestRecord` will say about it."""

    method: str
    path: str
    request_id: str
    started_at: float
    account_sid: str | None
    query: dict[str, str]
    form: dict[str, str] = attrs.Factory(dict)
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
        )


class SandboxApp:
    """The sandbox's state, and the aiohttp application that serves it."""

    def __init__(
        self,
        *,
        accounts: Accounts,
        inventory: Inventory,
        picker: FaultPicker,
        max_concurrency: int | None,
        seed: int,
    ) -> None:
        self.accounts = accounts
        self.inventory = inventory
        self.picker = picker
        self.max_concurrency = max_concurrency
        self.purchases: list[PurchaseRecord] = []
        self.exchanges: list[_Exchange] = []
        self.pauses = Pauses()
        self._number_sids = IdSource(seed, "numbers")
        self._request_ids = IdSource(seed, "requests")
        self._in_flight = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(requests={len(self.exchanges)}, "
            f"purchases={len(self.purchases)}, in_flight={self._in_flight})"
        )

    def web_app(self) -> web.Application:
        """A new aiohttp application on this state (one per start: a runner freezes its app)."""
        app = web.Application()
        routes = (
            ("POST", f"{_BASE}/{GENERIC_ENDPOINT}", self._buy_generic),
            ("POST", f"{_BASE}/{MOBILE_ENDPOINT}", self._buy_mobile),
            ("GET", f"{_BASE}/{GENERIC_ENDPOINT}", self._list),
            ("*", "/{tail:.*}", self._unknown),
        )
        for method, path, handler in routes:
            app.router.add_route(method, path, self._entry(handler))
        return app

    def _entry(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def entry(request: web.Request) -> web.StreamResponse:
            return await self._dispatch(request, handler)

        return entry

    # --- every request --------------------------------------------------------------------

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        exchange = _Exchange(
            method=request.method,
            path=request.path,
            request_id=self._request_ids.sid("RQ"),
            started_at=loop.time(),
            account_sid=request.match_info.get("AccountSid"),
            query=dict(request.query),
        )
        self.exchanges.append(exchange)
        self._in_flight += 1
        try:
            response = await self._answer(request, exchange, handler)
        finally:
            self._in_flight -= 1
            exchange.finished_at = loop.time()
        return response

    async def _answer(
        self, request: web.Request, exchange: _Exchange, handler: Handler
    ) -> web.StreamResponse:
        try:
            if self.max_concurrency is not None and self._in_flight > self.max_concurrency:
                raise rate_limited()
            if not await self.pauses.sleep(self.picker.latency()):
                raise _Dropped
            return await handler(request, exchange)
        except ApiError as error:
            return _error_response(exchange, error)
        except web.HTTPException as error:  # aiohttp's own, e.g. 413 for a huge body
            code = 20001 if error.status < 500 else 20500
            return _error_response(exchange, ApiError(error.status, code, error.reason))
        except _Dropped:
            exchange.status = None
            if request.transport is not None:
                request.transport.close()
            # Never sent: writing to the closed transport fails, and aiohttp takes that
            # quietly as a client gone away (no traceback, no log line).
            return web.Response(status=204)
        except ConnectionResetError:
            # The client hung up before its request was read (it gave up, or was cancelled):
            # nothing was processed, and that is no server error worth a traceback.
            exchange.status = None
            return web.Response(status=204)

    def _authorize(self, request: web.Request) -> str:
        if not self.accounts.authenticate(request.headers.get("Authorization")):
            raise ApiError(401, 20003, "Authenticate", headers=_UNAUTHORIZED_HEADERS)
        account_sid = request.match_info["AccountSid"]
        if not self.accounts.may_act_on(account_sid):
            raise not_found(request.path)
        return account_sid

    # --- handlers -------------------------------------------------------------------------

    async def _buy_generic(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        return await self._buy(request, exchange, mobile=False)

    async def _buy_mobile(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        return await self._buy(request, exchange, mobile=True)

    async def _buy(
        self, request: web.Request, exchange: _Exchange, *, mobile: bool
    ) -> web.StreamResponse:
        account_sid = self._authorize(request)
        exchange.form = parse_form(await request.read(), request.content_type)
        fault = self.picker.for_purchase()
        if fault is not None:
            exchange.fault = fault.name
            if not fault.commits:
                return _fault_response(exchange, fault)
        try:
            form = validate_form(exchange.form, mobile=mobile)
            resource = self._commit(account_sid, exchange, form, fault, mobile=mobile)
            response = _json_response(exchange, 201, for_response(resource, mobile=mobile))
        except ApiError as error:
            if fault is None:
                raise
            # The request was processed (and refused): its answer meets the fault all the same.
            response = _error_response(exchange, error)
        if fault is None:
            return response
        return await self._after_commit(exchange, fault, response)

    def _commit(
        self,
        account_sid: str,
        exchange: _Exchange,
        form: ValidForm,
        fault: Fault | None,
        *,
        mobile: bool,
    ) -> dict[str, Any]:
        def make(number: str) -> dict[str, Any]:
            return build_resource(
                sid=self._number_sids.sid("PN"),
                account_sid=account_sid,
                phone_number=number,
                values=form.values,
                mobile=mobile,
                created=time.time(),
            )

        resource = self.inventory.buy(account_sid, form, make)
        self.purchases.append(
            PurchaseRecord(
                sid=resource["sid"],
                phone_number=resource["phone_number"],
                account_sid=account_sid,
                endpoint=MOBILE_ENDPOINT if mobile else GENERIC_ENDPOINT,
                form=dict(exchange.form),
                friendly_name=resource["friendly_name"],
                request_id=exchange.request_id,
                fault=fault.name if fault is not None else None,
            )
        )
        return resource

    async def _after_commit(
        self, exchange: _Exchange, fault: Fault, response: web.Response
    ) -> web.StreamResponse:
        if fault.name == "error_after_commit":
            return _server_error(exchange, fault.status or 500)
        if fault.name == "slow_after_commit" and await self.pauses.sleep(fault.seconds or 0.0):
            return response
        raise _Dropped  # drop_after_commit, or a slow answer cut short by stop()

    async def _list(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        account_sid = self._authorize(request)
        fault = self.picker.for_list()
        if fault is not None:
            exchange.fault = fault.name
            return _fault_response(exchange, fault)
        page = list_page(self.inventory.holdings(account_sid), exchange.query, request.path)
        return _json_response(exchange, 200, page)

    async def _unknown(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        for pattern, allowed in _KNOWN_PATHS.items():
            if pattern.fullmatch(request.path):
                raise ApiError(405, 20004, "Method not allowed", headers={"Allow": allowed})
        raise not_found(request.path)


# --- answers -------------------------------------------------------------------------------


def _headers(exchange: _Exchange, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"Twilio-Request-Id": exchange.request_id}
    if extra:
        headers.update(extra)
    return headers


def _json_response(exchange: _Exchange, status: int, payload: Any) -> web.Response:
    exchange.status = status
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=_headers(exchange),
    )


def _error_response(exchange: _Exchange, error: ApiError) -> web.Response:
    exchange.status = error.status
    return web.Response(
        status=error.status,
        body=error.body(),
        content_type="application/json",
        charset="utf-8",
        headers=_headers(exchange, error.headers),
    )


def _server_error(exchange: _Exchange, status: int) -> web.Response:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Server Error"
    if status not in _HTML_STATUSES:
        return _error_response(exchange, ApiError(status, 20500, phrase))
    exchange.status = status
    return web.Response(
        status=status,
        text=_HTML_PAGE.format(status=status, phrase=phrase),
        content_type="text/html",
        headers=_headers(exchange),
    )


def _fault_response(exchange: _Exchange, fault: Fault) -> web.Response:
    """The answer to a fault that comes before the purchase: nothing is bought."""
    if fault.name == "rate_limited":
        return _error_response(exchange, rate_limited(fault.retry_after))
    if fault.name == "server_error":
        return _server_error(exchange, fault.status or 500)
    raise _Dropped  # drop_before_commit
