"""Delays the sandbox injects (latency, late answers) that stopping it ends at once."""

from __future__ import annotations

import asyncio

__all__ = ["Pauses"]


class Pauses:
    """Sleeps that :meth:`interrupt` ends at once, so that stopping never waits on a delay.

    A plain future and a timer handle per sleep, not a task: nothing is left pending to be
    destroyed when the server goes away.
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[bool]] = set()
        self._interrupted = False

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; ``True`` if they passed, ``False`` if interrupted."""
        if self._interrupted:
            return False
        if seconds <= 0:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waiter, True)
        self._waiters.add(waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)

    def interrupt(self) -> None:
        """End every sleep, now and to come."""
        self._interrupted = True
        for waiter in list(self._waiters):
            _resolve(waiter, False)


def _resolve(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)
