"""The shared token bucket: one rate limit for every process that buys on an account."""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import uuid
from typing import TYPE_CHECKING, Any, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

from twilio_numbers_async._checks import check_bucket, tokens_error
from twilio_numbers_async.errors import RedisLimiterError

from ._base import (
    _TICKET_GRACE,
    DEFAULT_PREFIX,
    _Call,
    _client_from_url,
    _drain,
    _jitter,
    _RedisBacked,
)
from ._scripts import _PAUSE, _TAKE
from ._semaphore import RedisSemaphore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from redis.commands.core import AsyncScript

__all__ = ["RedisTokenBucket"]

logger = logging.getLogger("twilio_numbers_async")


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
        rate, capacity = check_bucket(rate, capacity)
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

    async def acquire(self, tokens: int = 1, *, max_wait: float | None = None) -> None:
        """Wait until ``tokens`` are available in the shared bucket, and take them.

        One round trip to Redis when the tokens are there; otherwise the caller takes its place
        in the shared queue, sleeps until its turn and asks once more. A pause started by this
        process is waited out here first, without asking Redis. With ``max_wait`` in seconds,
        a caller still waiting when it expires gives its place up and takes no token.

        :raises ValueError: ``tokens`` is below 1 or above :attr:`capacity`.
        :raises TimeoutError: the tokens could not be had within ``max_wait``.
        :raises RedisLimiterError: Redis can't be reached; no token was taken.
        :raises RuntimeError: the bucket is closed.
        """
        if max_wait is not None:
            async with asyncio.timeout(max_wait):
                await self.acquire(tokens)
            return
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


def _check_tokens(tokens: object, capacity: float) -> int:
    # The count goes into a script and a ticket's name: a whole number, not a float or a bool.
    if isinstance(tokens, bool) or not isinstance(tokens, numbers.Integral):
        raise TypeError(f"tokens must be an int, got {type(tokens).__name__}")
    count = int(tokens)
    if not 1 <= count <= capacity:
        raise tokens_error(count, capacity)
    return count
