"""The account's limits: requests in flight and requests per second, changeable while serving,
and ``Twilio-Concurrent-Requests`` on every answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from twilio_numbers_async.sandbox import Fault, Faults, Sandbox
from twilio_numbers_async.sandbox._limits import Limits

from ._http import Api, assert_error

# --- the bucket, on a clock the test moves ------------------------------------------------------


def test_concurrency_refuses_beyond_the_limit_without_retry_after() -> None:
    limits = Limits(max_concurrency=2, rate_limit=None)
    assert limits.arrive(0.0) is None
    assert limits.arrive(0.0) is None
    refusal = limits.arrive(0.0)
    assert refusal is not None
    assert (refusal.status, refusal.code, refusal.headers) == (429, 20429, {})
    assert limits.in_flight == 3  # counted until it leaves, like any answer
    limits.leave()
    limits.leave()
    assert limits.arrive(0.0) is None


def test_a_rate_holds_a_seconds_worth_and_says_when_the_next_token_comes() -> None:
    limits = Limits(max_concurrency=None, rate_limit=4.0)
    for _ in range(4):  # a full second's worth at once
        assert limits.arrive(10.0) is None
        limits.leave()
    refusal = limits.arrive(10.0)
    limits.leave()
    assert refusal is not None
    assert (refusal.status, refusal.code, refusal.headers) == (429, 20429, {"Retry-After": "0.25"})
    refusal = limits.arrive(10.1)  # refusals took no token: 0.15 s to go
    limits.leave()
    assert refusal is not None
    assert refusal.headers == {"Retry-After": "0.15"}
    assert limits.arrive(10.25) is None
    limits.leave()
    refusal = limits.arrive(10.2501)
    assert refusal is not None
    assert refusal.headers == {"Retry-After": "0.25"}  # 0.2499 s, rounded up to the millisecond


def test_over_any_window_a_rate_admits_at_most_a_second_and_the_rate() -> None:
    limits = Limits(max_concurrency=None, rate_limit=50.0)
    admitted = []
    for tick in range(3000):  # 3 s, a request every millisecond
        now = tick / 1000
        if limits.arrive(now) is None:
            admitted.append(now)
        limits.leave()
    # The full bucket, then 50 a second: the token of t = 3.000 is one tick too late.
    assert len(admitted) == 50 + int(2.999 * 50)
    for start in range(0, 3000, 100):
        window = [t for t in admitted if start / 1000 <= t < start / 1000 + 1]
        assert len(window) <= 50 + 50


def test_changing_limits() -> None:
    limits = Limits(max_concurrency=None, rate_limit=None)
    limits.change(max_concurrency=None, rate_limit=2.0, now=5.0)  # a new rate starts full
    assert limits.arrive(5.0) is None
    assert limits.arrive(5.0) is None
    assert limits.arrive(5.0) is not None
    limits.change(max_concurrency=1, rate_limit=100.0, now=5.5)  # 1 token saved, 100 at most
    assert limits.arrive(5.5) is not None  # 3 in flight: the concurrency limit refuses
    for _ in range(4):
        limits.leave()
    assert limits.arrive(5.5) is None  # the saved token
    limits.leave()
    assert limits.arrive(5.5) is not None  # none earned since
    limits.leave()
    limits.change(max_concurrency=None, rate_limit=None, now=6.0)
    assert all(limits.arrive(6.0) is None for _ in range(1000))


# --- over HTTP ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(**kwargs: object) -> AsyncIterator[Api]:
    async with Sandbox(seed=1, **kwargs) as sandbox, aiohttp.ClientSession() as session:  # type: ignore[arg-type]
        yield Api(sandbox, session)


async def held(api: Api, count: int) -> list[asyncio.Task[object]]:
    """``count`` purchases held in flight (committed, their answers 60 s late) until the
    sandbox stops; returns once the sandbox counts them."""
    api.sandbox.script(*(Fault.slow_after_commit(60) for _ in range(count)))
    tasks: list[asyncio.Task[object]] = [
        asyncio.ensure_future(api.buy({"AreaCode": "415"})) for _ in range(count)
    ]
    for _ in range(2000):  # a handshake with the server, however busy the machine
        if len(api.sandbox.purchases) == count:
            return tasks
        await asyncio.sleep(0.005)
    raise AssertionError(f"{count} purchases never reached the sandbox")


async def release_held(api: Api, tasks: list[asyncio.Task[object]]) -> None:
    await api.sandbox.stop()
    for task in tasks:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await task


async def test_every_answer_says_how_many_requests_were_in_flight() -> None:
    async with served(max_concurrency=2) as api:
        for answer in (
            await api.list(),
            await api.buy({"AreaCode": "41"}),  # a 400
            await api.search(auth="Basic eDp5"),  # a 401
            await api.request("GET", f"{api.sandbox.url}/nowhere"),  # a 404
        ):
            assert answer.headers["Twilio-Concurrent-Requests"] == "1"
        tasks = await held(api, 2)
        assert api.sandbox.in_flight == 2
        refused = await api.list()  # the 3rd in flight, beyond 2
        assert_error(refused, 429, 20429)
        assert refused.headers["Twilio-Concurrent-Requests"] == "3"
        assert "Retry-After" not in refused.headers
        api.sandbox.set_limits(max_concurrency=3)
        answer = await api.list()
        assert (answer.status, answer.headers["Twilio-Concurrent-Requests"]) == (200, "3")
        assert [r.concurrent for r in api.sandbox.requests] == [1, 1, 1, 1, 1, 2, 3, 3]
        await release_held(api, tasks)


async def test_the_concurrency_limit_changes_while_serving() -> None:
    async with served(max_concurrency=2) as api:
        tasks = await held(api, 2)
        assert_error(await api.list(), 429, 20429)
        api.sandbox.set_limits(max_concurrency=3)
        assert api.sandbox.max_concurrency == 3
        assert (await api.list()).status == 200
        api.sandbox.set_limits(max_concurrency=1)  # below what is in flight: those go on
        assert_error(await api.list(), 429, 20429)
        assert api.sandbox.in_flight == 2
        api.sandbox.set_limits(max_concurrency=None)
        assert (await api.list()).status == 200
        await release_held(api, tasks)


async def test_a_rate_limit_answers_429_with_retry_after() -> None:
    async with served(rate_limit=0.001) as api:  # one request, then one every 1000 s
        assert api.sandbox.rate_limit == 0.001
        assert (await api.buy({"PhoneNumber": "+14155550100"})).status == 201
        for answer in (await api.list(), await api.search(), await api.fetch("PN" + "0" * 32)):
            assert_error(answer, 429, 20429)
            assert 990 < float(answer.headers["Retry-After"]) <= 1000
        assert len(api.sandbox.purchases) == 1
        api.sandbox.set_limits(rate_limit=None)
        assert (await api.list()).status == 200
        api.sandbox.set_limits(rate_limit=0.001, max_concurrency=5)
        assert (await api.list()).status == 200  # a new rate starts with a full bucket
        assert_error(await api.list(), 429, 20429)
        assert api.sandbox.max_concurrency == 5


async def test_a_refused_request_draws_no_fate() -> None:
    # Refusals depend on timing: they must not shift the fates of the requests after them.
    faults = Faults(server_error=0.5)

    async def faults_of_lists(**limits: object) -> list[str | None]:
        async with served(faults=faults, **limits) as api:
            await api.list()
            if limits:
                assert_error(await api.list(), 429, 20429)
                api.sandbox.set_limits(rate_limit=None)
            for _ in range(5):
                await api.list()
            return [r.fault for r in api.sandbox.requests if r.status != 429 or r.fault]

    unlimited = await faults_of_lists()
    assert await faults_of_lists(rate_limit=0.001) == unlimited
    assert set(unlimited) == {None, "server_error"}


async def test_limits_are_checked() -> None:
    for bad, error in ((0, ValueError), (-1.5, ValueError), (float("nan"), ValueError)):
        with pytest.raises(error, match="rate_limit"):
            Sandbox(rate_limit=bad)
    with pytest.raises(TypeError, match="rate_limit"):
        Sandbox(rate_limit="10/s")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_concurrency"):
        Sandbox(max_concurrency=2.5)  # type: ignore[arg-type]
    sandbox = Sandbox(max_concurrency=4)
    with pytest.raises(ValueError, match="max_concurrency"):
        sandbox.set_limits(max_concurrency=0)
    with pytest.raises(ValueError, match="rate_limit"):
        sandbox.set_limits(rate_limit=float("inf"))
    sandbox.set_limits(rate_limit=2)  # not serving: fine too
    assert (sandbox.max_concurrency, sandbox.rate_limit) == (4, 2.0)


async def test_limits_set_before_serving_hold_once_it_serves() -> None:
    sandbox = Sandbox(seed=1)
    sandbox.set_limits(rate_limit=0.001)
    async with sandbox, aiohttp.ClientSession() as session:
        api = Api(sandbox, session)
        assert (await api.list()).status == 200  # a first rate starts with a full bucket
        assert_error(await api.list(), 429, 20429)
