"""The Redis-backed limiter and slot cap, against a real ``redis-server`` (no mock of Redis).

The bucket runs on the Redis server's clock, which no test can patch, and a busy machine delivers
its answers late. So no outcome here depends on how fast the machine is:

- what the limiter decided is read back from the server itself (:class:`~tests._redis.ServerLog`,
  by ``MONITOR``): each grant, refusal and told wait at the server's time, where the guarantees
  are stated, so window bounds and pauses are checked exactly;
- who goes first is decided by handshakes (a waiter's place in the queue, as Redis reports it),
  never by a sleep; where the order of grants is the point, the rate is so slow (:data:`SLOW`)
  that the test hands out every token and moves the loop's clock to wake the waiters;
- a time measured here is only ever bounded from below (a busy machine only adds to it); what
  must merely happen gets :data:`LIVENESS`, which only a hang reaches.

Without ``redis-server`` these tests skip, unless ``TWILIO_NUMBERS_REQUIRE_REDIS=1`` (CI) makes
that a failure.
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
from typing import TYPE_CHECKING, Any, cast

import pytest
from redis.asyncio import Redis

from tests._clock import FakeClock
from tests._redis import (
    ROOT,
    Pause,
    RedisServer,
    ServerLog,
    Take,
    required_binary,
    worker_command,
)
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
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
        Iterator,
        Sequence,
    )

PASSWORD = "hunter2-must-never-leak"
#: The longest anything that must happen may take: a worker to answer, background work to land,
#: a waiter to be served. It catches hangs; a busy machine stays far inside it.
LIVENESS = 30.0
#: The server writes its times to the microsecond: the slack of an exact check on its clock.
EPSILON = 2e-6
#: Tokens per second at which the server's clock adds nothing while a test runs (one per 1000 s).
#: A test that decides who gets each token hands them out itself (:func:`give`); its waiters,
#: told to come back in thousands of seconds, sleep on a loop clock the test moves.
SLOW = 0.001
#: For limiters used under a fake loop clock: redis-py's socket timeouts run on the loop's clock,
#: and moving it would time out an answer still on its way.
NO_TIMEOUTS = {"socket_timeout": None, "socket_connect_timeout": None}


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
    """A plain client, to look at the server from outside the limiter (and with no timeout, as it
    is used under a fake loop clock too)."""
    client = Redis.from_url(redis_server.url, socket_timeout=None, socket_connect_timeout=None)
    yield client
    await client.aclose()


@pytest.fixture
async def server_log(redis_server: RedisServer) -> AsyncIterator[ServerLog]:
    """What the limiter's scripts decided on the session's server from now on."""
    async with ServerLog(redis_server.url) as log:
        yield log


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


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` is true (background work landing); fail after :data:`LIVENESS`."""
    async with asyncio.timeout(LIVENESS):
        while not await check():  # noqa: ASYNC110 - the state is in Redis: nothing to await
            await asyncio.sleep(0.005)


async def queued(admin: Redis, name: str) -> int:
    """Waiters in the bucket's queue in Redis (the key layout is the module's documented one)."""
    return await admin.zcard(f"twilio-numbers:{{{name}}}:bucket:queue")


async def until_queued(admin: Redis, name: str, count: int) -> None:
    """Wait until ``count`` waiters hold a place in the bucket's queue."""

    async def check() -> bool:
        return await queued(admin, name) == count

    await eventually(check)


async def until_slots_queued(admin: Redis, name: str, count: int) -> None:
    """Wait until ``count`` tickets wait in the slots' queue (one per process at most)."""

    async def check() -> bool:
        return await admin.zcard(f"twilio-numbers:{{{name}}}:slots:queue") == count

    await eventually(check)


async def give(admin: Redis, name: str, tokens: float) -> None:
    """Put ``tokens`` in the bucket: the refill, done by hand, for a bucket at the SLOW rate."""
    await admin.hset(f"twilio-numbers:{{{name}}}:bucket", "tokens", str(tokens))


async def serve(clock: FakeClock, admin: Redis, tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Move the fake clock on, a long way at a time, until one of ``tasks`` is done.

    Each move wakes every sleeping waiter, whatever it was told; the round trip that follows
    lets their questions and Redis's answers land. No timer decides anything: the test ends
    when the tokens it handed out are taken.
    """
    pending = [task for task in tasks if not task.done()]
    while not any(task.done() for task in pending):
        await clock.advance(100 / SLOW)
        await admin.ping()


def by_ticket(takes: Iterable[Take]) -> list[list[Take]]:
    """Each acquire's asks, in order, acquires in the order they first asked."""
    asks: dict[str, list[Take]] = {}
    for take in takes:
        asks.setdefault(take.ticket, []).append(take)
    return list(asks.values())


async def server_time(admin: Redis) -> float:
    seconds, micros = await admin.time()
    return seconds + micros / 1e6


async def lease_end(admin: Redis, name: str, holder: str) -> float:
    """When the slot ``holder`` holds runs out, by the server's clock."""
    end = await admin.zscore(f"twilio-numbers:{{{name}}}:slots", holder)
    assert end is not None, "the slot is no longer held"
    return end


async def lease_ends(admin: Redis, name: str) -> list[float]:
    """When each slot held now runs out, by the server's clock, earliest first."""
    held = await admin.zrange(f"twilio-numbers:{{{name}}}:slots", 0, -1, withscores=True)
    return sorted(expiry for _, expiry in cast("list[tuple[bytes, float]]", held))


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


async def test_starts_full_then_refills_at_the_rate(bucket: Make, server_log: ServerLog) -> None:
    rate, capacity = 20, 5
    limiter = await bucket(rate=rate, capacity=capacity)
    start = now()
    for _ in range(capacity + 4):
        await limiter.acquire()
    elapsed = now() - start
    asks = by_ticket(await server_log.takes(limiter.name))
    # Five tokens at once: each granted at its first ask, where an empty bucket would say wait.
    assert [[take.granted for take in calls] for calls in asks[:capacity]] == [[True]] * capacity
    # Then one per 1/rate. An acquire whose token has not accrued yet is told to come back when
    # it will have, never later (the bucket is not merely slow), and gets it then. (One that
    # comes after a pause of the machine finds its token there.)
    for calls in asks[capacity:]:
        assert [take.granted for take in calls] in ([True], [False, True])
        assert all(0 < take.wait <= 1 / rate + EPSILON for take in calls if take.wait)
    # And never sooner: four tokens beyond the burst take 4/rate, on the server's clock, and on
    # ours (where a busy machine can only add).
    grants = [take.at for take in await server_log.takes(limiter.name) if take.granted]
    assert grants[-1] - grants[0] >= 4 / rate - EPSILON
    assert elapsed >= 4 / rate


async def test_two_processes_together_stay_within_the_window_bound(
    bucket: Make, server_log: ServerLog
) -> None:
    rate, capacity = 50, 5
    first = await bucket(rate=rate, capacity=capacity)
    second = await bucket(rate=rate, capacity=capacity)
    await asyncio.gather(*(acquire() for acquire in [first.acquire, second.acquire] * 20))
    # The bound is stated on the server's clock, where the grants are decided: there it holds
    # exactly, however late the answers reach us. Two buckets of their own would start 10 at
    # once and break it at once.
    grants = await server_log.grants(first.name)
    assert len(grants) == 40
    assert worst_excess(grants, rate, capacity, slack=EPSILON) <= 0


async def test_waiters_are_served_in_arrival_order_across_processes(
    bucket: Make, admin: Redis, name: str, server_log: ServerLog
) -> None:
    # At this rate no token comes by itself while the test runs: the test gives each one, and
    # nothing depends on how fast the machine is.
    first = await bucket(rate=SLOW, capacity=6, redis_options=NO_TIMEOUTS)
    second = await bucket(rate=SLOW, capacity=6, redis_options=NO_TIMEOUTS)
    await first.acquire(6)  # now empty, and it stays empty
    order: list[int] = []

    async def waiter(index: int, limiter: RedisTokenBucket) -> None:
        await limiter.acquire()
        order.append(index)

    tasks = []
    for index in range(6):
        tasks.append(asyncio.create_task(waiter(index, (first, second)[index % 2])))
        await until_queued(admin, name, index + 1)  # it has its place before the next one asks
    with FakeClock(now()).installed() as clock:
        for _ in range(6):
            # One token: enough for the first in line, and for nobody behind it. Every waiter
            # comes back and asks (the clock moves past all their wake-ups), in whatever order
            # the machine runs them: only the first in line may take it.
            await give(admin, name, 1)
            await serve(clock, admin, tasks)
    assert order == list(range(6))
    # Each was told, on arrival, to come back once the tokens of everyone ahead of it and its
    # own had accrued: waits that grow in arrival order, so that on time they come back in it.
    arrivals = [calls[0] for calls in by_ticket((await server_log.takes(name))[1:])]
    waits = [take.wait for take in arrivals if take.wait is not None]
    assert len(waits) == len(arrivals) == 6
    assert waits == sorted(waits)
    assert len(set(waits)) == 6


async def test_round_trips_per_acquire_are_bounded(
    bucket: Make, admin: Redis, server_log: ServerLog
) -> None:
    uncontended = await bucket(rate=1000, capacity=100)
    for _ in range(10):
        await uncontended.acquire()
    # One round trip each when the tokens are there.
    assert [t.granted for t in await server_log.takes(uncontended.name)] == [True] * 10

    name = f"AC{uuid.uuid4().hex}"
    first = await bucket(rate=SLOW, capacity=1, name=name, redis_options=NO_TIMEOUTS)
    second = await bucket(rate=SLOW, capacity=1, name=name, redis_options=NO_TIMEOUTS)
    await first.acquire()  # now empty, and it stays empty: the test gives each token
    for limiter in [first, second] * 5:
        waiter = asyncio.create_task(limiter.acquire())
        await until_queued(admin, name, 1)
        await give(admin, name, 1)
        with FakeClock(now()).installed() as clock:
            await serve(clock, admin, [waiter])
    # Two when it must wait, whichever process asks: one to take its place and be told how long,
    # one to take the token when it comes back, never a poll. (How waiters together keep to
    # that: test_waiters_are_served_in_arrival_order_across_processes.)
    asks = by_ticket((await server_log.takes(name))[1:])
    assert [[take.granted for take in calls] for calls in asks] == [[False, True]] * 10


async def test_a_pause_in_one_process_holds_the_others_and_empties_the_bucket(
    bucket: Make, server_log: ServerLog
) -> None:
    rate, capacity = 20, 5
    pausing = await bucket(rate=rate, capacity=capacity)
    other = await bucket(rate=rate, capacity=capacity)
    start = now()
    pausing.pause(0.3)
    pausing.pause(0.05)  # a shorter pause never shortens the one in force

    async def published() -> bool:
        events = await server_log.bucket_events(pausing.name)
        return sum(isinstance(event, Pause) for event in events) == 2

    # The other process knows nothing locally: Redis holds it, once the pauses are there.
    await eventually(published)
    times = await grant_times([other.acquire] * 3, start=start)
    events = await server_log.bucket_events(pausing.name)
    pauses = [event for event in events if isinstance(event, Pause)]
    assert sorted(pause.seconds for pause in pauses) == [0.05, 0.3]
    until = pauses[-1].until
    assert until == max(pause.until for pause in pauses)
    # The bucket was full, but the pause emptied it: on the server's clock, the first token
    # comes 1/rate after the pause, the k-th k/rate after it. Asking meanwhile, the other
    # process is told to come back then, not later.
    takes = [event for event in events if isinstance(event, Take)]
    grants = [take.at for take in takes if take.granted]
    assert len(grants) == 3
    assert all(at >= until + k / rate - EPSILON for k, at in enumerate(grants, start=1))
    first_asks = [calls[0] for calls in by_ticket(takes)]
    assert all(t.at + t.wait <= until + 3 / rate + EPSILON for t in first_asks if t.wait)
    # On our clock too (where a busy machine can only add).
    assert times[0] >= 0.3 + 1 / rate
    assert times[-1] >= 0.3 + 3 / rate


async def test_the_pausing_process_holds_at_once(bucket: Make) -> None:
    limiter = await bucket(rate=100, capacity=10)
    start = now()
    limiter.pause(0.2)
    await limiter.acquire()
    assert now() - start >= 0.2 + 1 / 100


async def test_pause_checks_its_argument(bucket: Make, server_log: ServerLog) -> None:
    limiter = await bucket(rate=10)
    with pytest.raises(ValueError, match="finite"):
        limiter.pause(float("nan"))
    limiter.pause(0)
    limiter.pause(-1)
    await limiter.acquire()
    # Nothing published, and a full bucket: the token at the first ask.
    events = await server_log.bucket_events(limiter.name)
    assert [(type(event), getattr(event, "granted", None)) for event in events] == [(Take, True)]


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
    bucket: Make, admin: Redis, name: str, server_log: ServerLog
) -> None:
    # A capacity of 2, so that a place left in the queue would cost the next one its token (a
    # bucket of 1, once full, serves whoever asks).
    limiter = await bucket(rate=SLOW, capacity=2)
    other = await bucket(rate=SLOW, capacity=2)
    await limiter.acquire(2)  # now empty, and it stays empty: the test gives the token
    doomed = asyncio.create_task(limiter.acquire())
    await until_queued(admin, name, 1)  # told to come back in 1000 s
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await until_queued(admin, name, 0)  # the ticket is withdrawn in the background
    await give(admin, name, 1)
    async with asyncio.timeout(LIVENESS):
        await other.acquire()
    # The token went to the next one, at its first ask: the cancelled acquire took nothing, and
    # holds no place ahead of it.
    takes = (await server_log.takes(name))[1:]
    assert [take.granted for take in takes] == [False, True]
    assert takes[0].ticket != takes[1].ticket


async def test_a_silent_waiter_does_not_hold_up_a_full_bucket(
    bucket: Make, admin: Redis, name: str, server_log: ServerLog
) -> None:
    limiter = await bucket(rate=10, capacity=1)
    # A waiter queued ahead that went silent (its process hung, say), its place not expired.
    stamp = (await admin.time())[0]
    await admin.zadd(f"twilio-numbers:{{{name}}}:bucket:queue", {"1:silent": stamp})
    await admin.zadd(f"twilio-numbers:{{{name}}}:bucket:deadlines", {"1:silent": stamp + 60})
    start = now()
    await limiter.acquire()  # the bucket is full: waiting for the silent one would waste it
    assert [take.granted for take in await server_log.takes(name)] == [True]  # not in a minute
    # Empty now, it is that waiter's turn first: ours comes only once the bucket is full again.
    await limiter.acquire()
    assert now() - start >= 1 / 10


async def test_several_tokens_at_once_wait_their_turn(
    bucket: Make, admin: Redis, name: str, server_log: ServerLog
) -> None:
    limiter = await bucket(rate=SLOW, capacity=4, redis_options=NO_TIMEOUTS)
    await limiter.acquire(4)  # now empty, and it stays empty: the test gives the tokens
    three = asyncio.create_task(limiter.acquire(3))
    await until_queued(admin, name, 1)
    await give(admin, name, 3)  # the three's tokens, and enough for one token
    one = asyncio.create_task(limiter.acquire())

    async def answered() -> bool:
        return one.done() or await queued(admin, name) == 2

    await eventually(answered)
    assert not one.done(), "one token overtook the three asked for before it"
    with FakeClock(now()).installed() as clock:
        # Both come back, in whatever order: the three take theirs, the one is turned away.
        await serve(clock, admin, [three, one])
        assert three.done()
        assert not one.done()
        await give(admin, name, 1)
        await serve(clock, admin, [one])
    takes = (await server_log.takes(name))[1:]
    # Told on arrival to wait until 4 tokens were there, the three's and its own, not 1.
    assert takes[1].tokens == 1
    assert takes[1].wait is not None
    assert round(3 + takes[1].wait * SLOW) == 4
    granted = [take.tokens for take in takes if take.granted]
    assert granted == [3, 1]


async def test_names_keep_accounts_apart(bucket: Make, server_log: ServerLog) -> None:
    one = await bucket(rate=1, capacity=2)
    two = await bucket(rate=1, capacity=2, name=f"AC{uuid.uuid4().hex}")
    await one.acquire(2)
    # A full bucket of its own, where a shared one would have said wait 2 s.
    await two.acquire(2)
    assert [take.granted for take in await server_log.takes(two.name)] == [True]


async def test_closed_bucket_refuses_use(bucket: Make) -> None:
    limiter = await bucket(rate=10)
    await limiter.aclose()
    await limiter.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await limiter.acquire()


# --- the slots ------------------------------------------------------------------------------


async def test_slots_are_capped_across_processes(semaphore: Make, admin: Redis, name: str) -> None:
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
        await until_slots_queued(admin, name, 0)  # the timed-out one gave up its place
        waiting = asyncio.create_task(one.acquire())
        await until_slots_queued(admin, name, 1)  # it asked, and waits its turn
        assert not waiting.done()
    # Released by the other process: seen at a poll.
    third = await asyncio.wait_for(waiting, LIVENESS)
    assert await one.in_use() == 2
    await one.release(first)
    await one.release(third)
    await one.release(third)  # idempotent
    assert await one.in_use() == 0
    assert one.held == 0


async def test_a_waiter_behind_another_polls_rather_than_spins(
    semaphore: Make, admin: Redis, name: str
) -> None:
    holder = await semaphore(limit=1)
    first_in_line = await semaphore(limit=1, poll_interval=0.5)
    behind = await semaphore(limit=1, poll_interval=0.05)
    held = await holder.acquire()
    ahead = asyncio.create_task(first_in_line.acquire())
    await until_slots_queued(admin, name, 1)  # its ticket is first
    waiting = asyncio.create_task(behind.acquire())
    await until_slots_queued(admin, name, 2)
    # A slot is free now, but the first in line won't look for up to 0.5 s: the one behind it
    # must keep polling at its interval in the meantime, not ask Redis again at once. (A busy
    # machine only makes fewer polls.)
    await holder.release(held)
    before = await eval_calls(admin)
    await asyncio.sleep(0.3)
    assert await eval_calls(admin) - before < 20  # ~6 polls; a spinning waiter makes hundreds
    # Each gets the slot in turn (the first in line first, unless it came back so late that
    # its place ran out) and gives it back.
    turns = {ahead: first_in_line, waiting: behind}
    async with asyncio.timeout(LIVENESS):
        while turns:
            done, _ = await asyncio.wait(turns, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                await turns.pop(task).release(task.result())


async def test_a_local_release_wakes_a_local_waiter_at_once(
    semaphore: Make, admin: Redis, name: str
) -> None:
    # Its next poll, and the end of the holder's lease, are an hour away: only the release can
    # wake the waiter within the test.
    slots = await semaphore(limit=1, poll_interval=3600.0, lease=3600.0)
    holder = await slots.acquire()
    waiting = asyncio.create_task(slots.acquire())
    await until_slots_queued(admin, name, 1)
    await slots.release(holder)
    await slots.release(await asyncio.wait_for(waiting, LIVENESS))


async def test_leases_are_renewed_while_held(semaphore: Make, admin: Redis, name: str) -> None:
    lease = 30.0
    slots = await semaphore(limit=1, lease=lease, redis_options=NO_TIMEOUTS)
    async with slots as holder:
        ends = [await lease_end(admin, name, holder)]
        # The renewals run every lease / 3 on the loop's clock: the test moves that clock, so
        # the lease, on the server's, is renewed long before it could run out.
        with FakeClock(now()).installed() as clock:
            for _ in range(2):
                while (end := await lease_end(admin, name, holder)) == ends[-1]:
                    await clock.advance(lease / 3)
                ends.append(end)
        assert await slots.in_use() == 1
    assert ends == sorted(set(ends))  # each renewal moved the end on


async def test_a_dead_holders_slots_come_back_after_the_lease(
    semaphore: Make, admin: Redis, name: str, server_log: ServerLog
) -> None:
    lease = 0.5
    dying = await semaphore(limit=2, lease=lease)
    await dying.acquire()
    await dying.acquire()
    # Closing without releasing stops the renewals, as death would.
    await dying.aclose()
    ends = await lease_ends(admin, name)
    closed_at = await server_time(admin)
    # Renewed at most a lease ahead: by the server's clock they run out within a lease.
    assert len(ends) == 2
    assert all(end <= closed_at + lease for end in ends)
    survivor = await semaphore(limit=2, lease=lease)
    async with asyncio.timeout(LIVENESS):
        await survivor.acquire()
        await survivor.acquire()
    # And not a moment sooner: each came back when a lease ran out, not before.
    granted = [take.at for take in await server_log.slot_takes(name) if take.granted][2:]
    assert all(at >= end - EPSILON for at, end in zip(granted, ends, strict=True))


async def test_a_cancelled_slot_acquire_holds_nothing(
    semaphore: Make, admin: Redis, name: str, server_log: ServerLog
) -> None:
    slots = await semaphore(limit=1)
    other = await semaphore(limit=1)
    holder = await slots.acquire()
    doomed = asyncio.create_task(other.acquire())
    await until_slots_queued(admin, name, 1)  # it waits, in the queue
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await slots.release(holder)
    await until_slots_queued(admin, name, 0)  # its place is given up in the background
    assert await slots.in_use() == 0
    await asyncio.wait_for(other.acquire(), LIVENESS)
    # At its first ask: nothing of the cancelled one stood in its way.
    last = (await server_log.slot_takes(name))[-1]
    assert last.granted
    assert [take.ticket for take in await server_log.slot_takes(name)].count(last.ticket) == 1


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
        with pytest.raises(RedisLimiterError):
            await limiter.acquire()  # which first waits for the pause's publication to end
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
        async with asyncio.timeout(LIVENESS):
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
        async with asyncio.timeout(LIVENESS):
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


async def run_buyers(
    started: list[Worker], admin: Redis, redis: RedisServer, name: str
) -> list[dict[str, Any]]:
    for worker in started:
        assert (await worker.event())["event"] == "ready"
    # Hold every slot until each worker waits for one (each process has one waiter asking Redis
    # at a time): then they all contend from the first request, however late one of them runs.
    gate = await RedisSemaphore.from_url(redis.url, name=name, limit=8)  # the workers' --slots
    try:
        held = [await gate.acquire() for _ in range(gate.limit)]
        for worker in started:
            await worker.go()
        await until_slots_queued(admin, name, len(started))
        for holder in held:
            await gate.release(holder)
    finally:
        await gate.aclose()
    results = [await worker.event() for worker in started]
    for worker in started:
        stderr = await worker.finish()
        # Warnings are errors in the workers (-W error); asyncio's complaints are log lines.
        for complaint in ("Traceback", "was destroyed", "never awaited", "Unclosed"):
            assert complaint not in stderr, stderr
    return results


def posts(sandbox: Sandbox) -> list[Any]:
    return [record for record in sandbox.requests if record.method == "POST"]


async def test_worker_processes_share_one_rate(
    redis_server: RedisServer, name: str, admin: Redis, server_log: ServerLog
) -> None:
    rate, capacity, each = 20, 4, 12
    async with Sandbox() as sandbox:
        args = worker_args(
            "buy", redis_server, sandbox, name, rate=rate, capacity=capacity, count=each
        )
        async with workers(3, *args) as started:
            results = await run_buyers(started, admin, redis_server, name)
        assert [r["outcomes"] for r in results] == [["bought"] * each] * 3
        records = posts(sandbox)
    assert len(records) == 3 * each
    # On the server's clock, where Redis granted them, the three processes together kept to
    # one bucket's bound, exactly. Three processes each limited on its own would start
    # 3 * capacity at once and run at 3 * rate.
    grants = await server_log.grants(name)
    assert len(grants) == 3 * each
    assert worst_excess(grants, rate, capacity, slack=EPSILON) <= 0
    # First come, first served across processes: no worker waits for the others to finish.
    first_half = {record.form["FriendlyName"].split("-")[0] for record in records[: 3 * each // 2]}
    assert first_half == {"w0", "w1", "w2"}


async def test_a_429_in_one_worker_pauses_them_all(
    redis_server: RedisServer, name: str, server_log: ServerLog
) -> None:
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
    assert any(r.started_at >= limited[0].finished_at + retry_after for r in records)
    assert len(records) == 3 * each + 1
    # The worker that got it published a pause of Retry-After. From the moment it was in
    # Redis, no process was granted a token until it ended and the emptied bucket had refilled
    # one (exactly, on the server's clock), though they asked: each was told to come back then.
    events = await server_log.bucket_events(name)
    (at,) = [i for i, event in enumerate(events) if isinstance(event, Pause)]
    pause = events[at]
    assert isinstance(pause, Pause)
    assert pause.seconds == retry_after
    after = [event for event in events[at + 1 :] if isinstance(event, Take)]
    assert min(t.at for t in after if t.granted) >= pause.until + 1 / rate - EPSILON
    held = [t for t in after if not t.granted and t.at < pause.until]
    assert held
    assert all(t.at + (t.wait or 0) >= pause.until for t in held)
    # Every POST, the 429's too, took its token from the shared bucket.
    assert sum(t.granted for t in events if isinstance(t, Take)) == len(records)


async def test_a_killed_worker_gives_its_slots_back_after_the_lease(
    redis_server: RedisServer, name: str, admin: Redis, server_log: ServerLog
) -> None:
    lease, slots_count = 1.0, 3
    async with Sandbox(faults=Faults(latency=30.0)) as sandbox:
        args = worker_args(
            "hold", redis_server, sandbox, name, slots=slots_count, lease=lease, count=5
        )
        async with workers(1, *args) as started:
            (holder,) = started
            assert (await holder.event()) == {"event": "holding", "slots": slots_count}

            async def arrived() -> bool:
                return len(sandbox.requests) == slots_count

            await eventually(arrived)  # in flight at the sandbox, which answers in 30 s
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
                ends = await lease_ends(admin, name)
                killed_at = await server_time(admin)
                async with asyncio.timeout(LIVENESS):
                    for _ in range(slots_count):
                        await ours.acquire()
            finally:
                await ours.aclose()
        # Its requests were in flight at the sandbox, holding all its slots and no more.
        assert len(sandbox.requests) == slots_count
    # Renewed at most a lease ahead, the slots ran out within a lease of the kill, and came
    # back only then, not a moment before (both on the server's clock).
    assert len(ends) == slots_count
    assert all(end <= killed_at + lease for end in ends)
    granted = [take.at for take in await server_log.slot_takes(name) if take.granted]
    assert all(at >= end - EPSILON for at, end in zip(granted[slots_count:], ends, strict=True))
