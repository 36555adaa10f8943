"""Client-side rate limiting: a FIFO-fair token bucket, and the protocol shared limiters implement.

Every HTTP attempt, retries included, takes a token from a :class:`Limiter` before it is sent.
:class:`TokenBucket` is the in-process implementation. When several processes or machines buy on
one account, a limiter shared through Redis can stand in for it, since callers only see the
:class:`Limiter` protocol.

Over any window of ``T`` seconds a bucket admits at most ``capacity + rate * T`` tokens. Waiters
are served in arrival order and woken by a single timer, so nothing polls; all time comes from
the running event loop's clock, which tests can patch.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from typing import TYPE_CHECKING, Protocol

from ._adaptive import AdaptiveConcurrency, LimitChange, LimitReason
from ._checks import check_bucket, tokens_error

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["AdaptiveConcurrency", "LimitChange", "LimitReason", "Limiter", "TokenBucket"]

#: How early (in seconds) a waiter may be admitted. Float rounding in ``last + need / rate``, and
#: the loop running a timer up to ``clock_resolution`` before its deadline, would otherwise leave
#: the head a hair short of its tokens when its timer fires, and re-arm the timer for nothing.
_EARLY = 1e-6


class Limiter(Protocol):
    """What the client needs from a rate limiter: take tokens, and hold everyone after a 429."""

    async def acquire(self, tokens: int = 1, *, max_wait: float | None = None) -> None:
        """Wait until ``tokens`` may be spent, then spend them.

        With ``max_wait`` (seconds), raise :class:`TimeoutError` rather than wait longer, at
        once when the limiter can tell the tokens won't come in time; a caller that times out
        takes no token.
        """
        ...

    def pause(self, seconds: float) -> None:
        """Admit nobody for ``seconds`` (Twilio's Retry-After), then resume at the normal rate."""
        ...


class TokenBucket:
    """An asyncio token bucket: ``rate`` tokens per second, bursts of up to ``capacity``.

    The bucket starts full and refills continuously. Over any window of ``T`` seconds it admits
    at most ``capacity + rate * T`` tokens. ::

        bucket = TokenBucket(25)
        async with bucket:  # one token
            ...
        await bucket.acquire(3)

    Waiters are served strictly first come, first served: a small request never overtakes a
    larger one that arrived earlier, and a newcomer queues behind existing waiters even when
    tokens are available. One ``loop.call_at`` timer, armed for the moment the first waiter can
    proceed, wakes the queue; a waiter that is cancelled takes no token.

    The bucket binds to the running event loop on first use and reads time only from
    ``loop.time()``. It may move to another loop (successive :func:`asyncio.run` calls) whenever
    nobody is waiting on it, or only tasks of a loop since closed. It is not thread-safe: use it
    from its loop's thread only.

    :param rate: Tokens added per second; finite and greater than 0.
    :param capacity: The most tokens the bucket holds, i.e. the largest burst; finite and at
        least 1. Defaults to ``rate`` (one second's worth), or 1 if ``rate`` is below 1.
    """

    __slots__ = (
        "_capacity",
        "_epoch",
        "_last",
        "_loop",
        "_rate",
        "_slack",
        "_timer",
        "_tokens",
        "_waiters",
    )

    #: Tokens per second.
    _rate: float
    #: The most tokens the bucket can hold.
    _capacity: float
    #: Tokens admitted this early count as available; see ``_EARLY``.
    _slack: float
    #: Tokens in the bucket as of ``_last`` (may dip a hair below 0, see ``_EARLY``).
    _tokens: float
    #: Loop time up to which ``_tokens`` is accounted for. During a pause it is the pause's end,
    #: in the future, which is how a pause stops the refill without a separate flag.
    _last: float
    #: Counts pauses, so tokens handed to a waiter before a pause are not given back after it.
    _epoch: int
    #: The loop the waiters and the timer belong to; ``None`` until first use.
    _loop: asyncio.AbstractEventLoop | None
    #: Queued ``(tokens, future)`` pairs, oldest first. A future's result is the ``_epoch``
    #: at which its tokens were granted.
    _waiters: deque[tuple[int, asyncio.Future[int]]]
    #: The single timer, armed for when the head waiter can proceed; ``None`` when nobody waits.
    _timer: asyncio.TimerHandle | None

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        rate, capacity = check_bucket(rate, capacity)
        self._rate = rate
        self._capacity = capacity
        self._slack = rate * _EARLY
        self._tokens = capacity
        self._last = 0.0
        self._epoch = 0
        self._loop = None
        self._waiters = deque()
        self._timer = None

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def capacity(self) -> float:
        """The most tokens the bucket holds: the largest burst it admits at once."""
        return self._capacity

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self._rate!r}, capacity={self._capacity!r})"

    async def acquire(self, tokens: int = 1, *, max_wait: float | None = None) -> None:
        """Wait until ``tokens`` are available, and take them.

        Returns at once, without scheduling anything, when nobody is queued, the bucket is not
        paused and holds enough tokens. Otherwise the caller queues behind earlier waiters. If
        the call is cancelled while waiting it takes no token, including when its tokens had
        been granted but it had not resumed yet: they go back to the bucket.

        With ``max_wait`` in seconds, a caller that the queue, a pause or the rate would hold
        longer is refused with :class:`TimeoutError` at once, without queueing; one that queues
        and is then held longer (a pause began meanwhile) gives up when ``max_wait`` expires.
        Either way it takes no token.

        :raises ValueError: ``tokens`` is below 1 or above :attr:`capacity`.
        :raises TimeoutError: the tokens can't be had within ``max_wait``.
        :raises RuntimeError: called from another event loop while tasks of this bucket's loop
            are waiting.
        """
        if not 1 <= tokens <= self._capacity:
            raise tokens_error(tokens, self._capacity)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        # The hot path of every HTTP request: refill and take, with no future and no timer.
        now = loop.time()
        if now > self._last:
            level = self._tokens + (now - self._last) * self._rate
            # Not min(): a builtin call costs ~4x this comparison, and this runs per request.
            if level > self._capacity:  # noqa: PLR1730
                level = self._capacity
            self._tokens = level
            self._last = now
        if not self._waiters and self._tokens + self._slack >= tokens:
            self._tokens -= tokens
            return
        if max_wait is None:
            await self._wait(loop, tokens)
            return
        if self._granted_at(tokens) - now > max_wait:
            raise TimeoutError(
                f"{self!r} would admit {tokens} token(s) only after the {max_wait:g} s allowed"
            )
        async with asyncio.timeout(max_wait):
            await self._wait(loop, tokens)

    async def __aenter__(self) -> None:
        """Take one token; see :meth:`acquire`."""
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Do nothing: a token, once spent, stays spent."""

    def pause(self, seconds: float) -> None:
        """Admit nobody, queued or new, for ``seconds`` from now.

        Meant for a 429's Retry-After, and callable from synchronous code running in the loop
        (a tenacity callback). The bucket is emptied and refills only from the pause's end, so
        traffic resumes at :attr:`rate` rather than in a burst: the first token is available
        ``1 / rate`` seconds after the pause ends. Overlapping pauses extend to the latest end;
        a pause never shortens one already in force. ``seconds <= 0`` does nothing.

        :raises ValueError: ``seconds`` is NaN or infinite.
        :raises RuntimeError: no event loop is running and the bucket has never been used, so
            there is no clock to measure the pause against.
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
            if self._loop is None:
                raise RuntimeError(
                    "pause() was called outside a running event loop on a TokenBucket that has "
                    "never been used, so it has no clock; call it from code running in the loop"
                ) from None
            loop = self._loop
        else:
            if loop is not self._loop:
                self._bind(loop)
        self._tokens = 0.0
        self._last = max(self._last, loop.time() + seconds)
        self._epoch += 1
        # Waiters left on a closed loop can't be woken; the next _bind drops them.
        if not loop.is_closed():
            self._schedule(loop)

    def _granted_at(self, tokens: int) -> float:
        """The loop time at which a newcomer asking for ``tokens`` would be served, if no pause
        intervenes: after everyone queued ahead of it, at the bucket's rate, from ``_last``
        (which, during a pause, is the pause's end). Call with ``_tokens`` brought up to date."""
        ahead = sum(need for need, fut in self._waiters if not fut.done())
        return self._last + (ahead + tokens - self._tokens) / self._rate

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Adopt ``loop`` as the bucket's loop, if nobody waits on the current one."""
        old = self._loop
        if old is None:
            self._last = loop.time()
        elif self._waiters:
            if not old.is_closed():
                raise RuntimeError(
                    f"{self!r} has tasks waiting on another event loop; a bucket can move to a "
                    "new loop only when nobody waits on it (use one bucket per loop)"
                )
            # Those tasks' loop is gone, so they can never resume: forget them.
            self._waiters.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # ``_last`` carries over: every loop's default clock is time.monotonic(), so a pause or
        # an empty bucket from the previous loop stays in force.
        self._loop = loop

    async def _wait(self, loop: asyncio.AbstractEventLoop, tokens: int) -> None:
        """Queue for ``tokens`` and wait for :meth:`_wake` to grant them."""
        fut: asyncio.Future[int] = loop.create_future()
        entry = (tokens, fut)
        self._waiters.append(entry)
        if len(self._waiters) == 1:
            self._schedule(loop)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                # Still queued, unless _wake already dropped the dead future.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            elif fut.result() == self._epoch:
                # Granted, but cancelled before it could resume: the tokens were never used.
                # Skipped if a pause began since, because the pause would have emptied them.
                self._tokens = min(self._tokens + tokens, self._capacity)
            # Whoever is now at the head may be able to go at once, or later than planned.
            self._wake(loop)
            raise

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Grant tokens to waiters from the head of the queue, then re-arm the timer."""
        now = loop.time()
        if now > self._last:
            self._tokens = min(self._tokens + (now - self._last) * self._rate, self._capacity)
            self._last = now
        waiters = self._waiters
        while waiters:
            tokens, fut = waiters[0]
            if fut.done():
                # Cancelled: its task, when it resumes, finds the entry gone and wakes us again.
                waiters.popleft()
                continue
            if self._tokens + self._slack < tokens:
                break
            waiters.popleft()
            self._tokens -= tokens
            fut.set_result(self._epoch)
        self._schedule(loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._wake(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm the one timer for when the head waiter can proceed, or disarm it if none waits.

        Call only after ``_tokens`` and ``_last`` are brought up to date, and only when the head
        cannot proceed yet.
        """
        timer = self._timer
        if not self._waiters:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        when = self._last + (self._waiters[0][0] - self._tokens) / self._rate
        if timer is not None:
            if timer.when() == when:
                return
            timer.cancel()
        self._timer = loop.call_at(when, self._on_timer, loop)
