"""Adaptive concurrency against a Sandbox that limits concurrency like Twilio (issue 16).

    python -m benchmarks.bench_adaptive            # everything, about 6 minutes
    python -m benchmarks.bench_adaptive --quick    # a smoke run, under a minute
    python -m benchmarks.bench_adaptive --only grid,change
    python -m benchmarks.bench_adaptive plot       # redraw adaptive.png from adaptive.json

Each measurement starts a :class:`~twilio_numbers_async.sandbox.Sandbox` in a process of its own
(``serve`` below: ``Sandbox(max_concurrency=K, faults=Faults(latency=(0.8 L, 1.2 L)))``, pinned
to CPU 0), and buys distinct given numbers from it, pinned to CPU 1, with what a user gets:
``TwilioNumbersClient`` built with no limit arguments and ``purchase_many(requests)`` with no
concurrency, its ``on_limit_change`` hook tracing the limit. The sandbox's records give the
POSTs answered 429, and check that no number was sold twice or sold unreported. "Held at K" and
AIMD use a thin driver instead (aiohttp and the limiter's slots, nothing else), as a yardstick.

Parts (``--only``):

- ``grid``: 2,000 purchases for each concurrency limit K in {10, 30, 100} (``--ks``) and
  latency L in {50, 100, 300} ms: purchases/s as a share of K/L (the most the account allows),
  the share of POSTs answered 429, failures, and the limit over time; then the thin driver held
  at K from the start (what this machine reaches when told the answer).
- ``rate``: a rate limit of 100/s (429 with ``Retry-After``) and no concurrency limit, L = 100
  ms: the defaults, and the client capped at rate x L.
- ``aimd``: the thin driver at L = 100 ms with the alternative measured and rejected: AIMD (one
  more slot per round trip, the limit times 0.9 on a 20429, at most once per round trip).
- ``change``: K moves 30 -> 10 -> 30 while 2,000 purchases run (L = 100 ms): how long the limit
  takes to come within 10% of the new K.
- ``two``: two client processes, 1,000 purchases each, on one Sandbox with K = 30: together, as
  a share of K/L.
- ``fixed``: the fixed client settings of issue 16's table, with ``TwilioNumbersClient`` and
  ``purchase_many`` (K = 30, L = 100 ms, 600 purchases each: they reach their pace at once).

Results go to ``benchmarks/adaptive.json`` and the plot to ``benchmarks/adaptive.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):
    # Run as a script: make "benchmarks" importable as a package.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

import aiohttp

from twilio_numbers_async import NumberPurchase, RetryPolicy, TwilioNumbersClient
from twilio_numbers_async._adaptive import (
    DEFAULT_INITIAL,
    AdaptiveConcurrency,
    LimitChange,
    Slot,
)

from .server import ACCOUNT_SID, AUTH_TOKEN, CREATE_PATH, ServerProcess, pin

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
SERVER_CPU, CLIENT_CPU = 0, 1
KS: Final = (10, 30, 100)
LATENCIES: Final = (0.05, 0.1, 0.3)
PARTS: Final = ("grid", "rate", "aimd", "change", "two", "fixed")
RATE_LIMIT: Final = 100.0
# As many attempts as the client makes by default: a purchase refused more often has failed.
MAX_ATTEMPTS: Final = RetryPolicy().max_attempts

# The fixed settings of issue 16's table: (label, rate_limit, max_concurrency, concurrency).
FIXED: Final = (
    ("rate 25/s, cap 25, concurrency 8", 25.0, 25, 8),
    ("no rate, cap 25, concurrency 25", None, 25, 25),
    ("no rate, cap 100, concurrency 100", None, 100, 100),
    ("rate 1000/s, cap 64, concurrency 64", 1000.0, 64, 64),
)


# --- the sandbox, in a process of its own -----------------------------------------------------


async def serve(max_concurrency: int | None, rate_limit: float | None, latency: float) -> None:
    """The ``serve`` command: a Sandbox, driven by lines on stdin until it closes.

    ``limit N`` changes the concurrency limit; ``stats`` prints one JSON line of what the
    sandbox saw (POSTs by status, purchases, distinct numbers bought, and the POSTs' time there:
    their mean in flight there is ``busy / span``).
    """
    from twilio_numbers_async.sandbox import Faults, Sandbox

    sandbox = Sandbox(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        max_concurrency=max_concurrency,
        rate_limit=rate_limit,
        faults=Faults(latency=(0.8 * latency, 1.2 * latency)),
    )
    loop = asyncio.get_running_loop()
    async with sandbox:
        print(f"READY {sandbox.url}", flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command, _, argument = line.strip().partition(" ")
            if command == "limit":
                sandbox.set_limits(max_concurrency=int(argument))
            elif command == "stats":
                statuses: dict[str, int] = {}
                for record in sandbox.requests:
                    if record.method == "POST":
                        key = str(record.status)
                        statuses[key] = statuses.get(key, 0) + 1
                purchases = sandbox.purchases
                numbers = {purchase.phone_number for purchase in purchases}
                stats = {"posts": statuses, "purchases": len(purchases), "numbers": len(numbers)}
                stats.update(_time_at_sandbox(sandbox.requests))
                print(json.dumps(stats), flush=True)


def _time_at_sandbox(records: list[Any]) -> dict[str, float]:
    """Where a run's time went, seen from the sandbox: a rate below K/L with a limit at K means
    fewer than K requests were at the sandbox (held in the client), or they stayed longer."""
    posts = [r for r in records if r.method == "POST" and r.finished_at is not None]
    if not posts:
        return {}
    answered = [r.finished_at - r.started_at for r in posts if r.status == 201]
    return {
        "busy": sum(r.finished_at - r.started_at for r in posts),
        "span": max(r.finished_at for r in posts) - min(r.started_at for r in posts),
        "latency_201": sum(answered) / max(1, len(answered)),
    }


class SandboxProcess(ServerProcess):
    """``with SandboxProcess(k, latency) as sandbox:``: the ``serve`` command in a child, which
    pins itself to the server's CPU. Leaving the block stops it."""

    def __init__(
        self, max_concurrency: int | None, latency: float, *, rate_limit: float | None = None
    ) -> None:
        super().__init__("sandbox", cpu=SERVER_CPU)
        self.command = [sys.executable, "-m", "benchmarks.bench_adaptive", "serve"]
        self.command += [f"--latency={latency}"]
        if max_concurrency is not None:
            self.command.append(f"--max-concurrency={max_concurrency}")
        if rate_limit is not None:
            self.command.append(f"--rate-limit={rate_limit}")

    def __enter__(self) -> SandboxProcess:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
            self.command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,  # lines of commands and answers
        )
        self._process = process  # type: ignore[assignment]
        assert process.stderr is not None
        self.pinned = process.stderr.readline().strip()
        line = self._read()
        if not line.startswith("READY "):
            self.__exit__()
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        self.url = line.split(" ", 1)[1]
        return self

    def set_limit(self, limit: int) -> None:
        self._write(f"limit {limit}")

    def stats(self) -> dict[str, Any]:
        self._write("stats")
        result: dict[str, Any] = json.loads(self._read())
        return result

    def _write(self, line: str) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(line + "\n")  # type: ignore[arg-type]
        self._process.stdin.flush()

    def _read(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        return str(self._process.stdout.readline()).strip()


# --- the thin driver ----------------------------------------------------------------------------


def numbers(area: int, count: int) -> Iterator[str]:
    return (f"+1{area}{5_550_000 + i:07d}" for i in range(count))


class Aimd(AdaptiveConcurrency):
    """The alternative measured and rejected: classic AIMD on the same slots.

    Doubling until the first 20429, then one more slot per round trip's worth of admitted
    answers, and the limit times 0.9 on a 20429, at most once per round trip (answers to
    slots granted before a cut are ignored, as in the real controller).
    """

    __slots__ = ("_credit",)

    def __init__(self, *, initial: int, on_change: Callable[[LimitChange], None]) -> None:
        super().__init__(initial=initial, on_change=on_change)
        self._credit = 0.0

    def _admitted(self, slot: Slot, concurrent_requests: int | None) -> None:
        if self._growing:  # the start: doubling every round trip, as the real controller
            super()._admitted(slot, concurrent_requests)
            return
        if slot._epoch == self._epoch and 2 * slot._ordinal >= self._limit:
            self._credit += 1 / self._limit
            if self._credit >= 1:
                self._credit = 0.0
                self._move(self._limit + 1, "probe")

    def _rejected(self, slot: Slot) -> None:
        self._growing = False
        if slot._epoch == self._epoch:
            self._epoch += 1
            self._move(max(1, int(self._limit * 0.9)), "rejected")


class Fixed(AdaptiveConcurrency):
    """The limit held at the account's K from the start: what the driver reaches when it is
    told the answer, the yardstick for the adaptive limit on this machine."""

    __slots__ = ()

    def _admitted(self, slot: Slot, concurrent_requests: int | None) -> None:
        pass

    def _rejected(self, slot: Slot) -> None:
        pass


class Driver:
    """Buys given numbers with ``workers`` tasks, each holding a slot of ``limiter`` per POST."""

    def __init__(self, url: str, limiter: AdaptiveConcurrency, *, use_hint: bool = True) -> None:
        self.url = url + CREATE_PATH
        self.limiter = limiter
        self.use_hint = use_hint
        token = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        self.headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        self.posts = self.rejected = self.bought = self.failed = 0
        self.done_at: list[float] = []

    async def run(self, source: Iterable[str], *, t0: float) -> None:
        self.t0 = t0
        pending = iter(source)
        connector = aiohttp.TCPConnector(limit=0)  # the limiter is the only cap
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                for number in pending:  # shared: each worker takes the next number
                    await self.buy(session, number)

            await asyncio.gather(*(worker() for _ in range(self.limiter.ceiling)))

    async def buy(self, session: aiohttp.ClientSession, number: str) -> None:
        body = f"PhoneNumber=%2B{number[1:]}".encode()
        loop = asyncio.get_running_loop()
        for _ in range(MAX_ATTEMPTS):
            async with self.limiter.slot() as slot:
                async with session.post(self.url, data=body, headers=self.headers) as response:
                    await response.read()
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
                    hint = response.headers.get("Twilio-Concurrent-Requests")
                self.posts += 1
                if status == 429 and retry_after is None:
                    slot.rejected()
                    self.rejected += 1
                    continue
                if status < 500:
                    slot.admitted(int(hint) if hint and self.use_hint else None)
            if status == 201:
                self.bought += 1
                self.done_at.append(loop.time() - self.t0)
                return
            raise AssertionError(f"{number}: unexpected status {status}")
        self.failed += 1


async def drive(
    url: str,
    source: Iterable[str],
    *,
    limiter_kind: str,
    limit_k: int,
) -> dict[str, Any]:
    """One run of the thin driver: what it bought, how often it was refused, the limit's path."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    trace: list[tuple[float, int]] = []

    def record(change: LimitChange) -> None:
        trace.append((round(loop.time() - t0, 4), change.limit))

    limiter: AdaptiveConcurrency
    if limiter_kind == "aimd":
        limiter = Aimd(initial=DEFAULT_INITIAL, on_change=record)
    else:
        limiter = Fixed(initial=limit_k, ceiling=limit_k)
    trace.append((0.0, limiter.limit))
    driver = Driver(url, limiter)
    cpu0 = time.process_time()
    await driver.run(source, t0=t0)
    seconds = loop.time() - t0
    return {
        "bought": driver.bought,
        "failed": driver.failed,
        "unknown": 0,
        "seconds": seconds,
        "rate": driver.bought / seconds,
        "client_cpu_us": 1e6 * (time.process_time() - cpu0) / max(1, driver.bought),
        "trace": trace,
        "done_at": [round(t, 4) for t in driver.done_at],
        "wall_start": time.time() - seconds,
    }


# --- the real client ----------------------------------------------------------------------------


async def buy_with_client(
    url: str,
    source: Iterable[str],
    *,
    concurrency: int | None = None,
    schedule: Iterable[tuple[float, Callable[[], None]]] = (),
    **settings: Any,
) -> dict[str, Any]:
    """``TwilioNumbersClient(...).purchase_many(requests, concurrency=...)``: with no
    ``settings`` and no ``concurrency``, what a user gets by default."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    trace: list[tuple[float, int]] = []

    def record(change: LimitChange) -> None:
        trace.append((round(loop.time() - t0, 4), change.limit))

    client = TwilioNumbersClient(
        ACCOUNT_SID, AUTH_TOKEN, base_url=url, on_limit_change=record, **settings
    )
    trace.append((0.0, client.concurrency.limit))
    requests = (NumberPurchase(phone_number=number) for number in source)
    statuses: Counter[str] = Counter()
    done_at: list[float] = []
    timers = [loop.call_at(t0 + at, action) for at, action in schedule]
    cpu0 = time.process_time()
    try:
        async with client:
            async for outcome in client.purchase_many(requests, concurrency=concurrency):
                statuses[outcome.status] += 1
                if outcome.ok:
                    done_at.append(round(loop.time() - t0, 4))
    finally:
        for timer in timers:
            timer.cancel()
    seconds = loop.time() - t0
    return {
        "bought": statuses["bought"],
        "failed": statuses["failed"],
        "unknown": statuses["unknown"],
        "seconds": seconds,
        "rate": statuses["bought"] / seconds,
        "client_cpu_us": 1e6 * (time.process_time() - cpu0) / max(1, statuses["bought"]),
        "trace": trace,
        "done_at": done_at,
        "wall_start": time.time() - seconds,
    }


def cell(k: int, latency: float, count: int, *, kind: str, area: int) -> dict[str, Any]:
    """One run on a fresh Sandbox: ``kind`` "client" (the defaults), or the thin driver's
    "fixed" (held at K) or "aimd"."""
    with SandboxProcess(k, latency) as sandbox:
        source = numbers(area, count)
        if kind == "client":
            run = asyncio.run(buy_with_client(sandbox.url, source))
        else:
            run = asyncio.run(drive(sandbox.url, source, limiter_kind=kind, limit_k=k))
        stats = sandbox.stats()
    del run["done_at"]  # only the K change plots its purchases over time
    return summarise(run, stats, k=k, latency=latency)


def summarise(
    run: dict[str, Any],
    stats: dict[str, Any],
    *,
    k: int | None,
    latency: float,
    capacity: float | None = None,
) -> dict[str, Any]:
    """The run beside what the Sandbox saw: its 429s, and whether any number was sold twice
    (``double``) or sold without the buyer being told (``untold``)."""
    posts = sum(stats["posts"].values())
    refused = stats["posts"].get("429", 0)
    capacity = capacity or (k or 0) / latency
    row = {
        "k": k,
        "latency": latency,
        **run,
        "load": os.getloadavg()[0],
        "capacity": capacity,
        "share": run["rate"] / capacity,
        "posts": posts,
        "posts_429": refused / posts,
        "sandbox_posts": stats["posts"],
        "double": stats["purchases"] - stats["numbers"],
        "untold": stats["numbers"] - run["bought"],
    }
    if stats.get("span"):
        row["sandbox_in_flight"] = stats["busy"] / stats["span"]
        row["sandbox_latency"] = stats["latency_201"]
        row["sandbox_span"] = stats["span"]
    if row["double"] or row["untold"]:
        print(f"  !! the sandbox saw {stats}, the buyer was told of {run['bought']}", flush=True)
    return row


# --- the parts ----------------------------------------------------------------------------------


def grid(*, quick: bool, ks: tuple[int, ...] = KS) -> list[dict[str, Any]]:
    count = 400 if quick else 2_000
    ks = (10, 100) if quick else ks
    latencies = (0.05,) if quick else LATENCIES
    rows = []
    for i, (k, latency) in enumerate((k, latency) for k in ks for latency in latencies):
        row = cell(k, latency, count, kind="client", area=201 + 2 * i)
        # The thin driver held at K, right after, in the same conditions.
        fixed = cell(k, latency, count, kind="fixed", area=202 + 2 * i)
        row["fixed_share"] = fixed["share"]
        row["held"] = {key: value for key, value in fixed.items() if key != "trace"}
        rows.append(row)
        print(f"  {line(row)}; held at K: {fixed['share']:.2f}", flush=True)
    return rows


def aimd(*, quick: bool) -> list[dict[str, Any]]:
    count = 400 if quick else 2_000
    ks = (30,) if quick else KS
    rows = []
    for i, k in enumerate(ks):
        row = cell(k, 0.1, count, kind="aimd", area=301 + i)
        rows.append(row)
        print(f"  AIMD {line(row)}", flush=True)
    return rows


def change(*, quick: bool) -> dict[str, Any]:
    """K 30 -> 10 -> 30 at L = 100 ms, the limit moved by the sandbox's hook mid-run."""
    latency = 0.1
    first, second = (1.0, 2.0) if quick else (2.0, 5.0)
    count = 800 if quick else 2_000
    steps = [(0.0, 30), (first, 10), (second, 30)]
    with SandboxProcess(30, latency) as sandbox:
        schedule = [(at, _setter(sandbox, k)) for at, k in steps[1:]]
        run = asyncio.run(buy_with_client(sandbox.url, numbers(401, count), schedule=schedule))
        stats = sandbox.stats()
    row = summarise(run, stats, k=30, latency=latency)
    row["steps"] = steps
    row["settle"] = [settle_time(run["trace"], steps, i, latency) for i in (1, 2)]
    print(
        f"  K 30 -> 10 at {first:g} s: limit within 10% after {row['settle'][0]:.2f} s; "
        f"10 -> 30 at {second:g} s: after {row['settle'][1]:.2f} s; "
        f"{100 * row['posts_429']:.1f}% of POSTs answered 429, {row['failed']} failed",
        flush=True,
    )
    return row


def _setter(sandbox: SandboxProcess, k: int) -> Callable[[], None]:
    return lambda: sandbox.set_limit(k)


def settle_time(
    trace: list[tuple[float, int]], steps: list[tuple[float, int]], i: int, latency: float
) -> float:
    """Seconds from step ``i`` until the limit is within 10% of the new K and stays there.

    A spell outside shorter than a round trip does not count: a probe, or a climb that is
    refused at once, takes the limit above K for a moment without changing the pace.
    """
    at, k = steps[i]
    until = steps[i + 1][0] if i + 1 < len(steps) else float("inf")
    points = [(t, limit) for t, limit in trace if t <= at][-1:] + [
        (t, limit) for t, limit in trace if at < t < until
    ]
    points.append((min(until, points[-1][0] + 10.0), points[-1][1]))
    settled = at
    spell: float | None = None  # when the current spell outside the band began
    for (t, limit), (next_t, _) in itertools.pairwise(points):
        if abs(limit - k) <= 0.1 * k:
            spell = None
            continue
        spell = max(t, at) if spell is None else spell
        if next_t - spell >= latency or spell == at:
            settled = next_t
    return settled - at


def two(*, quick: bool) -> dict[str, Any]:
    """Two driver processes, one Sandbox with K = 30, L = 100 ms."""
    k, latency = 30, 0.1
    count = 300 if quick else 1_000
    with SandboxProcess(k, latency) as sandbox:
        start = time.time() + 1.0  # both processes start together, once both are up
        children = [
            subprocess.Popen(  # noqa: S603 - this interpreter, our own module
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_adaptive",
                    "drive",
                    sandbox.url,
                    f"--area={501 + i}",
                    f"--count={count}",
                    f"--start={start}",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        runs = [json.loads(child.communicate()[0]) for child in children]
        stats = sandbox.stats()
    bought = sum(run["bought"] for run in runs)
    began = min(run["wall_start"] for run in runs)
    ended = max(run["wall_start"] + run["seconds"] for run in runs)
    together = bought / (ended - began)
    # While both run: the account shared. After the first ends, the other must find its room.
    both_from = max(run["wall_start"] for run in runs)
    both_to = min(run["wall_start"] + run["seconds"] for run in runs)
    while_both = [
        run["wall_start"] + t for run in runs for t in run["done_at"]
    ]  # completion times, on one clock
    in_both = sum(1 for t in while_both if both_from <= t < both_to) / (both_to - both_from)
    posts = sum(stats["posts"].values())
    row = {
        "k": k,
        "latency": latency,
        "processes": runs,
        "bought": bought,
        "failed": sum(run["failed"] + run["unknown"] for run in runs),
        "seconds": ended - began,
        "rate": together,
        "share": together / (k / latency),
        "share_while_both": in_both / (k / latency),
        "split_while_both": [
            sum(1 for t in run["done_at"] if both_from <= run["wall_start"] + t < both_to)
            for run in runs
        ],
        "posts_429": stats["posts"].get("429", 0) / posts,
        "double": stats["purchases"] - stats["numbers"],
        "untold": stats["numbers"] - bought,
    }
    for run in runs:
        del run["done_at"]
    print(
        f"  two processes, K {k}, L {latency * 1000:.0f} ms: {together:.0f}/s together "
        f"= {row['share']:.2f} of K/L first start to last end, {row['share_while_both']:.2f} "
        f"while both ran (their purchases then: {row['split_while_both']}); "
        f"{100 * row['posts_429']:.1f}% answered 429, {row['failed']} failed",
        flush=True,
    )
    return row


def rate(*, quick: bool) -> list[dict[str, Any]]:
    """A rate limit of 100/s and no concurrency limit, L = 100 ms: the defaults, then the
    client told the answer (a cap of rate x L = 10 in flight, so that it is never refused)."""
    latency = 0.1
    count = 400 if quick else 2_000
    settings = (("defaults", {}), ("cap 10 = rate x L", {"max_concurrency": 10}))
    rows = []
    for i, (label, options) in enumerate(settings):
        with SandboxProcess(None, latency, rate_limit=RATE_LIMIT) as sandbox:
            run = asyncio.run(buy_with_client(sandbox.url, numbers(701 + i, count), **options))
            stats = sandbox.stats()
        del run["done_at"]
        row = summarise(run, stats, k=None, latency=latency, capacity=RATE_LIMIT)
        rows.append({"label": label, **row})
        print(f"  rate {RATE_LIMIT:g}/s, {label}: {line(row)}", flush=True)
    return rows


def fixed(*, quick: bool) -> list[dict[str, Any]]:
    """The fixed settings of issue 16's table, with the real client, at K = 30, L = 100 ms."""
    k, latency = 30, 0.1
    count = 150 if quick else 600
    rows = []
    for i, (label, rate, cap, concurrency) in enumerate(FIXED):
        with SandboxProcess(k, latency) as sandbox:
            run = asyncio.run(
                buy_with_client(
                    sandbox.url,
                    numbers(601 + i, count),
                    rate_limit=rate,
                    max_concurrency=cap,
                    concurrency=concurrency,
                )
            )
            stats = sandbox.stats()
        del run["done_at"]
        row = {"label": label, **summarise(run, stats, k=k, latency=latency)}
        rows.append(row)
        print(f"  {label}: {line(row)}", flush=True)
    return rows


def line(row: dict[str, Any]) -> str:
    return (
        f"K {row['k']}, L {row['latency'] * 1000:3.0f} ms: {row['rate']:6.1f}/s = "
        f"{row['share']:.2f} of capacity, {100 * row['posts_429']:.1f}% of POSTs answered 429, "
        f"{row['failed']} failed, {row['unknown']} unknown, {row['double']} double, "
        f"{row['seconds']:.1f} s, {row['client_cpu_us']:.0f} us client CPU per purchase, "
        f"{row.get('sandbox_in_flight', 0):.1f} in flight at the sandbox on average"
    )


# --- output -------------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    out: list[str] = []
    if "grid" in results:
        out += [*_table(results["grid"]), ""]
    if "rate" in results:
        out += [
            f"Rate limit {RATE_LIMIT:g}/s, no concurrency limit, L = 100 ms:",
            "",
            "| client | purchases/s | share of the rate | POSTs answered 429 | failed | seconds |",
            "|:---|---:|---:|---:|---:|---:|",
        ]
        out += [
            f"| {row['label']} | {row['rate']:.0f} | {row['share']:.2f} "
            f"| {100 * row['posts_429']:.1f}% | {row['failed']} | {row['seconds']:.1f} |"
            for row in results["rate"]
        ]
        out.append("")
    if "aimd" in results:
        out += ["AIMD (rejected), L = 100 ms:", "", *_table(results["aimd"]), ""]
    if "fixed" in results:
        out += [
            "Fixed client settings (`TwilioNumbersClient`), K = 30, L = 100 ms:",
            "",
            "| settings | purchases/s | share of K/L | POSTs answered 429 | failed |",
            "|:---|---:|---:|---:|---:|",
        ]
        out += [
            f"| {row['label']} | {row['rate']:.0f} | {row['share']:.2f} "
            f"| {100 * row['posts_429']:.1f}% | {row['failed']} |"
            for row in results["fixed"]
        ]
        out.append("")
    return "\n".join(out)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    return [
        "| K | L (ms) | K/L per s | purchases/s | share of K/L | held at K: share "
        "| POSTs answered 429 | failed | double | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_row(row) for row in rows),
    ]


def _row(row: dict[str, Any]) -> str:
    fixed = row.get("fixed_share")
    return (
        f"| {row['k']} | {row['latency'] * 1000:.0f} | {row['capacity']:.0f} | {row['rate']:.0f} "
        f"| {row['share']:.2f} | {'-' if fixed is None else f'{fixed:.2f}'} "
        f"| {100 * row['posts_429']:.1f}% | {row['failed'] + row['unknown']} | {row['double']} "
        f"| {row['seconds']:.1f} |"
    )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write a file
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(14, 9))
    grid_axes, change_axes, two_axes, bars = axes.flat
    _plot_grid(grid_axes, results)
    if "change" in results:
        _plot_change(change_axes, results["change"])
    if "two" in results:
        _plot_two(two_axes, results["two"])
    _plot_bars(bars, results)
    if "load_before" in results:
        figure.suptitle(
            f"bench_adaptive, {results['date']}: {results['cpus']} CPUs, load average "
            f"{results['load_before']:.1f} before the run and {results['load_after']:.1f} after",
            fontsize=10,
        )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


def _plot_grid(grid_axes: Any, results: dict[str, Any]) -> None:
    for row in results.get("grid", []):
        times, limits = _steps(row["trace"], row["seconds"])
        grid_axes.plot(
            [t / row["latency"] for t in times],
            [limit / row["k"] for limit in limits],
            drawstyle="steps-post",
            label=f"K {row['k']}, L {row['latency'] * 1000:.0f} ms",
            alpha=0.8,
        )
    grid_axes.axhline(1.0, color="grey", linestyle="--")
    grid_axes.set_xscale("symlog", linthresh=10)
    grid_axes.set_xlim(left=0)
    grid_axes.set_xlabel("time, in round trips (L); linear to 10, then logarithmic")
    grid_axes.set_ylabel("limit / K")
    grid_axes.set_title("the adaptive limit over each run of 2,000 purchases")
    if results.get("grid"):
        grid_axes.legend(fontsize=7, ncol=3)
    grid_axes.grid(alpha=0.3)


def _plot_change(change_axes: Any, row: dict[str, Any]) -> None:
    times, limits = _steps(row["trace"], row["seconds"])
    change_axes.plot(times, limits, drawstyle="steps-post", label="limit")
    k_times, ks = _steps([tuple(step) for step in row["steps"]], row["seconds"])
    change_axes.plot(k_times, ks, drawstyle="steps-post", linestyle="--", label="K")
    rate_axes = change_axes.twinx()
    bin_width = 0.25
    bins = [0] * (int(row["seconds"] / bin_width) + 1)
    for t in row["done_at"]:
        bins[int(t / bin_width)] += 1
    rate_axes.plot(
        [bin_width * (i + 0.5) for i in range(len(bins))],
        [n / bin_width * row["latency"] for n in bins],
        color="green",
        alpha=0.5,
        label="purchases/s x L",
    )
    rate_axes.set_ylim(0, 40)
    change_axes.set_ylim(0, 40)
    change_axes.set_xlabel("seconds")
    change_axes.set_title("K 30 -> 10 -> 30, L = 100 ms")
    change_axes.legend(loc="upper left")
    rate_axes.legend(loc="upper right")
    change_axes.grid(alpha=0.3)


def _plot_two(two_axes: Any, row: dict[str, Any]) -> None:
    began = min(run["wall_start"] for run in row["processes"])
    for i, run in enumerate(row["processes"]):
        shift = run["wall_start"] - began
        times, limits = _steps(run["trace"], run["seconds"])
        two_axes.plot(
            [t + shift for t in times], limits, drawstyle="steps-post", label=f"process {i + 1}"
        )
    two_axes.axhline(row["k"], color="grey", linestyle="--", label="K")
    two_axes.set_xlabel("seconds")
    two_axes.set_ylabel("limit")
    two_axes.set_title(f"two processes sharing K = {row['k']}, L = 100 ms")
    two_axes.legend()
    two_axes.grid(alpha=0.3)


def _plot_bars(bars: Any, results: dict[str, Any]) -> None:
    labels, shares = [], []
    for row in results.get("grid", []):
        if row["k"] == 30 and row["latency"] == 0.1:
            labels += ["adaptive", "held at K (told the answer)"]
            shares += [row["share"], row["fixed_share"]]
    for row in results.get("aimd", []):
        if row["k"] == 30:
            labels.append("AIMD")
            shares.append(row["share"])
    if "two" in results:
        labels.append("adaptive,\n2 processes")
        shares.append(results["two"]["share"])
    for row in results.get("fixed", []):
        labels.append(f"client: {row['label']}")
        shares.append(row["share"])
    positions = range(len(labels))[::-1]  # the first at the top
    bars.barh(positions, shares)
    bars.set_yticks(positions, labels, fontsize=8)
    bars.axvline(0.9, color="grey", linestyle="--", label="target 0.90")
    bars.set_xlabel("purchases/s as a share of K/L")
    bars.set_title("K = 30, L = 100 ms: adaptive beside the fixed settings of issue 16")
    bars.set_xlim(0, 1.05)
    bars.legend(loc="lower right")
    bars.grid(alpha=0.3, axis="x")


def _steps(trace: Iterable[Any], end: float) -> tuple[list[float], list[int]]:
    points = [(float(t), int(v)) for t, v in trace]
    points.append((end, points[-1][1]))
    return [t for t, _ in points], [v for _, v in points]


# --- commands -----------------------------------------------------------------------------------


RUNNERS: Final[dict[str, Callable[..., Any]]] = {
    "grid": grid,
    "rate": rate,
    "aimd": aimd,
    "change": change,
    "two": two,
    "fixed": fixed,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    server = commands.add_parser("serve", help="(internal) the sandbox process")
    server.add_argument("--max-concurrency", type=int)
    server.add_argument("--rate-limit", type=float)
    server.add_argument("--latency", type=float, required=True)
    driver = commands.add_parser("drive", help="(internal) one driver process")
    driver.add_argument("url")
    driver.add_argument("--area", type=int, required=True)
    driver.add_argument("--count", type=int, required=True)
    driver.add_argument("--start", type=float, required=True, help="time.time() to start at")
    redraw = commands.add_parser("plot", help="redraw the plot from the JSON results")
    redraw.add_argument("results", nargs="?", type=Path, default=HERE / "adaptive.json")
    redraw.add_argument("-o", "--output", type=Path, default=HERE / "adaptive.png")
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    parser.add_argument("--only", help=f"comma-separated parts, of: {', '.join(PARTS)}")
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="the grid's K values")
    parser.add_argument("--output", type=Path, default=HERE / "adaptive.json")
    parser.add_argument("--plot", type=Path, default=HERE / "adaptive.png")
    args = parser.parse_args()

    if args.command == "serve":
        print(f"server pinned: {pin(SERVER_CPU)}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.max_concurrency, args.rate_limit, args.latency))
        return
    if args.command == "drive":
        pin(CLIENT_CPU)
        time.sleep(max(0.0, args.start - time.time()))
        run = asyncio.run(buy_with_client(args.url, numbers(args.area, args.count)))
        print(json.dumps(run))
        return
    if args.command == "plot":
        plot(json.loads(args.results.read_text(encoding="utf-8")), args.output)
        return

    parts = PARTS if args.only is None else tuple(p.strip() for p in args.only.split(","))
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))} (choose from {PARTS})")
    print(f"client {pin(CLIENT_CPU)}, sandbox on CPU {SERVER_CPU}", flush=True)
    results: dict[str, Any] = {
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0],
    }
    started = time.perf_counter()
    for part in parts:
        print(f"{part}:", flush=True)
        options = {"ks": tuple(int(k) for k in args.ks.split(","))} if part == "grid" else {}
        results[part] = RUNNERS[part](quick=args.quick, **options)
        args.output.write_text(json.dumps(results) + "\n", encoding="utf-8")
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_after"] = os.getloadavg()[0]
    args.output.write_text(json.dumps(results) + "\n", encoding="utf-8")
    print()
    print(markdown(results))
    plot(results, args.plot)
    print(f"done in {results['seconds']:.0f} s; results in {args.output}")


if __name__ == "__main__":
    main()
