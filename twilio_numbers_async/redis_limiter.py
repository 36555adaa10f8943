"""One rate limit and one in-flight cap shared by every process and machine that buys on an account.

Twilio's limits are per account. When a bulk job runs as several workers, their combined rate
must stay under the account's limit, and a 429 seen by one of them must slow all of them. This
module keeps that shared state in Redis (the ``[redis]`` extra: redis-py's ``redis.asyncio``)::

    from twilio_numbers_async.redis_limiter import RedisTokenBucket

    bucket = await RedisTokenBucket.from_url(REDIS_URL, name=account_sid, rate=25)
    try:
        slots = bucket.semaphore(25, lease=30)
        async with TwilioNumbersClient(
            account_sid, auth_token, rate_limit=bucket, max_concurrency=slots
        ) as client:
            async for outcome in client.purchase_many(requests):
                ...
    finally:
        await bucket.aclose()

- :class:`RedisTokenBucket` is a :class:`~twilio_numbers_async.ratelimit.Limiter` with the
  guarantees of the in-process :class:`~twilio_numbers_async.ratelimit.TokenBucket`, across
  processes: it starts full; over any window of ``T`` seconds all its users together are granted
  at most ``capacity + rate * T`` tokens; :meth:`~RedisTokenBucket.pause` in any process empties
  the bucket and holds every process until the pause ends, after which the refill resumes at
  ``rate``; waiters are served first come, first served, whichever process they are in.
- :class:`RedisSemaphore` caps the requests in flight across processes. It is an async context
  manager that holds one slot while entered, which is what the client's ``max_concurrency=``
  takes. Slots are leases that a background task renews: a worker that dies (``SIGKILL``, a lost
  machine) gives its slots back when their lease runs out.
- :class:`RedisLimiterError` (a :class:`~twilio_numbers_async.errors.TransportError` with
  ``sent=False``) is raised when Redis can't be used; no request was sent to Twilio.

How it works, and why
---------------------

*A token bucket in a Lua script, on the server's clock.* Each acquire runs one script, atomically,
on the Redis server (``EVALSHA``, falling back to ``EVAL`` through redis-py's ``register_script``).
The script refills the bucket from ``redis.call('TIME')``, so machines whose clocks disagree still
agree on the bucket; only the rate at which clocks tick matters, and that differs by parts per
million. (Should the server's own clock be stepped, a step forward refills at most a full bucket,
and a step back holds everyone for as long as the step.) The state is a hash of two numbers
(tokens, and the time up to which they are accounted for), exactly the in-process bucket's; a pause
sets that time to the pause's end, in the future, which both holds everyone and restarts the refill
from empty.

*Waiting without hammering Redis, first come first served.* When the script can't grant, it puts
the caller's ticket in a queue (a sorted set ordered by arrival) and answers how long until the
tokens for every waiter ahead *and* this one will have accrued. The caller sleeps that long (plus
a tiny jitter) and asks again. A waiter is granted when the tokens cover the demand of those ahead
of it as well as its own, so nobody overtakes an earlier waiter that comes back on time. The one
exception is a full bucket: it can bank nothing more for those ahead (who are late, or they would
have drained it), so it serves whoever asks rather than lose tokens while it waits for them. In
steady state an acquire costs one round trip when tokens are there and two when it must wait,
whatever the number of processes; a few more when waiters come back late (with a capacity of 1
at high rates, mostly) or a pause starts meanwhile. A ticket is a lease too: it expires a little
after the time its holder was told to come back, so a waiter that dies gives up its place by
itself.

*Pauses reach every process.* :meth:`RedisTokenBucket.pause` is synchronous (the client calls it
from a tenacity callback): it records the pause locally at once, so this process holds at once,
and publishes it to Redis in a background task; every grant is decided by the script, which
honours the shared pause. Each acquire in the pausing process also waits for that publication to
land before it asks Redis again, so it can't slip through before the pause is shared. A failed
publication is logged (the other processes then learn of the limit from their own 429s); it
never raises into the caller.

*Cancellation.* A cancelled acquire takes no token: while it sleeps it holds only its ticket,
which is withdrawn in the background (or expires). Each script runs in a task of its own that
the caller awaits through ``asyncio.shield``, so a cancellation always takes effect at once
(awaiting redis-py directly, Python 3.11 can swallow it) and never cuts a command in half. The
one exception is an acquire cancelled while its script is running: if the script grants the
token, the grant goes to nobody and the token is spent unused. It is not given back: a refund,
coming after other grants, could let the bucket exceed its bound, while a token spent and unused
only makes everyone a little slower, never faster: the safe direction. A semaphore acquire
cancelled at that moment does give back the slot the script may grant, once the script is done,
rather than hold it for a lease.

*Redis unreachable.* :meth:`~RedisTokenBucket.from_url` and :meth:`~RedisTokenBucket.check`
PING the server and load the scripts, so a wrong URL, a missing password or a server that
refuses Lua fails at start with a clear :class:`RedisLimiterError`. Mid-run, an acquire that
can't reach Redis raises :class:`RedisLimiterError` rather than letting the request through: no
fallback to a local bucket, and certainly never an unlimited burst. The client treats it as a
failure before sending (``sent=False``): it retries with its policy's backoff, each retry asking
Redis again, and reports it once the retries are spent. A slot that can't be released because
Redis went away is logged and comes back when its lease runs out.

*Names.* Every key starts with ``prefix`` and the ``name`` given (the account SID, usually), so
two accounts sharing a Redis never share a bucket. The name is in braces, a Redis Cluster hash
tag that would keep a bucket's keys on one node; the classes take a plain ``redis.asyncio.Redis``
client today. Keys carry an expiry, so an idle bucket leaves nothing behind (a
missing bucket reads as full, which is what an idle one would be).

*Secrets.* A Redis URL may carry a password: reprs, logs and errors name Redis by scheme, host,
port and database only.

Why not the ``limits`` library? It has asyncio Redis storages (coredis or redis-py) and several
strategies (fixed, moving and sliding windows; token bucket and GCRA in recent versions), but its
API is ``hit``/``test``: it answers yes or no and leaves waiting to the caller, who would have to
poll, with no order among pollers (no fairness, and every process polling at once after a refill).
Its Redis scripts take the time from the calling process, so machines with skewed clocks
disagree. It has nothing like a pause that empties the bucket and holds everyone for a
``Retry-After``, nor an in-flight cap with leases. Those are the behaviours this library needs,
and they come down to a few short Lua scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import numbers
import random
import uuid
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

try:
    from redis.asyncio import Redis
    from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "twilio_numbers_async.redis_limiter needs redis-py: "
        "pip install 'twilio-numbers-async[redis]'"
    ) from exc

from .errors import TransportError
from .ratelimit import _bad_tokens, _finite

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping, Sequence
    from types import TracebackType

    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_PREFIX", "RedisLimiterError", "RedisSemaphore", "RedisTokenBucket"]

logger = logging.getLogger("twilio_numbers_async")

_T = TypeVar("_T")
#: A script running in a task of its own (see ``_RedisBacked._start``).
_Call = asyncio.Task[Any]

#: The first part of every key, before the bucket's name.
DEFAULT_PREFIX: Final = "twilio-numbers"

#: How long past the moment a waiter was told to come back its place in the queue is kept. It
#: covers a busy event loop and a slow round trip (a waiter later than that queues again, at the
#: back); a waiter that dies gives up its place after it, so it also bounds how long a dead
#: waiter can hold up those behind it.
_TICKET_GRACE: Final = 0.5
#: The most a waiter adds to its sleep at random, so that waiters told the same time spread out.
_MAX_JITTER: Final = 0.002
#: How long aclose() waits for pauses and releases still being sent to Redis.
_CLOSE_TIMEOUT: Final = 5.0
#: Applied by from_url() unless given: never wait forever on a Redis that does not answer.
_SOCKET_TIMEOUT: Final = 5.0

# The bucket. KEYS: state hash, queue (ticket -> arrival), ticket deadlines (ticket -> expiry),
# heavy (tickets wanting more than 1 token -> arrival). ARGV: rate, capacity, tokens wanted,
# ticket ("<tokens>:<hex>"), grace. Returns {1, 0} when granted, else {0, microseconds to wait}.
# Times are the server's, in seconds; numbers are written with %.17g / %.6f because Lua's own
# number-to-string keeps only 14 digits, which would round a Unix time to 10 microseconds.
_TAKE: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local ticket = ARGV[4]
local grace = tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
  redis.call('ZREM', KEYS[4], unpack(gone))
end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local level = tonumber(state[1])
local last = tonumber(state[2])
if level == nil or last == nil then
  level = capacity
  last = now
end
if now > last then
  level = math.min(capacity, level + (now - last) * rate)
  last = now
end

local arrived = redis.call('ZSCORE', KEYS[2], ticket)
local ahead, heavy
if arrived then
  ahead = redis.call('ZRANK', KEYS[2], ticket)
  heavy = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. arrived)
else
  ahead = redis.call('ZCARD', KEYS[2])
  heavy = redis.call('ZRANGE', KEYS[4], 0, -1)
end
for _, other in ipairs(heavy) do
  if other ~= ticket then
    ahead = ahead + tonumber(string.match(other, '^(%d+):')) - 1
  end
end
local need = ahead + want
-- A full bucket can bank nothing more for the waiters ahead: they are late (on time, they would
-- have drained it), and every moment it stays full loses tokens. It serves whoever asks.
local enough = math.min(need, capacity)

if last <= now and level + rate * 0.000001 >= enough then
  level = level - want
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', level),
             'last', string.format('%.6f', last))
  redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - level) / rate * 1000) + 1000)
  if arrived then
    redis.call('ZREM', KEYS[2], ticket)
    redis.call('ZREM', KEYS[3], ticket)
    redis.call('ZREM', KEYS[4], ticket)
  end
  return {1, 0}
end

local wait = (last - now) + (need - level) / rate
if not arrived then
  local stamp = string.format('%.6f', now)
  redis.call('ZADD', KEYS[2], stamp, ticket)
  if want > 1 then redis.call('ZADD', KEYS[4], stamp, ticket) end
end
redis.call('ZADD', KEYS[3], string.format('%.6f', now + wait + grace), ticket)
local ttl = math.ceil((wait + grace) * 1000) + 1000
for i = 2, 4 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return {0, math.ceil(wait * 1000000)}
"""

# A pause. KEYS: state hash. ARGV: rate, capacity, seconds. Empties the bucket and moves the
# time it is accounted to up to the pause's end (never back). Returns the pause's end, as
# microseconds from now.
_PAUSE: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local seconds = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local last = tonumber(redis.call('HGET', KEYS[1], 'last')) or now
local resume = math.max(last, now + seconds)
redis.call('HSET', KEYS[1], 'tokens', '0', 'last', string.format('%.6f', resume))
redis.call('PEXPIRE', KEYS[1], math.ceil((resume - now + capacity / rate) * 1000) + 1000)
return math.ceil((resume - now) * 1000000)
"""

# A slot. KEYS: holders (holder -> lease expiry), queue (ticket -> arrival), ticket deadlines.
# ARGV: limit, lease, holder, ticket, ticket lease. Returns {1, 0} when granted, else
# {0, microseconds until the earliest lease runs out}.
_ACQUIRE_SLOT: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local limit = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local holder = ARGV[3]
local ticket = ARGV[4]
local ticket_lease = tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[3], unpack(gone))
end

local ahead = redis.call('ZRANK', KEYS[2], ticket)
local queued = ahead ~= false
if not queued then ahead = redis.call('ZCARD', KEYS[2]) end

if redis.call('ZCARD', KEYS[1]) + ahead < limit then
  redis.call('ZADD', KEYS[1], string.format('%.6f', now + lease), holder)
  if redis.call('PTTL', KEYS[1]) < lease * 1000 + 1000 then
    redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
  end
  if queued then
    redis.call('ZREM', KEYS[2], ticket)
    redis.call('ZREM', KEYS[3], ticket)
  end
  return {1, 0}
end

if not queued then redis.call('ZADD', KEYS[2], string.format('%.6f', now), ticket) end
redis.call('ZADD', KEYS[3], string.format('%.6f', now + ticket_lease), ticket)
local ttl = math.ceil(ticket_lease * 1000) + 1000
for i = 2, 3 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = 0
if #first == 2 then wait = math.max(0, tonumber(first[2]) - now) end
return {0, math.ceil(wait * 1000000)}
"""

# Renew leases. KEYS: holders. ARGV: lease, holder... Returns the holders whose lease had
# already run out and been taken away (they are not renewed: their slot may be someone else's).
_RENEW_SLOTS: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local lease = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local expiry = string.format('%.6f', now + lease)
local lost = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
if redis.call('PTTL', KEYS[1]) < lease * 1000 + 1000 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
end
return lost
"""

# Count live slots. KEYS: holders. Returns how many leases have not run out.
_COUNT_SLOTS: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%.6f', now), '+inf')
"""


class RedisLimiterError(TransportError):
    """The shared limiter could not use Redis, so the request was not sent to Twilio.

    ``sent`` is always ``False``: the client's retry policy treats it like a failure to
    connect (retry with backoff, then report it). ``url`` is where Redis is, without any
    password; ``method`` is the Redis operation that failed (``"PING"``, ``"EVALSHA"``...).
    The redis-py exception is the ``__cause__``.
    """

    def __init__(self, message: str, *, where: str, operation: str) -> None:
        super().__init__(message, method=operation, url=where, sent=False)


class _RedisBacked:
    """What both shared primitives share: the client, the key prefix, background tasks."""

    _redis: Redis
    _owns_client: bool
    _where: str
    _name: str
    _prefix: str
    _base: str
    _scripts: tuple[tuple[str, AsyncScript], ...]
    #: Every task this object started (script calls, publications, clean-ups) until it ends.
    _background: set[asyncio.Task[Any]]
    _closed: bool

    def __init__(self, redis: Redis, *, name: str, prefix: str) -> None:
        if not isinstance(redis, Redis):
            raise TypeError(
                f"expected a redis.asyncio.Redis client, got {type(redis).__name__}; "
                "or use from_url()"
            )
        self._redis = redis
        self._owns_client = False
        self._where = _describe(redis)
        self._name = _check_key_part("name", name)
        self._prefix = _check_key_part("prefix", prefix)
        # The name in braces is a Redis Cluster hash tag: all of a bucket's keys on one node.
        self._base = f"{self._prefix}:{{{self._name}}}"
        self._scripts = ()
        self._background = set()
        self._closed = False

    @property
    def name(self) -> str:
        """What the keys are named after: usually the account SID."""
        return self._name

    @property
    def prefix(self) -> str:
        """The first part of every key."""
        return self._prefix

    @property
    def redis(self) -> Redis:
        """The Redis client in use."""
        return self._redis

    async def check(self) -> None:
        """PING Redis and load the scripts: fail now, clearly, rather than at the first request.

        :raises RedisLimiterError: Redis can't be reached, refuses the credentials, or does
            not run Lua scripts.
        """
        operation = "PING"
        try:
            await self._redis.ping()
            operation = "SCRIPT LOAD"
            for source, _ in self._scripts:
                await self._redis.script_load(source)
        except RedisError as exc:
            raise RedisLimiterError(
                f"the shared limiter can't use Redis at {self._where} "
                f"({_describe_error(exc)}); check the URL, the password and that the server "
                "is up",
                where=self._where,
                operation=operation,
            ) from exc

    async def aclose(self) -> None:
        """Let pending background work finish (briefly), then close the client if it is ours.

        The Redis client is closed only when this object made it (:meth:`from_url`). Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        await self._stop()
        await _drain(self._background)
        if self._owns_client:
            await self._redis.aclose()

    async def _stop(self) -> None:
        """Stop this object's own background loops; overridden where there are some."""

    async def _eval(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script``; a Redis failure becomes :class:`RedisLimiterError`."""
        try:
            return await script(keys=keys, args=args)
        except RedisError as exc:
            raise RedisLimiterError(
                f"the shared limiter could not use Redis ({_describe_error(exc)}); nothing was "
                "sent to Twilio",
                where=self._where,
                operation="EVALSHA",
            ) from exc

    def _start(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> _Call:
        """Run ``script`` in a task of its own; the caller awaits it through ``asyncio.shield``.

        Two reasons. Cancelling the caller must always work, and awaiting redis-py directly
        does not guarantee it: on Python 3.11 its ``asyncio.wait_for`` around a socket write
        can swallow a cancellation that lands as the write completes (CPython gh-86296, fixed in
        3.12), and the cancelled acquire would carry on, even to a token. And a command is
        never cut in half: the script's outcome is known even after the caller is gone, so
        cleaning up after it (giving back a slot it granted) happens after it, not before.
        """
        return self._spawn(self._eval(script, keys, args))

    def _spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Run ``coro`` in the background, holding a reference until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._settle)
        return task

    def _settle(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        # Marks a failure as seen: whoever awaited the task has it; one whose caller was
        # cancelled is cleaned up after (or expires), so there is nothing more to report.
        if not task.cancelled():
            task.exception()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"{self!r} is closed; create a new one (aclose() ends its use of Redis)"
            )

    def _register(self, *sources: str) -> tuple[AsyncScript, ...]:
        scripts = tuple(self._redis.register_script(source) for source in sources)
        self._scripts += tuple(zip(sources, scripts, strict=True))
        return scripts


class RedisTokenBucket(_RedisBacked):
    """A token bucket kept in Redis: one rate limit for every process that uses the same name.

    ``rate`` tokens per second, bursts of up to ``capacity``; the bucket starts full. Over any
    window of ``T`` seconds, all the processes together are granted at most
    ``capacity + rate * T`` tokens (measured on the Redis server's clock). Waiters are served in
    the order they first asked Redis, across processes. :meth:`pause` in one process holds all
    of them. See the module's documentation for how, and for what a cancelled acquire costs.

    Construct it with a ``redis.asyncio.Redis`` client (not closed by the bucket) and call
    :meth:`check`, or with :meth:`from_url`, which makes the client, checks it, and closes it
    in :meth:`aclose`. Every process must use the same ``name``, ``prefix``, ``rate`` and
    ``capacity``; ``name`` is usually the account SID, so two accounts on one Redis never share
    a bucket.

    :param rate: Tokens added per second; finite and greater than 0.
    :param capacity: The most tokens the bucket holds, i.e. the largest burst; finite and at
        least 1. Defaults to ``rate`` (one second's worth), or 1 if ``rate`` is below 1.
    :param name: The bucket's name in Redis (letters, digits and ``-_.:@/``).
    :param prefix: The first part of its keys, default ``"twilio-numbers"``.
    """

    _rate: float
    _capacity: float
    _keys: tuple[str, str, str, str]
    _take: AsyncScript
    _pause: AsyncScript
    #: Loop time until which this process holds every acquire, after its own pause().
    _paused_until: float
    #: Pauses being published to Redis; acquires here wait for them to land.
    _publishing: set[asyncio.Task[None]]
    _semaphores: list[RedisSemaphore]

    def __init__(
        self,
        redis: Redis,
        *,
        name: str,
        rate: float,
        capacity: float | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        super().__init__(redis, name=name, prefix=prefix)
        rate = _finite("rate", rate, "tokens per second")
        if rate <= 0:
            raise ValueError(
                f"rate must be greater than 0 tokens per second, got {rate!r}; "
                "to stop all requests for a while, use pause() instead"
            )
        if capacity is None:
            capacity = max(rate, 1.0)
        capacity = _finite("capacity", capacity, "tokens")
        if capacity < 1:
            raise ValueError(
                f"capacity must be at least 1 token, got {capacity!r}; a bucket that holds less "
                "than one token could never admit a request (leave it out to default to rate)"
            )
        self._rate = rate
        self._capacity = capacity
        bucket = f"{self._base}:bucket"
        self._keys = (bucket, f"{bucket}:queue", f"{bucket}:deadlines", f"{bucket}:heavy")
        self._take, self._pause = self._register(_TAKE, _PAUSE)
        self._paused_until = -math.inf
        self._publishing = set()
        self._semaphores = []

    @classmethod
    async def from_url(
        cls,
        url: str,
        *,
        name: str,
        rate: float,
        capacity: float | None = None,
        prefix: str = DEFAULT_PREFIX,
        redis_options: Mapping[str, Any] | None = None,
    ) -> Self:
        """A bucket on a new client for ``url`` (``redis://``, ``rediss://``, ``unix://``),
        checked with :meth:`check` before it is returned.

        ``redis_options`` go to ``redis.asyncio.Redis.from_url`` (socket timeouts default to 5
        seconds). The client is the bucket's: :meth:`aclose` closes it.

        :raises RedisLimiterError: Redis can't be used (see :meth:`check`).
        """
        redis = _client_from_url(url, redis_options)
        try:
            bucket = cls(redis, name=name, rate=rate, capacity=capacity, prefix=prefix)
        except BaseException:
            await redis.aclose()
            raise
        bucket._owns_client = True
        try:
            await bucket.check()
        except BaseException:
            await bucket.aclose()
            raise
        return bucket

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds: the largest burst it admits at once."""
        return self._capacity

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._name!r}, rate={self._rate!r}, "
            f"capacity={self._capacity!r}, redis={self._where!r})"
        )

    async def acquire(self, tokens: int = 1) -> None:
        """Wait until ``tokens`` are available in the shared bucket, and take them.

        One round trip to Redis when the tokens are there; otherwise the caller takes its place
        in the shared queue, sleeps until its turn and asks once more. A pause started by this
        process is waited out here first, without asking Redis.

        :raises ValueError: ``tokens`` is below 1 or above :attr:`capacity`.
        :raises RedisLimiterError: Redis can't be reached; no token was taken.
        :raises RuntimeError: the bucket is closed.
        """
        tokens = _check_tokens(tokens, self._capacity)
        self._check_open()
        await self._wait_out_local_pause()
        ticket = f"{tokens}:{uuid.uuid4().hex}"
        args = (self._rate, self._capacity, tokens, ticket, _TICKET_GRACE)
        queued = False
        call = None
        try:
            while True:
                call = self._start(self._take, self._keys, args)
                granted, wait_us = await asyncio.shield(call)
                if granted:
                    return
                queued = True
                wait = wait_us / 1e6
                await asyncio.sleep(wait + _jitter(wait))
                await self._wait_out_local_pause()
        except BaseException as exc:
            # Give up the place in the queue now rather than when it expires. After a Redis
            # failure on the first call there is most likely no place to give up.
            if queued or isinstance(exc, asyncio.CancelledError):
                self._spawn(self._forget(ticket, call))
            raise

    def pause(self, seconds: float) -> None:
        """Hold every process on this bucket for ``seconds`` from now; meant for Retry-After.

        Synchronous, as the :class:`~twilio_numbers_async.ratelimit.Limiter` protocol wants
        (the client calls it from a tenacity callback in the loop). This process holds at once;
        the pause is published to Redis in the background, where it empties the bucket and
        holds every process until it ends, measured on the server's clock; then the refill
        resumes at :attr:`rate`. Overlapping pauses extend to the latest end; a pause never
        shortens one in force. ``seconds <= 0`` does nothing. A failure to publish is logged.

        :raises ValueError: ``seconds`` is NaN or infinite.
        :raises RuntimeError: called outside a running event loop.
        """
        if not math.isfinite(seconds):
            raise ValueError(
                f"pause() needs a finite number of seconds, got {seconds!r}; "
                "pass the Retry-After delay in seconds"
            )
        if seconds <= 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "RedisTokenBucket.pause() needs a running event loop to publish the pause; "
                "call it from code running in the loop"
            ) from None
        self._paused_until = max(self._paused_until, loop.time() + float(seconds))
        if self._closed:
            return
        task = loop.create_task(self._publish_pause(float(seconds)))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    def semaphore(
        self, limit: int, *, lease: float = 30.0, poll_interval: float = 0.05
    ) -> RedisSemaphore:
        """A :class:`RedisSemaphore` of ``limit`` slots on this bucket's client, name and
        prefix: the in-flight cap to pass as the client's ``max_concurrency``.

        It is closed with the bucket. See :class:`RedisSemaphore` for ``lease`` and
        ``poll_interval``.
        """
        self._check_open()
        semaphore = RedisSemaphore(
            self._redis,
            name=self._name,
            limit=limit,
            lease=lease,
            prefix=self._prefix,
            poll_interval=poll_interval,
        )
        self._semaphores.append(semaphore)
        return semaphore

    async def _stop(self) -> None:
        for semaphore in self._semaphores:
            await semaphore.aclose()
        await _drain(self._publishing)

    async def _wait_out_local_pause(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._publishing:
                # Redis must know of this process's pause before anyone here asks it for a
                # token, or the script could grant one the pause should have held.
                await asyncio.wait(list(self._publishing))
            delay = self._paused_until - loop.time()
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    async def _publish_pause(self, seconds: float) -> None:
        try:
            await self._eval(self._pause, self._keys[:1], (self._rate, self._capacity, seconds))
        except RedisLimiterError as exc:
            logger.warning(
                "could not share a %.3gs pause of rate limit %r through Redis; only this process "
                "pauses (%s)",
                seconds,
                self._name,
                exc,
            )

    async def _forget(self, ticket: str, call: _Call | None) -> None:
        if call is not None:
            # After the script the caller gave up on: it may be adding the ticket right now.
            await asyncio.wait([call])
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in self._keys[1:]:
                    pipe.zrem(key, ticket)
                await pipe.execute()
        except RedisError as exc:
            logger.debug("could not withdraw a waiter's ticket; it expires by itself (%s)", exc)


class RedisSemaphore(_RedisBacked):
    """A cap on requests in flight, shared by every process that uses the same name.

    ``async with semaphore:`` holds one slot while the block runs, which makes it what the
    client's ``max_concurrency=`` takes. Across all processes at most ``limit`` slots are held.
    Each slot is a lease of ``lease`` seconds in a Redis sorted set, renewed every
    ``lease / 3`` seconds by one background task per semaphore while this process holds any:
    a process that dies gives its slots back when their leases run out, without anyone's help.
    A holder id is a random UUID.

    Waiting for a slot: in each process one waiter at a time asks Redis (the others queue
    behind it, first come first served), at most every ``poll_interval`` seconds, and at once
    when this process releases a slot; across processes, those waiters take their turns in
    the order they first asked. A slot freed by another process is seen within
    ``poll_interval``.

    Usually made with :meth:`RedisTokenBucket.semaphore`; standalone, pass a client (not closed
    by the semaphore) or use :meth:`from_url`. All processes must use the same ``name``,
    ``prefix`` and ``limit``. Releasing never raises: if Redis is gone, the slot comes back when
    its lease runs out (an error there would hide the outcome of the request it guarded).

    :param limit: Slots across all processes; at least 1.
    :param lease: Seconds a slot outlives a process that died holding it; longer than the
        longest pause of the event loop you expect (renewals happen every ``lease / 3``).
    :param poll_interval: The longest a waiter sleeps between asks, in seconds.
    """

    _limit: int
    _lease: float
    _poll_interval: float
    _keys: tuple[str, str, str]
    _acquire_slot: AsyncScript
    _renew: AsyncScript
    _count: AsyncScript
    #: Holders this process holds: renewed by the renewer.
    _held: dict[str, None]
    #: The holders entered with ``async with``, per task, innermost last.
    _entered: dict[asyncio.Task[Any] | None, list[str]]
    #: Lets one local waiter at a time ask Redis, in arrival order.
    _gate: asyncio.Lock
    #: Set when this process releases a slot, to wake the local waiter at once.
    _released: asyncio.Event
    _renewer: asyncio.Task[None] | None

    def __init__(
        self,
        redis: Redis,
        *,
        name: str,
        limit: int,
        lease: float = 30.0,
        prefix: str = DEFAULT_PREFIX,
        poll_interval: float = 0.05,
    ) -> None:
        super().__init__(redis, name=name, prefix=prefix)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, got {type(limit).__name__}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1 slot, got {limit!r}")
        lease = _finite("lease", lease, "seconds")
        if lease < 0.1:
            raise ValueError(
                f"lease must be at least 0.1 seconds, got {lease!r}; it is renewed every "
                "lease / 3 seconds, and a process whose loop stalls longer loses its slots"
            )
        poll_interval = _finite("poll_interval", poll_interval, "seconds")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be greater than 0, got {poll_interval!r}")
        self._limit = limit
        self._lease = lease
        self._poll_interval = poll_interval
        slots = f"{self._base}:slots"
        self._keys = (slots, f"{slots}:queue", f"{slots}:deadlines")
        self._acquire_slot, self._renew, self._count = self._register(
            _ACQUIRE_SLOT, _RENEW_SLOTS, _COUNT_SLOTS
        )
        self._held = {}
        self._entered = {}
        self._gate = asyncio.Lock()
        self._released = asyncio.Event()
        self._renewer = None

    @classmethod
    async def from_url(
        cls,
        url: str,
        *,
        name: str,
        limit: int,
        lease: float = 30.0,
        prefix: str = DEFAULT_PREFIX,
        poll_interval: float = 0.05,
        redis_options: Mapping[str, Any] | None = None,
    ) -> Self:
        """A semaphore on a new client for ``url``, checked before it is returned; see
        :meth:`RedisTokenBucket.from_url`."""
        redis = _client_from_url(url, redis_options)
        try:
            semaphore = cls(
                redis,
                name=name,
                limit=limit,
                lease=lease,
                prefix=prefix,
                poll_interval=poll_interval,
            )
        except BaseException:
            await redis.aclose()
            raise
        semaphore._owns_client = True
        try:
            await semaphore.check()
        except BaseException:
            await semaphore.aclose()
            raise
        return semaphore

    @property
    def limit(self) -> int:
        """Slots across all processes."""
        return self._limit

    @property
    def lease(self) -> float:
        """Seconds a slot lasts without renewal."""
        return self._lease

    @property
    def held(self) -> int:
        """Slots this process holds now."""
        return len(self._held)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._name!r}, limit={self._limit!r}, "
            f"lease={self._lease!r}, redis={self._where!r})"
        )

    async def in_use(self) -> int:
        """Slots held now across all processes (leases not yet run out)."""
        self._check_open()
        count: int = await asyncio.shield(self._start(self._count, self._keys[:1], ()))
        return count

    async def acquire(self) -> str:
        """Wait for a slot and take it; returns its holder id, for :meth:`release`.

        :raises RedisLimiterError: Redis can't be reached; no slot is held.
        :raises RuntimeError: the semaphore is closed.
        """
        self._check_open()
        holder = uuid.uuid4().hex
        ticket = uuid.uuid4().hex
        args = (self._limit, self._lease, holder, ticket, self._poll_interval + _TICKET_GRACE)
        queued = False
        call = None
        async with self._gate:
            try:
                while True:
                    self._released.clear()
                    call = self._start(self._acquire_slot, self._keys, args)
                    granted, wait_us = await asyncio.shield(call)
                    if granted:
                        break
                    queued = True
                    delay = min(self._poll_interval, wait_us / 1e6)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay + _jitter(delay)):
                            await self._released.wait()
            except BaseException as exc:
                # Cancelled while the script ran, it may have granted the slot: give it back
                # rather than hold it for a whole lease.
                if queued or isinstance(exc, asyncio.CancelledError):
                    self._spawn(self._abandon(holder, ticket, call))
                raise
        self._held[holder] = None
        if self._renewer is None or self._renewer.done():
            self._renewer = self._spawn(self._renew_leases())
        return holder

    async def release(self, holder: str) -> None:
        """Give back the slot ``holder`` holds. Never raises for Redis' sake: a slot that
        can't be removed comes back when its lease runs out (logged). Idempotent.

        After :meth:`aclose` it only stops renewing: the slot comes back with its lease.
        """
        self._held.pop(holder, None)  # renewing stops now, whatever happens to the removal
        if self._closed:
            return
        # Shielded: a cancelled caller still gives its slot back.
        await asyncio.shield(self._spawn(self._remove(holder)))

    async def __aenter__(self) -> str:
        """Take one slot; see :meth:`acquire`."""
        holder = await self.acquire()
        self._entered.setdefault(asyncio.current_task(), []).append(holder)
        return holder

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Give the slot back; see :meth:`release`."""
        task = asyncio.current_task()
        stack = self._entered.get(task)
        if not stack:
            raise RuntimeError(f"{self!r} was exited by a task that did not enter it")
        holder = stack.pop()
        if not stack:
            del self._entered[task]
        await self.release(holder)

    async def _stop(self) -> None:
        # Slots still held stay held until their lease runs out: whoever holds them may still
        # have a request in flight.
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew_leases(self) -> None:
        interval = self._lease / 3
        while self._held:
            await asyncio.sleep(interval)
            holders = list(self._held)
            if not holders:
                return
            try:
                lost = await asyncio.shield(
                    self._start(self._renew, self._keys[:1], (self._lease, *holders))
                )
            except RedisLimiterError as exc:
                logger.warning(
                    "could not renew %d slot lease(s) of %r; they run out in %.3gs unless Redis "
                    "answers again (%s)",
                    len(holders),
                    self._name,
                    self._lease,
                    exc,
                )
                continue
            except Exception:
                # Renewing must go on whatever happened: a lease that runs out while its request
                # is in flight lets the processes together exceed the cap.
                logger.exception("renewing the slot leases of %r failed", self._name)
                continue
            for item in lost:
                holder = item.decode() if isinstance(item, bytes) else str(item)
                if self._held.pop(holder, _GONE) is not _GONE:
                    logger.warning(
                        "a slot lease of %r ran out before it was renewed (was the event loop "
                        "blocked for %.3gs?); its request may now exceed the shared cap",
                        self._name,
                        self._lease,
                    )

    async def _remove(self, holder: str) -> None:
        try:
            await self._redis.zrem(self._keys[0], holder)
        except RedisError as exc:
            logger.warning(
                "could not release a slot of %r; it comes back when its lease runs out, in "
                "%.3gs at most (%s)",
                self._name,
                self._lease,
                _describe_error(exc),
            )
        finally:
            self._released.set()

    async def _abandon(self, holder: str, ticket: str, call: _Call | None) -> None:
        if call is not None:
            # After the script the caller gave up on: it may be granting the slot right now.
            await asyncio.wait([call])
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self._keys[0], holder)
                pipe.zrem(self._keys[1], ticket)
                pipe.zrem(self._keys[2], ticket)
                await pipe.execute()
        except RedisError as exc:
            logger.debug("could not withdraw a slot request; it expires by itself (%s)", exc)
        finally:
            self._released.set()


_GONE: Final = object()

# What a key part may hold: nothing that breaks a key's shape (spaces, braces of hash tags).
_KEY_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@/"
)


def _check_key_part(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value or len(value) > 200 or not set(value) <= _KEY_CHARS:
        raise ValueError(
            f"{what} must be 1 to 200 letters, digits or '-_.:@/' (the account SID is a good "
            f"name), got {value!r}"
        )
    return value


def _check_tokens(tokens: object, capacity: float) -> int:
    # The count goes into a script and a ticket's name: a whole number, not a float or a bool.
    if isinstance(tokens, bool) or not isinstance(tokens, numbers.Integral):
        raise TypeError(f"tokens must be an int, got {type(tokens).__name__}")
    count = int(tokens)
    if not 1 <= count <= capacity:
        raise _bad_tokens(count, capacity)
    return count


def _jitter(wait: float) -> float:
    # Not a secret: only spreads waiters told the same time.
    return random.uniform(0.0, min(_MAX_JITTER, 0.05 * wait))  # noqa: S311


def _client_from_url(url: str, options: Mapping[str, Any] | None) -> Redis:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    settings: dict[str, Any] = {
        "socket_timeout": _SOCKET_TIMEOUT,
        "socket_connect_timeout": _SOCKET_TIMEOUT,
        **(options or {}),
    }
    try:
        return Redis.from_url(url, **settings)
    except ValueError:
        # redis-py's message quotes the URL, password and all.
        raise ValueError(
            "not a Redis URL: expected redis://[[user]:password@]host[:port][/db], "
            "rediss://... or unix:///path/to/socket"
        ) from None


def _describe(redis: Redis) -> str:
    """Where ``redis`` connects, as a URL without credentials."""
    pool = getattr(redis, "connection_pool", None)
    kwargs: Mapping[str, Any] = getattr(pool, "connection_kwargs", {})
    db = kwargs.get("db", 0)
    connection_class = getattr(pool, "connection_class", None)
    if kwargs.get("path") or (
        isinstance(connection_class, type)
        and issubclass(connection_class, UnixDomainSocketConnection)
    ):
        return f"unix://{kwargs.get('path', '')}?db={db}"
    ssl = isinstance(connection_class, type) and issubclass(connection_class, SSLConnection)
    host = str(kwargs.get("host", "localhost"))
    if ":" in host:
        host = f"[{host}]"
    return f"{'rediss' if ssl else 'redis'}://{host}:{kwargs.get('port', 6379)}/{db}"


def _describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _drain(tasks: set[asyncio.Task[Any]]) -> None:
    """Wait a little for ``tasks`` to finish, then cancel what is left."""
    pending = set(tasks)
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late)
