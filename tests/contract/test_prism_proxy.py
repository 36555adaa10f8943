"""The sandbox's answers against the spec: sandbox → ``prism proxy --errors`` → client.

Purchases and look-ups go through the library's client; searches, fetches and releases as raw
HTTP (``tests.sandbox._http.Api``), so that the sandbox is held to the spec on its own.

Prism checks each request on its way in (422 if it breaks the spec) and each answer on its way
out: one that breaks the spec becomes a 500 with Prism's ``validation`` list, which fails the
test naming the complaint (:class:`~tests.contract.PrismWatch`). Twilio's own formats, which
Prism ignores, are checked on every 2xx body with :func:`tests._spec.check_formats`.

Error answers (400 with Twilio's error body, 401, 429, 5xx) are not in the spec, which declares
only 201 (200 for the list): Prism passes them on as they are, with a *warning* in
``sl-violations`` ("Unable to match the returned status code"), not an error, so ``--errors``
leaves them alone. They are checked here against Twilio's error body instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web

from tests._spec import (
    check_formats,
    full_request,
    response_schema,
    search_response_schema,
    validate,
)
from tests.contract import PrismProxy, PrismWatch
from tests.integration.sandbox._http import Api
from twilio_numbers_async import (
    AuthenticationError,
    IncomingPhoneNumber,
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseOutcomeUnknownError,
    RetryPolicy,
    TwilioApiError,
    TwilioNumbersClient,
)
from twilio_numbers_async._purchase import AreaCodes
from twilio_numbers_async.models import PurchaseRequest
from twilio_numbers_async.sandbox import Fault, Sandbox

pytestmark = pytest.mark.contract

TWILIO_ERROR_KEYS = {"code", "message", "more_info", "status"}


@attrs.define
class Proxied:
    """A sandbox behind Prism, a client of Prism, and Prism's verdicts."""

    sandbox: Sandbox
    client: TwilioNumbersClient
    watch: PrismWatch

    async def buy(self, request: PurchaseRequest) -> IncomingPhoneNumber:
        try:
            number = await self.client.purchase(request)
        except Exception:
            self.watch.check()  # Prism's complaint, if it has one, is the real failure
            raise
        self.check()
        return number

    def check(self) -> None:
        """Prism found nothing wrong, and every 2xx body keeps Twilio's own formats."""
        self.watch.check()
        for exchange in self.watch.exchanges:
            if 200 <= exchange.status < 300 and exchange.method == "POST":
                mobile = exchange.url.endswith("/Mobile.json")
                validate(exchange.body, response_schema(mobile))  # what Prism checked, again
                check_formats(exchange.body)
            elif 200 <= exchange.status < 300:
                # A list of the account's numbers, or a search's numbers for sale.
                listed = exchange.body.get("incoming_phone_numbers")
                for number in listed if listed is not None else []:
                    check_formats(number)

    def last(self) -> Any:
        return self.watch.exchanges[-1]


@contextlib.asynccontextmanager
async def proxied(
    proxy: PrismProxy, *, retry: RetryPolicy | None = None, area_codes: AreaCodes = "search"
) -> AsyncIterator[Proxied]:
    watch = PrismWatch()
    async with (
        Sandbox(port=proxy.upstream_port) as sandbox,
        watch.session() as session,
        TwilioNumbersClient(
            sandbox.account_sid,
            sandbox.auth_token,
            base_url=proxy.url,
            rate_limit=None,
            retry=retry or RetryPolicy.no_retries(),
            session=session,
            area_codes=area_codes,
        ) as client,
    ):
        yield Proxied(sandbox, client, watch)


def sent_fields(request: PurchaseRequest) -> dict[str, Any]:
    return {name: value for name, value in attrs.asdict(request).items() if value is not None}


# --- purchases -------------------------------------------------------------------------------


@pytest.mark.parametrize("area_codes", ["search", "direct"])
async def test_purchases_and_lookups_keep_the_spec(
    prism_proxy: PrismProxy, area_codes: AreaCodes
) -> None:
    requests: list[PurchaseRequest] = [
        NumberPurchase(phone_number="+15005550006"),
        attrs.evolve(full_request(mobile=False), phone_number="+14155550100"),
        NumberPurchase(area_code="500"),
        NumberPurchase(area_code="415", friendly_name="sales"),
        NumberPurchase(area_code="800"),
        # Every field; through a search its implied capabilities (fax, from its receive mode)
        # must be the magic number's, which can't receive a fax.
        attrs.evolve(full_request(mobile=False, by="area_code"), voice_receive_mode="voice"),
        MobileNumberPurchase(phone_number="+447700900123"),
        attrs.evolve(full_request(mobile=True), phone_number="+447700900124"),
    ]
    async with proxied(prism_proxy, area_codes=area_codes) as run:
        bought = []
        for request in requests:
            number = await run.buy(request)
            bought.append(number)
            # The sandbox echoes what was sent: the client's form arrived whole, through Prism.
            for name, value in sent_fields(request).items():
                if name != "area_code":
                    assert getattr(number, name) == value, (request, name)
            if isinstance(request, NumberPurchase) and request.area_code is not None:
                assert number.phone_number is not None
                assert number.phone_number.startswith(f"+1{request.area_code}")
        assert len(run.sandbox.purchases) == len(requests)
        # +15005550006 sells any number of times (area code 500 buys it too): one resource each.
        sids: dict[str, set[str | None]] = {}
        for number in bought:
            assert number.phone_number is not None
            sids.setdefault(number.phone_number, set()).add(number.sid)
        for phone_number, sold in sids.items():
            found = await run.client.find_incoming_phone_number(phone_number)
            assert found is not None
            assert found.sid in sold
        assert await run.client.find_incoming_phone_number("+14155550199") is None
        run.check()
        assert {exchange.status for exchange in run.watch.exchanges} <= {200, 201}


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (NumberPurchase(phone_number="+15005550000"), 21422),
        (MobileNumberPurchase(phone_number="+15005550000"), 21422),
        (NumberPurchase(phone_number="+15005550001"), 21421),
        (NumberPurchase(area_code="533"), 21452),
    ],
    ids=["unavailable", "unavailable-mobile", "invalid", "no-stock"],
)
async def test_twilio_errors_pass_through(
    prism_proxy: PrismProxy, request_: PurchaseRequest, code: int
) -> None:
    # "direct": the area code goes to Twilio as it is, so that Twilio's own 21452 comes back
    # (through a search, the client finds no candidate and says 21452 itself, sending nothing).
    async with proxied(prism_proxy, area_codes="direct") as run:
        with pytest.raises(TwilioApiError) as caught:
            await run.buy(request_)
        assert_twilio_error(run, caught.value, status=400, code=code)
        assert run.sandbox.purchases == []


async def test_a_number_sold_once_then_21422(prism_proxy: PrismProxy) -> None:
    async with proxied(prism_proxy) as run:
        await run.buy(NumberPurchase(phone_number="+14155550100"))
        with pytest.raises(TwilioApiError) as caught:
            await run.buy(MobileNumberPurchase(phone_number="+14155550100"))
        assert_twilio_error(run, caught.value, status=400, code=21422)


async def test_wrong_credentials(prism_proxy: PrismProxy) -> None:
    async with (
        proxied(prism_proxy) as run,
        run.watch.session() as session,
        TwilioNumbersClient(
            run.sandbox.account_sid,
            "wrong-token",
            base_url=prism_proxy.url,
            rate_limit=None,
            retry=RetryPolicy.no_retries(),
            session=session,
        ) as client,
    ):
        with pytest.raises(AuthenticationError) as caught:
            await client.purchase(NumberPurchase(area_code="500"))
        assert_twilio_error(run, caught.value, status=401, code=20003)


async def test_faults_pass_through_and_are_survived(prism_proxy: PrismProxy) -> None:
    # A 429 and a 503 (a load balancer's HTML page) after the purchase: Prism passes both on as
    # they are, and the client retries, then reconciles through the list, buying once.
    no_wait = RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0)
    async with proxied(prism_proxy, retry=no_wait) as run:
        run.sandbox.script(Fault.rate_limited(retry_after=0), Fault.error_after_commit(503))
        number = await run.buy(NumberPurchase(phone_number="+14155550100"))
        assert [exchange.status for exchange in run.watch.exchanges] == [429, 503, 200]
        assert number.phone_number == "+14155550100"
        assert len(run.sandbox.purchases) == 1
        for exchange in run.watch.exchanges[:2]:
            assert_only_undeclared_status_warning(exchange)


def assert_twilio_error(run: Proxied, error: TwilioApiError, *, status: int, code: int) -> None:
    run.watch.check()
    exchange = run.last()
    assert exchange.status == status
    assert_only_undeclared_status_warning(exchange)
    assert set(exchange.body) >= TWILIO_ERROR_KEYS, exchange.body
    assert exchange.body["code"] == code
    assert exchange.body["status"] == status
    assert (error.status, error.code) == (status, code)
    assert error.more_info == f"https://www.twilio.com/docs/errors/{code}"
    assert error.message


def assert_only_undeclared_status_warning(exchange: Any) -> None:
    assert [(v["severity"], v["message"].split(":")[0]) for v in exchange.violations] == [
        ("Warning", "Unable to match the returned status code with those defined in the document")
    ], exchange.violations


# --- the harness sees a breach -----------------------------------------------------------------


async def test_an_answer_that_breaks_the_spec_fails_naming_prisms_complaint(
    prism_proxy: PrismProxy,
) -> None:
    # Not the sandbox: a server that answers a purchase with a broken resource. Prism must turn
    # it into a 500 and PrismWatch must name the property, or the tests above prove nothing.
    async def broken(request: web.Request) -> web.Response:
        del request
        return web.json_response({"sid": "PN123", "beta": "yes"}, status=201)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", prism_proxy.upstream_port).start()
        watch = PrismWatch()
        async with (
            watch.session() as session,
            TwilioNumbersClient(
                "AC" + "0" * 32,
                "token",
                base_url=prism_proxy.url,
                rate_limit=None,
                retry=RetryPolicy.no_retries(),
                session=session,
                area_codes="direct",  # straight to the broken purchase answer
            ) as client,
        ):
            with pytest.raises(PurchaseOutcomeUnknownError):
                await client.purchase(NumberPurchase(area_code="500"))
    finally:
        await runner.cleanup()
    assert watch.exchanges[0].status == 500
    with pytest.raises(AssertionError) as caught:
        watch.check()
    message = str(caught.value)
    assert "response.body.sid" in message
    assert "pattern" in message
    assert "response.body.beta" in message


async def test_an_upstream_that_is_down_fails_naming_it(prism_proxy: PrismProxy) -> None:
    watch = PrismWatch()
    async with (
        watch.session() as session,
        TwilioNumbersClient(
            "AC" + "0" * 32,
            "token",
            base_url=prism_proxy.url,
            rate_limit=None,
            retry=RetryPolicy.no_retries(),
            session=session,
            area_codes="direct",  # a POST, whose fate the dead upstream leaves unknown
        ) as client,
    ):
        with pytest.raises(PurchaseOutcomeUnknownError):
            await client.purchase(NumberPurchase(area_code="500"))
    with pytest.raises(AssertionError, match="ECONNREFUSED"):
        watch.check()


# --- searches, fetches and releases -------------------------------------------------------------


async def test_searches_fetches_and_releases_keep_the_spec(prism_proxy: PrismProxy) -> None:
    watch = PrismWatch()
    async with (
        Sandbox(port=prism_proxy.upstream_port, area_code_stock=10) as sandbox,
        watch.session() as session,
    ):
        api = Api(sandbox, session, url=prism_proxy.url)
        searches = [
            ("US", "Local", {"AreaCode": "415", "PageSize": "4"}),
            ("US", "Local", {"AreaCode": "415", "SmsEnabled": "true", "Contains": "555"}),
            ("US", "Local", {"AreaCode": "604"}),  # Canada's: none in the US
            ("CA", "Local", {"AreaCode": "604", "VoiceEnabled": "false"}),
            ("US", "TollFree", {"AreaCode": "888", "MmsEnabled": "true", "FaxEnabled": "false"}),
            ("GB", "Mobile", {"PageSize": "3"}),
            ("GB", "Local", {"Beta": "false"}),
        ]
        for country, kind, params in searches:
            answer = await api.search(params, country=country, kind=kind)
            assert answer.status == 200, answer.text
            check_search(answer.body, kind)
        page = (await api.search({"AreaCode": "415", "PageSize": "4"})).body
        for link in ("next_page_uri", "previous_page_uri"):
            page = (await api.request("GET", prism_proxy.url + page[link])).body
            check_search(page, "Local")
        number = page["available_phone_numbers"][0]["phone_number"]
        bought = await api.buy({"PhoneNumber": number})
        assert bought.status == 201
        fetched = await api.fetch(bought.body["sid"])
        assert fetched.status == 200
        check_formats(fetched.body)
        assert (await api.release(bought.body["sid"])).status == 204
        for gone in (await api.fetch(bought.body["sid"]), await api.release(bought.body["sid"])):
            assert (gone.status, gone.body["code"]) == (404, 20404)
        watch.check()
    statuses = [exchange.status for exchange in watch.exchanges]
    assert statuses == [200] * 10 + [201, 200, 204, 404, 404]
    for exchange in watch.exchanges[-2:]:
        assert_only_undeclared_status_warning(exchange)


def check_search(body: Any, kind: str) -> None:
    """What Prism checked, again (exactly: every property), and Twilio's own formats."""
    validate(body, search_response_schema(kind))
    for number in body["available_phone_numbers"]:
        check_formats({"phone_number": number["phone_number"]})
