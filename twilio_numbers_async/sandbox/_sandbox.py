"""The :class:`Sandbox`: a fake Twilio on loopback, started and stopped as a context manager."""

from __future__ import annotations

import asyncio
import enum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from ._accounts import Accounts
from ._app import SandboxApp
from ._faults import Endpoint, Fault, FaultPicker, Faults
from ._ids import IdSource
from ._inventory import Inventory
from ._limits import Limits, check_max_concurrency, check_rate_limit
from ._pauses import Pauses
from ._records import PurchaseRecord, ReleaseRecord, RequestRecord

if TYPE_CHECKING:
    from twilio_numbers_async.client import TwilioNumbersClient

__all__ = ["Sandbox"]

# stop() ends the sandbox's own delays at once; this only bounds a handler stuck on a client
# that never finishes sending its body.
_SHUTDOWN_TIMEOUT: Final = 1.0
_UNSPECIFIED_HOSTS: Final = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


class _Unchanged(enum.Enum):
    """The default of :meth:`Sandbox.set_limits`: leave that limit as it is."""

    UNCHANGED = enum.auto()


_UNCHANGED: Final = _Unchanged.UNCHANGED


class Sandbox:
    """A fake Twilio on loopback that behaves like the real one for buying numbers.

    ``async with Sandbox() as sandbox:`` serves ``sandbox.url`` until the block ends; point a
    client at it with :meth:`client`. It authenticates like Twilio (the account SID and auth
    token, or an API key from :meth:`add_api_key`, on the account and its subaccounts), checks
    forms against Twilio's spec, sells each number once until it is released, answers
    ``AvailablePhoneNumbers`` searches with numbers nobody owns, knows Twilio's test-credential
    magic numbers, and injects faults when asked: randomly (``faults``) or one by one
    (:meth:`script`). Everything random comes from ``seed``: the same seed and the same
    requests give the same SIDs, numbers and faults, in whatever order the requests come.
    :attr:`purchases`, :attr:`releases` and :attr:`requests` record what happened, for tests
    to check a client against.

    The account's limits, like Twilio's, answer 429 (code 20429): ``max_concurrency`` refuses
    a request beyond that many in flight, at once and without ``Retry-After``; ``rate_limit``
    refuses one beyond that many per second (a token bucket of one second's worth on the
    server's clock), with a ``Retry-After`` in (fractional) seconds. Both count every request the
    sandbox serves, on the main account and its subaccounts alike. Change them while running
    with :meth:`set_limits`. Every answer says how many requests were in flight in its
    ``Twilio-Concurrent-Requests`` header. ``area_code_stock`` is how many numbers each area
    code (and each other block of numbers) has for sale.
    """

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        max_concurrency: int | None = None,
        rate_limit: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        area_code_stock: int = 1000,
    ) -> None:
        _check_int("seed", seed, low=None)
        limits = Limits(
            max_concurrency=check_max_concurrency(max_concurrency),
            rate_limit=check_rate_limit(rate_limit),
        )
        _check_int("port", port, low=0, high=65535)
        _check_faults(faults)
        # Both defaults are always drawn, so that passing one does not change the other.
        ids = IdSource(seed, "accounts")
        default_sid, default_token = ids.sid("AC"), ids.hex32()
        self._accounts = Accounts(
            account_sid=default_sid if account_sid is None else account_sid,
            auth_token=default_token if auth_token is None else auth_token,
            ids=ids,
        )
        self._app = SandboxApp(
            accounts=self._accounts,
            inventory=Inventory(area_code_stock=area_code_stock, seed=seed),
            picker=FaultPicker(faults, seed),
            limits=limits,
            seed=seed,
        )
        self._seed = seed
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    def __repr__(self) -> str:
        where = self._url or "not running"
        return (
            f"{type(self).__name__}(url={where!r}, account_sid={self.account_sid!r}, "
            f"seed={self._seed!r}, faults={self.faults!r})"
        )

    # --- life cycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start serving on ``host:port`` (port 0: a free one, see :attr:`url`)."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        self._app.pauses = Pauses()  # a fresh one: the last stop() interrupted the old
        runner = web.AppRunner(
            self._app.web_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            port = runner.addresses[0][1]
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._url = f"http://{_url_host(self._host)}:{port}"

    async def stop(self) -> None:
        """Stop serving and close every connection; answers still delayed are dropped.

        Safe to call twice, or before :meth:`start`. The state (numbers, records) is kept.
        """
        runner, self._runner, self._url = self._runner, None, None
        if runner is None:
            return
        self._app.pauses.interrupt()
        await runner.cleanup()

    @property
    def running(self) -> bool:
        """Whether the sandbox is serving."""
        return self._runner is not None

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``; ``RuntimeError`` when not running."""
        if self._url is None:
            raise RuntimeError(
                "the sandbox is not running: use `async with Sandbox() as sandbox` "
                "or `await sandbox.start()`"
            )
        return self._url

    # --- accounts -------------------------------------------------------------------------

    @property
    def account_sid(self) -> str:
        """The main account's SID."""
        return self._accounts.main

    @property
    def auth_token(self) -> str:
        """The main account's auth token (fake, and never shown in a repr)."""
        return self._accounts.secret(self._accounts.main)

    @property
    def subaccounts(self) -> list[str]:
        """The subaccounts added with :meth:`add_subaccount`, in order."""
        return self._accounts.subaccounts

    def add_subaccount(self) -> str:
        """A new subaccount that the main credentials may act on; returns its ``AC...`` SID."""
        return self._accounts.add_subaccount()

    def rotate_auth_token(self) -> str:
        """Give the main account a new auth token; the old one is refused from now on (401).

        For testing what a program does when its credentials stop working mid-run.
        """
        return self._accounts.rotate_auth_token()

    def add_api_key(self) -> tuple[str, str]:
        """A new API key: ``(SK sid, secret)``, accepted as Basic auth for the main account
        and its subaccounts."""
        return self._accounts.add_api_key()

    def client(self, **kwargs: Any) -> TwilioNumbersClient:
        """A :class:`TwilioNumbersClient` for this sandbox's main account.

        ``kwargs`` go to the client (``timeout``, ``retry``...); with ``api_key`` and
        ``api_secret`` it authenticates with those instead of the auth token.
        """
        # Imported here: the library never imports its sandbox, and the sandbox needs the
        # client only when asked for one.
        from twilio_numbers_async.client import TwilioNumbersClient  # noqa: PLC0415

        if "api_key" in kwargs or "api_secret" in kwargs:
            return TwilioNumbersClient(self.account_sid, base_url=self.url, **kwargs)
        return TwilioNumbersClient(self.account_sid, self.auth_token, base_url=self.url, **kwargs)

    # --- limits ---------------------------------------------------------------------------

    @property
    def max_concurrency(self) -> int | None:
        """Requests in flight beyond which the account answers 429 at once (``None``: no limit)."""
        return self._app.limits.max_concurrency

    @property
    def rate_limit(self) -> float | None:
        """Requests per second beyond which the account answers 429 (``None``: no limit)."""
        return self._app.limits.rate_limit

    @property
    def in_flight(self) -> int:
        """The requests being answered right now."""
        return self._app.limits.in_flight

    def set_limits(
        self,
        *,
        max_concurrency: int | _Unchanged | None = _UNCHANGED,
        rate_limit: float | _Unchanged | None = _UNCHANGED,
    ) -> None:
        """Change the account's limits, now, while it serves; ``None`` lifts a limit.

        A limit not named stays as it is. Requests already in flight go on: lowered from 30
        to 10, the concurrency limit refuses every new request until fewer than 10 are left.
        A new rate starts from the tokens saved at the old one (at most a second's worth), a
        first rate with a full bucket. Call it from the event loop the sandbox serves in (a
        task or a callback of it): like the sandbox, the limits are not thread-safe.
        """
        limits = self._app.limits
        concurrency = (
            limits.max_concurrency
            if max_concurrency is _UNCHANGED
            else check_max_concurrency(max_concurrency)
        )
        rate = limits.rate_limit if rate_limit is _UNCHANGED else check_rate_limit(rate_limit)
        limits.change(
            max_concurrency=concurrency,
            rate_limit=rate,
            now=asyncio.get_running_loop().time() if self.running else None,
        )

    # --- faults ---------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The random faults in force; settable while running (each request's fate, drawn
        from the seed and the request, is read against the new probabilities)."""
        return self._app.picker.faults

    @faults.setter
    def faults(self, faults: Faults | None) -> None:
        _check_faults(faults)
        self._app.picker.faults = faults or Faults()

    def script(self, *faults: Fault, on: Endpoint = "purchase") -> None:
        """Apply each fault to the next request to one endpoint, one each, in order (before
        random faults).

        ``on`` is ``"purchase"`` (the POSTs, both endpoints), ``"release"`` (a ``DELETE``),
        ``"fetch"`` (a ``GET`` of one number), ``"list"`` (the GET list) or ``"search"``
        (``AvailablePhoneNumbers``); each has its own queue. A fault goes to the next such
        request that is authenticated and on a known account; a ``*_after_commit`` fault hits
        the answer even if the request was refused (a 400, a 404): on a read, it hits the
        answer the read produced.
        """
        self._app.picker.script(faults, on)

    # --- what happened --------------------------------------------------------------------

    def owned(self, account_sid: str | None = None) -> dict[str, dict[str, Any]]:
        """Number → resource JSON of every number ``account_sid`` (default: main) holds.

        Resources are as the GET list shows them (with ``type``, ``"mobile"`` for numbers
        bought on the Mobile endpoint); for ``+15005550006``, bought any number of times, the
        latest. A released number is gone from it. A copy: changing it changes nothing in the
        sandbox.
        """
        account = self.account_sid if account_sid is None else account_sid
        if not self._accounts.may_act_on(account):
            raise ValueError(f"{account!r} is neither the main account nor one of its subaccounts")
        return {
            number: {**resource, "capabilities": dict(resource["capabilities"])}
            for number, resource in self._app.inventory.owned(account).items()
        }

    @property
    def purchases(self) -> list[PurchaseRecord]:
        """Every committed purchase, in commit order (a copy). A number released and sold
        again appears twice."""
        return list(self._app.purchases)

    @property
    def releases(self) -> list[ReleaseRecord]:
        """Every committed release (a ``DELETE`` that removed a number), in order (a copy)."""
        return list(self._app.releases)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request seen, in arrival order (a snapshot)."""
        return [exchange.record() for exchange in self._app.exchanges]


def _check_int(name: str, value: object, *, low: int | None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise ValueError(f"{name} must be {bounds}, not {value}")


def _check_faults(faults: object) -> None:
    if faults is not None and not isinstance(faults, Faults):
        raise TypeError(f"faults must be a Faults or None, not {type(faults).__name__}")


def _url_host(host: str) -> str:
    # Served on every interface, the sandbox is reached through loopback; that is also the
    # only plain-http host the client accepts.
    host = _UNSPECIFIED_HOSTS.get(host, host)
    return f"[{host}]" if ":" in host else host
