"""The shared slot cap: requests in flight across processes, held as leases in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any, Final, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

from twilio_numbers_async._checks import check_finite
from twilio_numbers_async.errors import RedisLimiterError

from ._base import (
    _TICKET_GRACE,
    DEFAULT_PREFIX,
    _Call,
    _client_from_url,
    _describe_error,
    _jitter,
    _RedisBacked,
)
from ._scripts import _ACQUIRE_SLOT, _COUNT_SLOTS, _RENEW_SLOTS

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from redis.commands.core import AsyncScript

__all__ = ["RedisSemaphore"]

logger = logging.getLogger("twilio_numbers_async")


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
        lease = check_finite("lease", lease, "seconds")
        if lease < 0.1:
            raise ValueError(
                f"lease must be at least 0.1 seconds, got {lease!r}; it is renewed every "
                "lease / 3 seconds, and a process whose loop stalls longer loses its slots"
            )
        poll_interval = check_finite("poll_interval", poll_interval, "seconds")
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
                    # No wait means a slot is free but an earlier ticket, another process's,
                    # comes first: give it a poll interval to claim it, rather than ask again
                    # at once, and again, until it does.
                    delay = min(self._poll_interval, wait_us / 1e6) or self._poll_interval
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
