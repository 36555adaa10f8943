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

How it works (a token bucket in a Lua script on the server's clock, fair queueing without
polling, pauses that reach every process, cancellation, Redis unreachable) and why the
``limits`` library would not do: ``docs/redis-limiter.md``.
"""

from __future__ import annotations

# _base first: it imports redis-py, and says how to install it when it is missing.
from twilio_numbers_async.errors import RedisLimiterError

from ._base import DEFAULT_PREFIX
from ._bucket import RedisTokenBucket
from ._semaphore import RedisSemaphore

__all__ = ["DEFAULT_PREFIX", "RedisLimiterError", "RedisSemaphore", "RedisTokenBucket"]
