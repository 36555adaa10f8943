"""The Redis-backed limiter and slot cap, against a real ``redis-server`` (no mock of Redis).

Time here is real: the bucket runs on the Redis server's clock, which no test can patch. Rates
are small and windows short, and every timing assertion leaves room for a busy machine (each
says how much and why). Without ``redis-server`` these tests skip, unless
``TWILIO_NUMBERS_REQUIRE_REDIS=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import signal
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis

from tests._redis import ROOT, RedisServer, required_binary, worker_command
from twilio_numbers_async import NumberPurchase, TransportError
from twilio_numbers_async import redis_limiter as module
from twilio_numbers_async.errors import TwilioNumbersError
from twilio_numbers_async.ratelimit import Limiter
from twilio_numbers_async.redis_limiter import (
    RedisLimiterError,
    RedisSemaphore,
    RedisTokenBucket,
)
from twilio_numbers_async.retry import RetryPolicy
from twilio_numbers_async.sandbox import Fault, Faults, Sandbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

PASSWORD = "hunter2-must-never-leak"
#: The longest a worker may take to say something or to finish (a stuck one fails the test).
WORKER_TIMEOUT = 30.0


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server for the whole session; tests keep apart by using fresh bucket names."""
    server = RedisServer(required_binary())
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, with a password, that the test may stop."""
    server = RedisServer(required_binary(), "--requirepass", PASSWORD)
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def name() -> str:
    return f"AC{uuid.uuid4().hex}"


Make = Any  # the factories below: keyword arguments in, an open limiter out


@pytest.fixture
async def bucket(redis_server: RedisServer, name: str) -> AsyncIterator[Make]:
    """``await bucket(rate=..)``: a new RedisTokenBucket (one per simulated process)."""
    made: list[RedisTokenBucket] = []

    async def make(**kwargs: Any) -> RedisTokenBucket:
        kwargs.setdefault("name", name)
        made.append(await RedisTokenBucket.from_url(redis_server.url, **kwargs))
        return made[-1]

    yield make
    for item in made:
        await item.aclose()


@pytest.fixture
async def semaphore(redis_server: RedisServer, name: str) -> AsyncIterator[Make]:
    """``await semaphore(limit=..)``: a new RedisSemaphore (one per simulated process)."""
    made: list[RedisSemaphore] = []

    async def make(**kwargs: Any) -> RedisSemaphore:
        kwargs.setdefault("name", name)
        kwargs.setdefault("poll_interval", 0.01)
        made.append(await RedisSemaphore.from_url(redis_server.url, **kwargs))
        return made[-1]

    yield make
    for item in made:
        await item.aclose()


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client, to look at the server from outside the limiter."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def now() -> float:
    return asyncio.get_running_loop().time()


async def grant_times(
    acquire: Sequence[Callable[[], Awaitable[None]]], *, start: float | None = None
) -> list[float]:
    """Run every ``acquire`` concurrently; the loop times at which each returned, sorted."""
    origin = now() if start is None else start
    times: list[float] = []

    async def one(call: Callable[[], Awaitable[None]]) -> None:
        await call()
        times.append(now() - origin)

    await asyncio.gather(*(one(call) for call in acquire))
    return sorted(times)


def worst_excess(times: Sequence[float], rate: float, capacity: float, slack: float) -> float:
    """How far the busiest window exceeds ``capacity + rate * (T + slack)``; <= 0 is within.

    ``slack`` widens every window by the spread of delays between the moment Redis grants a
    token and the moment the grant is observed.
    """
    ordered = sorted(times)
    worst = -float("inf")
    for i, first in enumerate(ordered):
        for j in range(i, len(ordered)):
            allowed = capacity + rate * (ordered[j] - first + slack)
            worst = max(worst, (j - i + 1) - allowed)
    return worst


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 2.0) -> None:
    """Wait until ``check()`` is true (background work landing); fail after ``within`` s."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - the state is in Redis: nothing to await
            await asyncio.sleep(0.005)


async def queued(admin: Redis, name: str) -> int:
    """Waiters in the bucket's queue in Redis (the key layout is the module's documented one)."""
    return await admin.zcard(f"twilio-numbers:{{{name}}}:bucket:queue")


async def eval_calls(admin: Redis) -> int:
    stats = await admin.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


# --- the module -----------------------------------------------------------------------------


def test_public_names_are_sorted() -> None:
    assert module.__all__ == sorted(module.__all__)
    for public in module.__all__:
        assert hasattr(module, public)


def test_the_package_works_without_this_module() -> None:
    # The core must import, and run, without redis installed: it never imports this module.
    code = (
        "import sys, twilio_numbers_async, twilio_numbers_async.client; "
        "assert 'twilio_numbers_async.redis_limiter' not in sys.modules; "
        "assert 'redis' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)  # noqa: S603


def test_the_bucket_is_a_limiter() -> None:
    def accepts(limiter: Limiter) -> Limiter:
        return limiter

    bucket = RedisTokenBucket(Redis(), name="AC1", rate=5)
    assert accepts(bucket) is bucket
    assert (bucket.rate, bucket.capacity, bucket.name, bucket.prefix) == (
        5.0,
        5.0,
        "AC1",
        "twilio-numbers",
    )
    assert RedisTokenBucket(Redis(), name="x", rate=0.5).capacity == 1.0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rate": 0}, ValueError),
        ({"rate": float("inf")}, ValueError),
        ({"rate": "5"}, TypeError),
        ({"rate": 5, "capacity": 0.5}, ValueError),
        ({"rate": 5, "name": ""}, ValueError),
        ({"rate": 5, "name": "two words"}, ValueError),
        ({"rate": 5, "name": "{tag}"}, ValueError),
        ({"rate": 5, "prefix": "a b"}, ValueError),
        ({"rate": 5, "name": 7}, TypeError),
    ],
)
def test_bucket_settings_are_checked(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RedisTokenBucket(Redis(), **{"name": "AC1", **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": 0}, ValueError),
        ({"limit": 2.0}, TypeError),
        ({"limit": 2, "lease": 0}, ValueError),
        ({"limit": 2, "poll_interval": 0}, ValueError),
    ],
)
def test_semaphore_settings_are_checked(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RedisSemaphore(Redis(), **{"name": "AC1", **kwargs})


def test_a_client_of_another_kind_is_refused() -> None:
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        RedisTokenBucket(object(), name="AC1", rate=5)  # type: ignore[arg-type]


def test_the_error_is_a_transport_error_that_was_not_sent() -> None:
    error = RedisLimiterError("down", where="redis://h:1/0", operation="EVALSHA")
    assert isinstance(error, TransportError)
    assert isinstance(error, TwilioNumbersError)
    assert error.sent is False
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.sent, copy.url) == (
        RedisLimiterError,
        str(error),
        False,
        "redis://h:1/0",
    )


# --- the bucket -----------------------------------------------------------------------------


async def test_starts_full_then_refills_at_the_rate(bucket: Make) -> None:
    limiter = await bucket(rate=20, capacity=5)
    start = now()
    burst = await grant_times([limiter.acquire] * 5, start=start)
    # Five tokens at once (a handful of loopback round trips), where an empty bucket would take
    # a quarter of a second.
    assert burst[-1] < 0.15
    for _ in range(4):
        await limiter.acquire()
    # Then one per 1/20 s: four more take 0.2 s from the first grant, which came after
    # ``start``. Late timers and round trips only add, so the upper bound is generous.
    assert 0.2 <= now() - start < 0.45


async def test_two_processes_together_stay_within_the_window_bound(bucket: Make) -> None:
    rate, capacity = 50, 5
    first = await bucket(rate=rate, capacity=capacity)
    second = await bucket(rate=rate, capacity=capacity)
    calls = [first.acquire, second.acquire] * 20
    times = await grant_times(calls)
    # Grants are seen here a round trip (and a busy loop's lag) after Redis decided them: 50 ms
    # of slack (2.5 tokens at this rate) covers that spread on a loaded machine. Two buckets
    # of their own would start 10 at once and break it at once.
    assert worst_excess(times, rate, capacity, slack=0.05) <= 0
    # And the limiter is not merely slow: 35 tokens beyond the burst take 0.7 s at 50/s.
    assert 0.65 <= times[-1] < 1.0


async def test_waiters_are_served_in_arrival_order_across_processes(bucket: Make) -> None:
    first = await bucket(rate=20, capacity=1)
    second = await bucket(rate=20, capacity=1)
    await first.acquire()  # now empty
    order: list[int] = []

    async def waiter(index: int, limiter: RedisTokenBucket) -> None:
        await limiter.acquire()
        order.append(index)

    tasks = []
    for index in range(6):
        tasks.append(asyncio.create_task(waiter(index, (first, second)[index % 2])))
        await asyncio.sleep(0.01)  # so that each has asked Redis before the next
    await asyncio.gather(*tasks)
    assert order == list(range(6))


async def test_round_trips_per_acquire_are_bounded(bucket: Make, admin: Redis) -> None:
    uncontended = await bucket(rate=1000, capacity=100)
    await admin.config_resetstat()
    for _ in range(10):
        await uncontended.acquire()
    assert await eval_calls(admin) == 10  # one round trip each

    first = await bucket(rate=100, capacity=5, name=f"AC{uuid.uuid4().hex}")
    second = await bucket(rate=100, capacity=5, name=first.name)
    await first.acquire(5)
    await admin.config_resetstat()
    await grant_times([first.acquire, second.acquire] * 20)
    # 40 acquires from an empty bucket, all of which must wait: one round trip to queue, one
    # to take. A few more when a waiter ahead comes back so late that the tokens for both have
    # overflowed the capacity.
    assert await eval_calls(admin) <= 2.5 * 40


async def test_a_pause_in_one_process_holds_the_others_and_empties_the_bucket(
    bucket: Make,
) -> None:
    rate, capacity = 20, 5
    pausing = await bucket(rate=rate, capacity=capacity)
    other = await bucket(rate=rate, capacity=capacity)
    start = now()
    pausing.pause(0.3)
    pausing.pause(0.05)  # a shorter pause never shortens the one in force
    await asyncio.sleep(0.02)  # the publication is one round trip: let it land
    # The other process knows nothing locally; Redis holds it. The bucket was full, but the
    # pause emptied it: the first token comes 1/rate after the pause, then one per 1/rate.
    times = await grant_times([other.acquire] * 3, start=start)
    assert times[0] >= 0.3 + 1 / rate
    assert times[-1] >= 0.3 + 3 / rate
    assert times[-1] < 0.3 + 3 / rate + 0.15
    # The pausing process held at once, without asking Redis.
    assert now() - start >= 0.3


async def test_the_pausing_process_holds_at_once(bucket: Make) -> None:
    limiter = await bucket(rate=100, capacity=10)
    start = now()
    limiter.pause(0.2)
    await limiter.acquire()
    assert now() - start >= 0.2 + 1 / 100


async def test_pause_checks_its_argument(bucket: Make) -> None:
    limiter = await bucket(rate=10)
    with pytest.raises(ValueError, match="finite"):
        limiter.pause(float("nan"))
    limiter.pause(0)
    limiter.pause(-1)
    start = now()
    await limiter.acquire()
    assert now() - start < 0.5  # a full bucket: no wait at all


def test_pause_outside_a_loop_says_why() -> None:
    limiter = RedisTokenBucket(Redis(), name="AC1", rate=5)
    with pytest.raises(RuntimeError, match="running event loop"):
        limiter.pause(1)


async def test_acquire_checks_its_argument(bucket: Make) -> None:
    limiter = await bucket(rate=10, capacity=3)
    with pytest.raises(ValueError, match="capacity"):
        await limiter.acquire(4)
    with pytest.raises(ValueError, match="at least 1"):
        await limiter.acquire(0)
    with pytest.raises(TypeError):
        await limiter.acquire(1.5)  # type: ignore[arg-type]
    await limiter.acquire(3)


async def test_a_cancelled_acquire_takes_no_token_and_leaves_the_queue(
    bucket: Make, admin: Redis, name: str
) -> None:
    async def has_queued(count: int) -> bool:
        return await queued(admin, name) == count

    rate = 4
    limiter = await bucket(rate=rate, capacity=1)
    other = await bucket(rate=rate, capacity=1)
    await limiter.acquire()
    start = now()
    doomed = asyncio.create_task(limiter.acquire())
    await eventually(lambda: has_queued(1))
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await eventually(lambda: has_queued(0))  # the ticket is withdrawn in the background
    # Had the cancelled one taken the next token, this would wait until 2/rate.
    await other.acquire()
    assert 1 / rate - 0.01 <= now() - start < 1.5 / rate


async def test_a_silent_waiter_does_not_hold_up_a_full_bucket(
    bucket: Make, admin: Redis, name: str
) -> None:
    limiter = await bucket(rate=10, capacity=1)
    # A waiter queued ahead that went silent (its process hung, say), its place not expired.
    stamp = (await admin.time())[0]
    await admin.zadd(f"twilio-numbers:{{{name}}}:bucket:queue", {"1:silent": stamp})
    await admin.zadd(f"twilio-numbers:{{{name}}}:bucket:deadlines", {"1:silent": stamp + 60})
    start = now()
    await limiter.acquire()  # the bucket is full: waiting for the silent one would waste it
    assert now() - start < 0.5  # not the minute until its place expires
    # Empty now, it is that waiter's turn first: ours comes only once the bucket is full again.
    await limiter.acquire()
    assert now() - start >= 1 / 10


async def test_several_tokens_at_once_wait_their_turn(
    bucket: Make, admin: Redis, name: str
) -> None:
    async def three_queued() -> bool:
        return await queued(admin, name) == 1

    limiter = await bucket(rate=20, capacity=4)
    await limiter.acquire(4)
    start = now()
    three = asyncio.create_task(limiter.acquire(3))
    await eventually(three_queued)
    await limiter.acquire()  # must not overtake the three: 4/20 s, not 1/20 s
    assert three.done()
    assert 4 / 20 - 0.01 <= now() - start < 4 / 20 + 0.2


async def test_names_keep_accounts_apart(bucket: Make) -> None:
    one = await bucket(rate=1, capacity=2)
    two = await bucket(rate=1, capacity=2, name=f"AC{uuid.uuid4().hex}")
    await one.acquire(2)
    start = now()
    await two.acquire(2)  # a full bucket of its own, where a shared one would take 2 s
    assert now() - start < 0.5


async def test_closed_bucket_refuses_use(bucket: Make) -> None:
    limiter = await bucket(rate=10)
    await limiter.aclose()
    await limiter.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await limiter.acquire()


# --- the slots ------------------------------------------------------------------------------


async def test_slots_are_capped_across_processes(semaphore: Make) -> None:
    one = await semaphore(limit=2)
    two = await semaphore(limit=2)
    first = await one.acquire()
    async with two as second:
        assert first != second
        assert await one.in_use() == 2
        assert (one.held, two.held) == (1, 1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.15):
                await one.acquire()
        waiting = asyncio.create_task(one.acquire())
        await asyncio.sleep(0.05)
        assert not waiting.done()
    # Released by the other process: seen within a poll interval.
    third = await asyncio.wait_for(waiting, 0.5)
    assert await one.in_use() == 2
    await one.release(first)
    await one.release(third)
    await one.release(third)  # idempotent
    assert await one.in_use() == 0
    assert one.held == 0


async def test_a_waiter_behind_another_polls_rather_than_spins(
    semaphore: Make, admin: Redis
) -> None:
    holder = await semaphore(limit=1)
    first_in_line = await semaphore(limit=1, poll_interval=0.5)
    behind = await semaphore(limit=1, poll_interval=0.05)
    held = await holder.acquire()
    ahead = asyncio.create_task(first_in_line.acquire())
    await asyncio.sleep(0.05)  # its ticket is queued first
    waiting = asyncio.create_task(behind.acquire())
    await asyncio.sleep(0.05)
    # A slot is free now, but the first in line won't look for up to 0.5 s: the one behind it
    # must keep polling at its interval in the meantime, not ask Redis again at once.
    await holder.release(held)
    before = await eval_calls(admin)
    await asyncio.sleep(0.3)
    assert await eval_calls(admin) - before < 20  # ~6 polls; a spinning waiter makes hundreds
    await first_in_line.release(await asyncio.wait_for(ahead, 2))
    await behind.release(await asyncio.wait_for(waiting, 2))


async def test_a_local_release_wakes_a_local_waiter_at_once(semaphore: Make) -> None:
    slots = await semaphore(limit=1, poll_interval=5.0)
    holder = await slots.acquire()
    waiting = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0.05)
    start = now()
    await slots.release(holder)
    await slots.release(await asyncio.wait_for(waiting, 1.0))
    assert now() - start < 0.5  # not the 5 s poll interval


async def test_leases_are_renewed_while_held(semaphore: Make) -> None:
    slots = await semaphore(limit=1, lease=0.3)
    async with slots:
        await asyncio.sleep(0.7)  # more than two leases
        assert await slots.in_use() == 1


async def test_a_dead_holders_slots_come_back_after_the_lease(semaphore: Make) -> None:
    lease = 0.5
    dying = await semaphore(limit=2, lease=lease)
    await dying.acquire()
    await dying.acquire()
    # Closing without releasing stops the renewals, as death would.
    await dying.aclose()
    closed_at = now()
    survivor = await semaphore(limit=2, lease=lease)
    await survivor.acquire()
    await survivor.acquire()
    waited = now() - closed_at
    # Renewed at most lease/3 before the close, so the leases ran out between 2/3 lease and a
    # lease later; the survivor sees it within a poll interval (plus a loaded machine's lag).
    assert 2 / 3 * lease - 0.05 <= waited < lease + 0.3


async def test_a_cancelled_slot_acquire_holds_nothing(semaphore: Make) -> None:
    slots = await semaphore(limit=1)
    other = await semaphore(limit=1)
    holder = await slots.acquire()
    doomed = asyncio.create_task(other.acquire())
    await asyncio.sleep(0.05)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await slots.release(holder)
    await asyncio.sleep(0.02)
    assert await slots.in_use() == 0
    await asyncio.wait_for(other.acquire(), 0.5)


async def test_exiting_a_slot_not_entered_is_an_error(semaphore: Make) -> None:
    slots = await semaphore(limit=1)
    with pytest.raises(RuntimeError, match="did not enter"):
        await slots.__aexit__(None, None, None)


async def test_a_bucket_hands_out_its_slots(bucket: Make) -> None:
    limiter = await bucket(rate=10)
    slots = limiter.semaphore(3, lease=2.0)
    assert (slots.limit, slots.lease, slots.name) == (3, 2.0, limiter.name)
    async with slots:
        assert await slots.in_use() == 1
    await limiter.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await slots.acquire()


# --- Redis unreachable ----------------------------------------------------------------------


async def test_an_unreachable_redis_fails_at_start_without_leaking_the_password() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:1/0"
    with pytest.raises(RedisLimiterError) as caught:
        await RedisTokenBucket.from_url(url, name="AC1", rate=5)
    assert "127.0.0.1:1" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert caught.value.sent is False
    with pytest.raises(RedisLimiterError):
        await RedisSemaphore.from_url(url, name="AC1", limit=5)


async def test_a_wrong_password_fails_at_start(own_server: RedisServer) -> None:
    url = f"redis://:wrong-{PASSWORD}@127.0.0.1:{own_server.port}/0"
    with pytest.raises(RedisLimiterError, match="PING") as caught:
        await RedisTokenBucket.from_url(url, name="AC1", rate=5)
    assert PASSWORD not in str(caught.value)


async def test_a_bad_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="not a Redis URL") as caught:
        await RedisTokenBucket.from_url(f"http://:{PASSWORD}@h/", name="AC1", rate=5)
    assert PASSWORD not in str(caught.value)


async def test_redis_going_away_mid_run_raises_and_never_bursts(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{own_server.port}/0"
    limiter = await RedisTokenBucket.from_url(url, name="AC1", rate=100)
    slots = limiter.semaphore(5)
    try:
        assert PASSWORD not in repr(limiter)
        assert PASSWORD not in repr(slots)
        holder = await slots.acquire()
        await limiter.acquire()
        own_server.stop()
        caplog.set_level(logging.DEBUG, logger="twilio_numbers_async")

        with pytest.raises(RedisLimiterError) as caught:
            await limiter.acquire()
        assert caught.value.sent is False
        assert PASSWORD not in str(caught.value)
        with pytest.raises(RedisLimiterError):
            await slots.acquire()
        # Releasing must not raise (it would hide the outcome of the request it guarded).
        await slots.release(holder)
        # Nor must a pause: it holds this process, and says it could not tell the others.
        limiter.pause(0.05)
        await asyncio.sleep(0.02)
        assert "only this process pauses" in caplog.text
        assert "comes back when its lease runs out" in caplog.text

        # Through the client: the attempts never reach Twilio, and it ends in a TransportError.
        async with Sandbox() as sandbox:
            async with sandbox.client(
                rate_limit=limiter,
                retry=RetryPolicy(max_attempts=3, initial_delay=0.01),
            ) as client:
                with pytest.raises(TransportError) as failed:
                    await client.create_incoming_phone_number(area_code="500")
            assert isinstance(failed.value, RedisLimiterError)
            assert sandbox.requests == []
        assert PASSWORD not in caplog.text
    finally:
        await limiter.aclose()


# --- through the client ---------------------------------------------------------------------


async def test_a_client_buys_through_the_shared_limiter_and_slots(
    redis_server: RedisServer, name: str
) -> None:
    limiter = await RedisTokenBucket.from_url(redis_server.url, name=name, rate=50, capacity=5)
    try:
        slots = limiter.semaphore(3, poll_interval=0.01)
        async with Sandbox(faults=Faults(latency=0.02)) as sandbox:
            async with sandbox.client(rate_limit=limiter, max_concurrency=slots) as client:
                requests = [NumberPurchase(area_code="500") for _ in range(15)]
                outcomes = [o async for o in client.purchase_many(requests, concurrency=8)]
            assert all(outcome.ok for outcome in outcomes)
            assert max_in_flight(sandbox) <= 3
        assert await slots.in_use() == 0
    finally:
        await limiter.aclose()


def max_in_flight(sandbox: Sandbox) -> int:
    """The most requests the sandbox was serving at once."""
    events = []
    for record in sandbox.requests:
        assert record.finished_at is not None
        events += [(record.started_at, 1), (record.finished_at, -1)]
    level = peak = 0
    for _, step in sorted(events):  # at equal times -1 sorts first: a handover is no overlap
        level += step
        peak = max(peak, level)
    return peak


# --- several worker processes ---------------------------------------------------------------


class Worker:
    """A worker process (``tests._redis``), talking JSON lines on stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def event(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(WORKER_TIMEOUT):
            line = await self.process.stdout.readline()
        if not line:
            _, err = await self.process.communicate()
            raise AssertionError(f"worker ended early:\n{err.decode(errors='replace')}")
        event: dict[str, Any] = json.loads(line)
        return event

    async def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()

    async def finish(self) -> str:
        """Wait for a clean exit; returns its stderr."""
        async with asyncio.timeout(WORKER_TIMEOUT):
            _, err = await self.process.communicate()
        text = err.decode(errors="replace")
        assert self.process.returncode == 0, text
        return text


@contextlib.asynccontextmanager
async def workers(count: int, *args: str) -> AsyncIterator[list[Worker]]:
    """Start ``count`` workers; kill whatever is left of them on the way out."""
    started: list[Worker] = []
    try:
        for index in range(count):
            process = await asyncio.create_subprocess_exec(
                *worker_command(*args, "--tag", f"w{index}"),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            started.append(Worker(process))
        yield started
    finally:
        for worker in started:
            if worker.process.returncode is None:
                worker.process.kill()
            await worker.process.communicate()


def worker_args(mode: str, redis: RedisServer, sandbox: Sandbox, name: str, **kw: Any) -> list[str]:
    args = [
        mode,
        "--redis",
        redis.url,
        "--sandbox",
        sandbox.url,
        "--account",
        sandbox.account_sid,
        "--token",
        sandbox.auth_token,
        "--name",
        name,
    ]
    for key, value in kw.items():
        args += [f"--{key}", str(value)]
    return args


async def run_buyers(started: list[Worker]) -> list[dict[str, Any]]:
    for worker in started:
        assert (await worker.event())["event"] == "ready"
    for worker in started:  # all at once, so that they contend from the first request
        await worker.go()
    results = [await worker.event() for worker in started]
    for worker in started:
        stderr = await worker.finish()
        # Warnings are errors in the workers (-W error); asyncio's complaints are log lines.
        for complaint in ("Traceback", "was destroyed", "never awaited", "Unclosed"):
            assert complaint not in stderr, stderr
    return results


def posts(sandbox: Sandbox) -> list[Any]:
    return [record for record in sandbox.requests if record.method == "POST"]


async def test_worker_processes_share_one_rate(redis_server: RedisServer, name: str) -> None:
    rate, capacity, each = 20, 4, 12
    async with Sandbox() as sandbox:
        args = worker_args(
            "buy", redis_server, sandbox, name, rate=rate, capacity=capacity, count=each
        )
        async with workers(3, *args) as started:
            results = await run_buyers(started)
        assert [r["outcomes"] for r in results] == [["bought"] * each] * 3
        records = posts(sandbox)
    assert len(records) == 3 * each
    times = [record.started_at for record in records]
    # The sandbox sees a request some time after Redis granted its token: the reply's trip, the
    # worker's loop reaching the task, aiohttp writing, the sandbox's loop reading. Only the
    # spread of that delay can crowd grants together; 0.1 s (two tokens at this rate) covers it
    # on a loaded CI machine, and three processes each limited on its own would exceed it by
    # far (they would start 3 * capacity at once and run at 3 * rate).
    assert worst_excess(times, rate, capacity, slack=0.1) <= 0
    span = times[-1] - times[0]
    assert span >= (3 * each - capacity) / rate - 0.1
    # First come, first served across processes: no worker waits for the others to finish.
    # (Only "some": a worker the OS schedules less on a busy machine asks less often.)
    first_half = {record.form["FriendlyName"].split("-")[0] for record in records[: 3 * each // 2]}
    assert first_half == {"w0", "w1", "w2"}


async def test_a_429_in_one_worker_pauses_them_all(redis_server: RedisServer, name: str) -> None:
    rate, capacity, each, retry_after = 30, 3, 12, 1
    async with Sandbox() as sandbox:
        args = worker_args(
            "buy", redis_server, sandbox, name, rate=rate, capacity=capacity, count=each
        )
        async with workers(3, *args) as started:
            for worker in started:
                assert (await worker.event())["event"] == "ready"
            for worker in started:
                await worker.go()
            # Mid-run: the sandbox has no event for "n requests seen", so poll its records.
            while len(posts(sandbox)) < 6:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            sandbox.script(Fault.rate_limited(retry_after=retry_after))
            results = [await worker.event() for worker in started]
            for worker in started:
                await worker.finish()
        assert [r["outcomes"] for r in results] == [["bought"] * each] * 3
        records = posts(sandbox)
    limited = [record for record in records if record.status == 429]
    assert len(limited) == 1
    assert limited[0].finished_at is not None
    answered = limited[0].finished_at
    # The worker that got the 429 pauses the shared bucket one round trip after reading it;
    # requests granted before that may still be on their way for a moment (longer on a busy
    # machine). After 0.2 s nobody, in any process, may start a request until the pause ends.
    quiet = [r.started_at for r in records if answered + 0.2 <= r.started_at < answered + 1.0]
    assert quiet == []
    assert any(r.started_at >= answered + retry_after for r in records)
    assert len(records) == 3 * each + 1


async def test_a_killed_worker_gives_its_slots_back_after_the_lease(
    redis_server: RedisServer, name: str
) -> None:
    lease, slots_count = 1.0, 3
    async with Sandbox(faults=Faults(latency=30.0)) as sandbox:
        args = worker_args(
            "hold", redis_server, sandbox, name, slots=slots_count, lease=lease, count=5
        )
        async with workers(1, *args) as started:
            (holder,) = started
            assert (await holder.event()) == {"event": "holding", "slots": slots_count}
            ours = await RedisSemaphore.from_url(
                redis_server.url, name=name, limit=slots_count, lease=lease, poll_interval=0.01
            )
            try:
                assert await ours.in_use() == slots_count
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await ours.acquire()
                holder.process.send_signal(signal.SIGKILL)
                await holder.process.wait()
                killed_at = now()
                for _ in range(slots_count):
                    await asyncio.wait_for(ours.acquire(), lease + 1.0)
                waited = now() - killed_at
            finally:
                await ours.aclose()
        # Its requests were in flight at the sandbox, holding all its slots and no more.
        assert len(sandbox.requests) == slots_count
    # Renewed every lease/3, so the leases ran out between 2/3 of a lease and a lease after
    # the kill; a poll interval and a loaded machine's lag come on top.
    assert 2 / 3 * lease - 0.1 <= waited < lease + 0.5
