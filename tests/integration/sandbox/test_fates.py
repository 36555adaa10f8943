"""Faults are drawn per request, not per arrival: the same seed, the same fates, in any order."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest

from tests.conftest import FakeTime
from twilio_numbers_async import NumberPurchase, PurchaseOutcome
from twilio_numbers_async.sandbox import Fault, Faults, Sandbox
from twilio_numbers_async.sandbox._faults import FaultPicker

from ._http import Api, assert_error

# Every kind, often: most requests meet one.
LIVELY = Faults(
    rate_limited=0.15,
    server_error=0.15,
    error_after_commit=0.1,
    drop_before_commit=0.1,
    drop_after_commit=0.1,
)

Send = Callable[[Api], Awaitable[Any]]


def requests_to_send() -> list[tuple[str, Send]]:
    """Named requests: distinct purchases, identical ones, searches and list reads."""
    sends: list[tuple[str, Send]] = []
    for n in range(30):
        number = f"+1415777{n:04d}"
        sends.append((f"buy {number}", lambda api, number=number: api.buy({"PhoneNumber": number})))
    for _ in range(10):  # identical: their fates are told apart by how many came before
        sends.append(("buy area 212", lambda api: api.buy({"AreaCode": "212"})))
        sends.append(("list", lambda api: api.list({"PageSize": "5"})))
        sends.append(("search 312", lambda api: api.search({"AreaCode": "312"})))
    return sends


async def faults_met(
    sends: Sequence[tuple[str, Send]], *, concurrency: int
) -> dict[tuple[str, str, str], list[str | None]]:
    """The faults each kind of request met (as the sandbox recorded them), by request."""
    async with Sandbox(seed=5, faults=LIVELY) as sandbox, aiohttp.ClientSession() as session:
        api = Api(sandbox, session)
        gate = asyncio.Semaphore(concurrency)

        async def send(request: Send) -> None:
            async with gate:
                with contextlib.suppress(aiohttp.ClientError):
                    await request(api)

        await asyncio.gather(*(send(request) for _, request in sends))
        met: dict[tuple[str, str, str], list[str | None]] = defaultdict(list)
        for record in sandbox.requests:
            form = "&".join(f"{k}={v}" for k, v in sorted(record.form.items()))
            query = "&".join(f"{k}={v}" for k, v in sorted(record.query.items()))
            met[record.method, record.path + "?" + query, form].append(record.fault)
        return {key: sorted(faults, key=str) for key, faults in met.items()}


async def test_the_same_requests_meet_the_same_faults_in_any_order() -> None:
    sends = requests_to_send()
    in_order = await faults_met(sends, concurrency=1)
    shuffled = list(sends)
    random.Random(1).shuffle(shuffled)  # noqa: S311 - a reproducible order, not a secret
    assert [name for name, _ in shuffled] != [name for name, _ in sends]
    assert await faults_met(shuffled, concurrency=8) == in_order
    assert await faults_met(sends[::-1], concurrency=3) == in_order
    # Faults were met, every kind of them: the comparison above could have failed.
    kinds = Counter(fault for faults in in_order.values() for fault in faults)
    assert {"rate_limited", "server_error", "drop_before_commit", "drop_after_commit"} <= set(kinds)
    assert sum(count for kind, count in kinds.items() if kind) >= 20


async def test_a_bulk_purchase_meets_the_same_faults_at_any_concurrency(
    fake_time: FakeTime,
) -> None:
    requests = [
        NumberPurchase(phone_number=f"+1415888{n:04d}", friendly_name=f"n{n}") for n in range(40)
    ]

    async def run(concurrency: int) -> tuple[Counter[str | None], Counter[str]]:
        async with Sandbox(seed=9, faults=LIVELY) as sandbox:
            client = sandbox.client(rate_limit=None, retry=fake_time.policy(random=lambda: 0.5))
            async with client:
                outcomes: list[PurchaseOutcome] = [
                    outcome
                    async for outcome in client.purchase_many(requests, concurrency=concurrency)
                ]
            faults = Counter(record.fault for record in sandbox.requests)
            return faults, Counter(outcome.status.value for outcome in outcomes)

    one_at_a_time = await run(1)
    assert one_at_a_time == await run(16)
    assert sum(count for kind, count in one_at_a_time[0].items() if kind) >= 10


def test_a_fate_is_a_function_of_the_seed_the_request_and_its_repeats() -> None:
    def fates(seed: int, order: Sequence[str]) -> dict[str, list[float]]:
        picker = FaultPicker(Faults(latency=(0.0, 1.0)), seed)
        drawn: dict[str, list[float]] = defaultdict(list)
        for number in order:
            fate = picker.fate("POST", "/p", [("q", "1")], f"PhoneNumber={number}".encode())
            drawn[number].append(picker.latency(fate))
        return drawn

    order = ["a", "b", "a", "c", "b", "a"]
    first = fates(3, order)
    assert fates(3, ["c", "a", "b", "b", "a", "a"]) == first  # another order, the same fates
    assert fates(4, order) != first
    assert len(set(first["a"])) == 3  # a repeat (a retry) draws afresh
    assert all(0.0 <= latency < 1.0 for latencies in first.values() for latency in latencies)


def test_a_form_is_the_same_request_whatever_its_keys_order() -> None:
    one, other = FaultPicker(None, 1), FaultPicker(None, 1)
    assert one.fate("POST", "/p", [], b"A=1&B=2") == other.fate("POST", "/p", [], b"B=2&A=1")
    assert one.fate("GET", "/p", [("x", "1"), ("y", "2")], b"") == other.fate(
        "GET", "/p", [("y", "2"), ("x", "1")], b""
    )
    assert one.fate("POST", "/p", [], b"A=1") != one.fate("POST", "/p", [], b"A=2")


def test_each_kind_comes_as_often_as_its_probability() -> None:
    picker = FaultPicker(LIVELY, 11)
    drawn = Counter(
        (fault.name if fault else None)
        for fault in (
            picker.pick("purchase", picker.fate("POST", f"/{n}", [], b"")) for n in range(4000)
        )
    )
    for kind in ("rate_limited", "server_error", "error_after_commit", "drop_after_commit"):
        assert abs(drawn[kind] / 4000 - getattr(LIVELY, kind)) < 0.025, (kind, drawn)
    assert abs(drawn[None] / 4000 - 0.4) < 0.025


def test_reads_meet_only_429s_and_5xx() -> None:
    picker = FaultPicker(Faults(drop_after_commit=0.5, server_error=0.5), 2)
    for endpoint in ("list", "fetch", "search"):
        met = {
            fault.name if fault else None
            for fault in (
                picker.pick(endpoint, picker.fate("GET", f"/{n}", [], b"")) for n in range(200)
            )
        }
        assert met == {None, "server_error"}, endpoint
    met = {
        fault.name if fault else None
        for fault in (
            picker.pick("release", picker.fate("DELETE", f"/{n}", [], b"")) for n in range(200)
        )
    }
    assert met == {"server_error", "drop_after_commit"}


# --- scripted faults: FIFO, one queue per endpoint ---------------------------------------------


async def test_scripted_faults_go_in_order_to_their_endpoint(api: Api) -> None:
    bought = await api.buy({"AreaCode": "415"})
    sid = bought.body["sid"]
    sandbox = api.sandbox
    sandbox.script(Fault.server_error(500), Fault.rate_limited(), on="search")
    sandbox.script(Fault.rate_limited(3), on="fetch")
    sandbox.script(Fault.server_error(503), on="list")
    sandbox.script(Fault.server_error(504), on="release")
    assert (await api.buy({"AreaCode": "415"})).status == 201  # purchases: nothing queued
    assert (await api.fetch(sid)).headers["Retry-After"] == "3"
    assert (await api.fetch(sid)).status == 200
    assert (await api.search()).status == 500
    assert (await api.list()).status == 503
    assert (await api.search()).status == 429
    assert (await api.search()).status == 200
    assert (await api.release(sid)).status == 504
    assert sid in {n["sid"] for n in sandbox.owned().values()}  # before the commit: kept
    assert (await api.release(sid)).status == 204
    assert [r.fault for r in sandbox.requests[1:]] == [
        None,
        "rate_limited",
        None,
        "server_error",
        "server_error",
        "rate_limited",
        None,
        "server_error",
        None,
    ]


async def test_an_after_commit_fault_on_a_release_releases(api: Api) -> None:
    sid = (await api.buy({"PhoneNumber": "+14155550100"})).body["sid"]
    api.sandbox.script(Fault.drop_after_commit(), on="release")
    # aiohttp sends an idempotent request (a DELETE) once more, by itself, when the server
    # closes the connection without an answer: the caller sees only the second answer, 404.
    assert_error(await api.release(sid), 404, 20404)
    dropped, again = api.sandbox.requests[-2:]
    assert (dropped.method, dropped.status, dropped.fault) == ("DELETE", None, "drop_after_commit")
    assert (again.method, again.status, again.fault) == ("DELETE", 404, None)
    (release,) = api.sandbox.releases
    assert (release.sid, release.fault) == (sid, "drop_after_commit")
    assert release.request_id == dropped.request_id
    assert api.sandbox.owned() == {}
    api.sandbox.script(Fault.error_after_commit(502), on="release")
    assert (await api.release(sid)).status == 502  # refused (a 404), then the fault: a 502


async def test_a_scripted_fault_on_a_read_hits_the_answer(api: Api) -> None:
    api.sandbox.script(Fault.slow_after_commit(0.01), on="search")
    answer = await api.search({"AreaCode": "415"})
    assert answer.status == 200
    assert api.sandbox.requests[-1].fault == "slow_after_commit"


def test_script_refuses_an_unknown_endpoint(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="'buy'"):
        sandbox.script(Fault.rate_limited(), on="buy")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Fault"):
        sandbox.script("rate_limited")  # type: ignore[arg-type]
