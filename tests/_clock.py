"""A loop clock that moves only when a test moves it, so no test waits for real time to pass.

``FakeClock().installed()`` replaces the running loop's ``time()``. A ``loop.call_at`` timer
(what ``asyncio.sleep`` and ``asyncio.timeout`` use) fires once ``loop.time()`` reaches its
deadline, so moving the clock and then letting the loop run a few rounds (:func:`settle`) fires
the timers that are due and resumes the tasks they wake. I/O is untouched: a task waiting for a
socket resumes when the data comes, whatever the clock says.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING
from unittest import mock

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FakeClock", "settle"]


async def settle(rounds: int = 8) -> None:
    """Let ready callbacks, due timers and the tasks they wake run; a few rounds suffice."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeClock:
    """A loop clock that moves only when a test moves it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        await self.set(self.now + seconds)

    async def set(self, now: float) -> None:
        self.now = now
        await settle()

    @contextlib.contextmanager
    def installed(self) -> Iterator[FakeClock]:
        """Be the running loop's clock inside the ``with`` block."""
        with mock.patch.object(asyncio.get_running_loop(), "time", self):
            yield self
