"""The numbers for sale that a client's area-code purchases share, found by searching.

An area code is bought as a given number: a search of ``AvailablePhoneNumbers`` finds
candidates, and a purchase takes one and POSTs it as ``PhoneNumber``, so that an answer lost on
the way can be reconciled by looking that number up. :class:`CandidatePools` keeps one pool per
(account, search) for every concurrent purchase of the client: a candidate is handed to one
purchase at a time, a pool that runs dry is refilled by one new search that every waiting
purchase shares, and a search that finds nothing new ends the taking.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._reads import Search
    from ._retrying import Budget
    from .models import AvailablePhoneNumber

__all__ = ["CandidatePools"]

#: Seconds a search's results are worth keeping: numbers for sale are sold to others too.
_FRESH_FOR: Final = 60.0

SearchFn = Callable[["Search", str, "Budget"], Awaitable[list["AvailablePhoneNumber"]]]


class _Pool:
    """The candidates of one search on one account."""

    def __init__(self) -> None:
        #: Found, not yet handed out, in the order the search gave them.
        self.waiting: deque[str] = deque()
        #: Handed to a purchase that has not ended: never handed out again meanwhile, even if a
        #: search lists it again (Twilio lists a number until its sale completes).
        self.taken: set[str] = set()
        #: The search in progress, that every purchase finding the pool dry awaits: how many
        #: numbers it listed, and how many of those it queued (the others are held).
        self.refill: asyncio.Task[tuple[int, int]] | None = None
        #: Set when a held candidate is handed back: a purchase that found every listed number
        #: held by another waits for it, then searches again.
        self.freed = asyncio.Event()
        #: Loop time of the search that filled ``waiting``.
        self.found_at = 0.0

    def refilled(self, task: asyncio.Task[tuple[int, int]]) -> None:
        self.refill = None
        if not task.cancelled():
            # Retrieved here too: every purchase that awaited it may have been cancelled.
            task.exception()


class CandidatePools:
    """One client's pools of candidates, by account and search."""

    def __init__(self, search: SearchFn, *, seed: int | None = None) -> None:
        self._search = search
        self._pools: dict[tuple[str, Search], _Pool] = {}
        self._random = random.Random(seed)  # noqa: S311 - spreads candidates, guards nothing

    async def take(self, search: Search, account_sid: str, budget: Budget) -> str | None:
        """A candidate no other purchase holds, or ``None`` when the search finds none.

        Hand it back with :meth:`done` when its purchase ends, bought or not. When every number
        the search lists is held by another purchase, wait (within ``budget``: then
        :class:`TimeoutError`) for one to be handed back, and search again.
        """
        pool = self._pools.setdefault((account_sid, search), _Pool())
        loop = asyncio.get_running_loop()
        while True:
            if pool.waiting and loop.time() - pool.found_at > _FRESH_FOR:
                pool.waiting.clear()  # stale: others may have bought them since
            while pool.waiting:
                candidate = pool.waiting.popleft()
                if candidate not in pool.taken:
                    pool.taken.add(candidate)
                    return candidate
            if pool.refill is None:
                pool.refill = asyncio.create_task(self._refill(pool, search, account_sid, budget))
                pool.refill.add_done_callback(pool.refilled)
            freed = pool.freed
            # Shielded: a purchase cancelled while it waits must not cancel the search the
            # others are waiting on.
            listed, queued = await asyncio.shield(pool.refill)
            if listed == 0:
                return None
            if queued == 0:
                # Every number listed is being bought by another purchase of this client: one
                # may be handed back unbought (and listed again), or bought (and listed no more).
                async with asyncio.timeout(max(0.0, budget.remaining())):
                    await freed.wait()

    def done(self, search: Search, account_sid: str, candidate: str) -> None:
        """The purchase that held ``candidate`` ended: it may be handed out again if a search
        lists it (it was not bought after all)."""
        pool = self._pools.get((account_sid, search))
        if pool is not None:
            pool.taken.discard(candidate)
            pool.freed.set()
            pool.freed = asyncio.Event()

    async def _refill(
        self, pool: _Pool, search: Search, account_sid: str, budget: Budget
    ) -> tuple[int, int]:
        """Search, and queue what is not held already: how many were listed, and queued."""
        found = await self._search(search, account_sid, budget)
        fresh = [n.phone_number for n in found if n.phone_number not in pool.taken]
        # In an order of this process's own: several processes (or machines) buying in one area
        # code search alike, and taking the list in its order they would all want its first
        # numbers at once, and most would be refused 21422.
        self._random.shuffle(fresh)
        pool.waiting.extend(fresh)
        pool.found_at = asyncio.get_running_loop().time()
        return len(found), len(fresh)
