"""The aiohttp application: routes, authentication, limits, faults, records, Twilio's answers.

Each request goes through :meth:`SandboxApp._dispatch`: it gets a ``Twilio-Request-Id`` and a
record, is refused with 429 if it is beyond the account's limits, draws its fate, waits out its
latency, and then meets its handler. Handlers raise :class:`ApiError` for Twilio's error
answers and :class:`Dropped` to close the connection without one. Nothing here awaits between
choosing a number and recording its purchase or release, so concurrent requests can't buy a
number twice.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from ._accounts import Accounts
from ._answers import (
    Dropped,
    Exchange,
    empty_response,
    error_response,
    fault_response,
    json_response,
    server_error,
)
from ._catalog import capabilities
from ._errors import ApiError, not_found
from ._faults import Endpoint, Fault, FaultPicker
from ._form import ValidForm, parse_form, validate_form
from ._ids import IdSource
from ._inventory import Inventory
from ._limits import Limits
from ._listing import list_page
from ._pauses import Pauses
from ._records import PurchaseRecord, ReleaseRecord
from ._resource import API_VERSION, build_resource, for_response
from ._search import KINDS, search_page

__all__ = ["GENERIC_ENDPOINT", "MOBILE_ENDPOINT", "SandboxApp"]

_BASE: Final = f"/{API_VERSION}/Accounts/{{AccountSid}}"
GENERIC_ENDPOINT: Final = "IncomingPhoneNumbers.json"
MOBILE_ENDPOINT: Final = "IncomingPhoneNumbers/Mobile.json"
_NUMBER: Final = "IncomingPhoneNumbers/{Sid}.json"
_SEARCH: Final = "AvailablePhoneNumbers/{CountryCode}/{Kind}.json"
_ACCOUNT: Final = rf"/{API_VERSION}/Accounts/[^/]+"
_KNOWN_PATHS: Final = {
    re.compile(rf"{_ACCOUNT}/IncomingPhoneNumbers\.json"): "GET, POST",
    re.compile(rf"{_ACCOUNT}/IncomingPhoneNumbers/Mobile\.json"): "POST",
    re.compile(rf"{_ACCOUNT}/IncomingPhoneNumbers/PN[0-9a-fA-F]{{32}}\.json"): "GET, DELETE",
    re.compile(
        rf"{_ACCOUNT}/AvailablePhoneNumbers/[A-Z]{{2}}/(Local|Mobile|TollFree)\.json"
    ): "GET",
}
_PN_SID: Final = re.compile(r"PN[0-9a-fA-F]{32}")
_COUNTRY: Final = re.compile(r"[A-Z]{2}")
_UNAUTHORIZED_HEADERS: Final = {"WWW-Authenticate": 'Basic realm="Twilio API"'}

Handler = Callable[[web.Request, Exchange], Awaitable[web.StreamResponse]]


class SandboxApp:
    """The sandbox's state, and the aiohttp application that serves it."""

    def __init__(
        self,
        *,
        accounts: Accounts,
        inventory: Inventory,
        picker: FaultPicker,
        limits: Limits,
        seed: int,
    ) -> None:
        self.accounts = accounts
        self.inventory = inventory
        self.picker = picker
        self.limits = limits
        self.purchases: list[PurchaseRecord] = []
        self.releases: list[ReleaseRecord] = []
        self.exchanges: list[Exchange] = []
        self.pauses = Pauses()
        self._seed = seed
        self._number_sids = IdSource(seed, "numbers")
        self._request_ids = IdSource(seed, "requests")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(requests={len(self.exchanges)}, "
            f"purchases={len(self.purchases)}, releases={len(self.releases)}, "
            f"in_flight={self.limits.in_flight})"
        )

    def web_app(self) -> web.Application:
        """A new aiohttp application on this state (one per start: a runner freezes its app)."""
        app = web.Application()
        routes = (
            ("POST", f"{_BASE}/{GENERIC_ENDPOINT}", self._buy_generic),
            ("POST", f"{_BASE}/{MOBILE_ENDPOINT}", self._buy_mobile),
            ("GET", f"{_BASE}/{GENERIC_ENDPOINT}", self._list),
            ("GET", f"{_BASE}/{_NUMBER}", self._fetch),
            ("DELETE", f"{_BASE}/{_NUMBER}", self._release),
            ("GET", f"{_BASE}/{_SEARCH}", self._search),
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
        now = loop.time()
        refusal = self.limits.arrive(now)
        exchange = Exchange(
            method=request.method,
            path=request.path,
            request_id=self._request_ids.sid("RQ"),
            started_at=now,
            account_sid=request.match_info.get("AccountSid"),
            query=dict(request.query),
            concurrent=self.limits.in_flight,
        )
        self.exchanges.append(exchange)
        try:
            if refusal is not None:
                return error_response(exchange, refusal)
            return await self._answer(request, exchange, handler)
        finally:
            self.limits.leave()
            exchange.finished_at = loop.time()

    async def _answer(
        self, request: web.Request, exchange: Exchange, handler: Handler
    ) -> web.StreamResponse:
        try:
            # Only a request the limits let in has a fate: a refusal depends on timing, and
            # must not shift the fates of the requests that come after it.
            body = await request.read()
            fate = self.picker.fate(request.method, request.path, request.query.items(), body)
            exchange.fate = fate
            if not await self.pauses.sleep(self.picker.latency(fate)):
                raise Dropped
            return await handler(request, exchange)
        except ApiError as error:
            return error_response(exchange, error)
        except web.HTTPException as error:  # aiohttp's own, e.g. 413 for a huge body
            code = 20001 if error.status < 500 else 20500
            return error_response(exchange, ApiError(error.status, code, error.reason))
        except Dropped:
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

    def _fault(self, exchange: Exchange, endpoint: Endpoint) -> Fault | None:
        if exchange.fate is None:  # _answer draws every fate before a handler runs
            raise RuntimeError("a request meets its handler before its fate was drawn")
        fault = self.picker.pick(endpoint, exchange.fate)
        if fault is not None:
            exchange.fault = fault.name
        return fault

    async def _faulted(
        self, exchange: Exchange, fault: Fault | None, process: Callable[[], web.Response]
    ) -> web.StreamResponse:
        """``process()``'s answer, as ``fault`` lets it through.

        A fault before the commit answers instead, and nothing is processed; one after it
        hits the answer, a refusal (``ApiError``) included.
        """
        if fault is not None and not fault.commits:
            return fault_response(exchange, fault)
        try:
            response = process()
        except ApiError as error:
            if fault is None:
                raise
            response = error_response(exchange, error)
        if fault is None:
            return response
        if fault.name == "error_after_commit":
            return server_error(exchange, fault.status or 500)
        if fault.name == "slow_after_commit" and await self.pauses.sleep(fault.seconds or 0.0):
            return response
        raise Dropped  # drop_after_commit, or a slow answer cut short by stop()

    # --- purchases ------------------------------------------------------------------------

    async def _buy_generic(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return await self._buy(request, exchange, mobile=False)

    async def _buy_mobile(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        return await self._buy(request, exchange, mobile=True)

    async def _buy(
        self, request: web.Request, exchange: Exchange, *, mobile: bool
    ) -> web.StreamResponse:
        account_sid = self._authorize(request)
        exchange.form = parse_form(await request.read(), request.content_type)
        fault = self._fault(exchange, "purchase")

        def process() -> web.Response:
            form = validate_form(exchange.form, mobile=mobile)
            resource = self._commit(account_sid, exchange, form, fault, mobile=mobile)
            return json_response(exchange, 201, for_response(resource, mobile=mobile))

        return await self._faulted(exchange, fault, process)

    def _commit(
        self,
        account_sid: str,
        exchange: Exchange,
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
                capabilities=capabilities(number, self._seed),
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

    # --- reads ----------------------------------------------------------------------------

    async def _list(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        account_sid = self._authorize(request)
        fault = self._fault(exchange, "list")

        def process() -> web.Response:
            holdings = self.inventory.holdings(account_sid)
            return json_response(exchange, 200, list_page(holdings, exchange.query, request.path))

        return await self._faulted(exchange, fault, process)

    async def _fetch(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        sid = request.match_info["Sid"]
        if _PN_SID.fullmatch(sid) is None:
            return await self._unknown(request, exchange)
        account_sid = self._authorize(request)
        fault = self._fault(exchange, "fetch")

        def process() -> web.Response:
            resource = self.inventory.holdings(account_sid).get(sid)
            if resource is None:
                raise not_found(request.path)
            return json_response(exchange, 200, resource)

        return await self._faulted(exchange, fault, process)

    async def _search(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        country, kind = request.match_info["CountryCode"], KINDS.get(request.match_info["Kind"])
        if kind is None or _COUNTRY.fullmatch(country) is None:
            return await self._unknown(request, exchange)
        self._authorize(request)
        fault = self._fault(exchange, "search")

        def process() -> web.Response:
            page = search_page(
                self.inventory,
                country=country,
                kind=kind,
                query=exchange.query,
                path=request.path,
                seed=self._seed,
            )
            return json_response(exchange, 200, page)

        return await self._faulted(exchange, fault, process)

    # --- releases -------------------------------------------------------------------------

    async def _release(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        sid = request.match_info["Sid"]
        if _PN_SID.fullmatch(sid) is None:
            return await self._unknown(request, exchange)
        account_sid = self._authorize(request)
        fault = self._fault(exchange, "release")

        def process() -> web.Response:
            resource = self.inventory.release(account_sid, sid)
            if resource is None:  # unknown, another account's, or released already
                raise not_found(request.path)
            self.releases.append(
                ReleaseRecord(
                    sid=sid,
                    phone_number=resource["phone_number"],
                    account_sid=account_sid,
                    request_id=exchange.request_id,
                    fault=fault.name if fault is not None else None,
                )
            )
            return empty_response(exchange, 204)

        return await self._faulted(exchange, fault, process)

    async def _unknown(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
        del exchange  # answered by raising
        for pattern, allowed in _KNOWN_PATHS.items():
            if pattern.fullmatch(request.path):
                raise ApiError(405, 20004, "Method not allowed", headers={"Allow": allowed})
        raise not_found(request.path)
