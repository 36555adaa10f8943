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

# _base first: it imports redis-py, and says how to install it when it is missing.
from twilio_numbers_async.errors import RedisLimiterError

from ._base import DEFAULT_PREFIX
from ._bucket import RedisTokenBucket
from ._semaphore import RedisSemaphore

__all__ = ["DEFAULT_PREFIX", "RedisLimiterError", "RedisSemaphore", "RedisTokenBucket"]
