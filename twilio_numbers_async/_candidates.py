"""The numbers for sale that a client's area-code purchases share, found by searching.

An area code is bought as a given number: a search of ``AvailablePhoneNumbers`` finds
candidates, and a purchase takes one and POSTs it as ``PhoneNumber``, so that an answer lost on
the way can be reconciled by looking that number up. :class:`CandidatePools` keeps one pool per
(account, search) for every concurrent purchase of the client: a candidate is handed to one
purchase at a time, a pool that runs dry is refilled by one new search that every waiting
purchase shares, and a search that finds nothing new ends the taking. A number this client
bought, or may have, is never handed to another of its purchases, whatever a search lists: two
purchases must never both claim one number.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from ._reads import Search
    from ._retrying import Budget
    from .models import AvailablePhoneNumber

__all__ = ["CandidatePools", "Ending"]

#: Seconds a search's results are worth keeping: numbers for sale are sold to others too.
_FRESH_FOR: Final = 60.0
#: Seconds a number this client bought (or may have) is kept from its purchases: Twilio lists a
#: number for sale until its sale completes, and a search soon after may list it again.
_SOLD_KEPT_FOR: Final = 3600.0

#: Twilio's magic number for test credentials: every purchase of it succeeds, again and again,
#: so buying it claims nothing (https://www.twilio.com/docs/iam/test-credentials).
_SELLS_AGAIN: Final = frozenset({"+15005550006"})

SearchFn = Callable[["Search", str, "Budget"], Awaitable[list["AvailablePhoneNumber"]]]


#: How a purchase that held a number ended, for :meth:`CandidatePools.done`.
Ending = Literal["bought", "in_doubt", "not_bought"]


class _Claims:
    """The numbers of one account that this client's purchases must not be handed."""

    def __init__(self) -> None:
        #: Held by a purchase that has not ended (taken from a pool, or resumed from a journal).
        self.held: set[str] = set()
        #: Bought by this client, and maybe bought (an outcome in doubt), with the loop time:
        #: another purchase handed one would be refused 21422, or, after a lost answer, find
        #: it on the account and claim a number that is already another purchase's.
        self.bought: dict[str, float] = {}
        self.in_doubt: dict[str, float] = {}
        #: Set when a held number is handed back, for the purchases waiting for one.
        self.freed = asyncio.Event()

    def free(self, number: str) -> bool:
        return not (number in self.held or number in self.bought or number in self.in_doubt)

    def empty(self) -> bool:
        return not (self.held or self.bought or self.in_doubt)

    def forget_old(self, now: float) -> None:
        for kept in (self.bought, self.in_doubt):
            # Oldest first (dicts keep insertion order): stop at the first one still kept.
            while kept:
                number, since = next(iter(kept.items()))
                if now - since < _SOLD_KEPT_FOR:
                    break
                del kept[number]


class _Pool:
    """The candidates of one search on one account."""

    def __init__(self) -> None:
        #: Found, not yet handed out, in the order of this process (see _refill).
        self.waiting: deque[str] = deque()
        #: The search in progress, that every purchase finding the pool dry awaits: how many
        #: numbers it listed, how many of those it queued, and how many are held by purchases.
        self.refill: asyncio.Task[tuple[int, int, int]] | None = None
        #: Loop time of the search that filled ``waiting``.
        self.found_at = 0.0

    def refilled(self, task: asyncio.Task[tuple[int, int, int]]) -> None:
        self.refill = None
        if not task.cancelled():
            # Retrieved here too: every purchase that awaited it may have been cancelled.
            task.exception()

    def idle(self, now: float) -> bool:
        return self.refill is None and (not self.waiting or now - self.found_at > _FRESH_FOR)


class CandidatePools:
    """One client's pools of candidates, by account and search."""

    def __init__(self, search: SearchFn, *, seed: int | None = None) -> None:
        self._search = search
        self._pools: dict[tuple[str, Search], _Pool] = {}
        self._claims: dict[str, _Claims] = {}
        self._random = random.Random(seed)  # noqa: S311 - spreads candidates, guards nothing

    async def take(self, search: Search, account_sid: str, budget: Budget) -> str | None:
        """A candidate no other purchase holds and this client has not bought, or ``None``
        when the search finds none.

        Hand it back with :meth:`done` when its purchase ends. When every number the search
        lists is held by another purchase, wait (within ``budget``: then
        :class:`TimeoutError`) for one to be handed back, and search again.
        """
        loop = asyncio.get_running_loop()
        key = (account_sid, search)
        if key not in self._pools:
            self._forget_idle(loop.time())
        while True:
            # Looked up again after every wait: an idle pool may have been dropped meanwhile.
            pool = self._pools.setdefault(key, _Pool())
            claims = self._claims_of(account_sid)
            if pool.waiting and loop.time() - pool.found_at > _FRESH_FOR:
                pool.waiting.clear()  # stale: others may have bought them since
            while pool.waiting:
                candidate = pool.waiting.popleft()
                if claims.free(candidate):
                    claims.held.add(candidate)
                    return candidate
            if pool.refill is None:
                pool.refill = asyncio.create_task(self._refill(pool, search, account_sid, budget))
                pool.refill.add_done_callback(pool.refilled)
            freed = claims.freed
            # Shielded: a purchase cancelled while it waits must not cancel the search the
            # others are waiting on.
            listed, queued, held = await asyncio.shield(pool.refill)
            if listed == 0 or (queued == 0 and held == 0):
                return None  # nothing for sale, or only numbers this client bought
            if queued == 0:
                # Every number listed is being bought by another purchase of this client: one
                # may be handed back unbought (and listed again), or bought (and listed no more).
                async with asyncio.timeout(max(0.0, budget.remaining())):
                    await freed.wait()

    async def hold(self, account_sid: str, number: str, budget: Budget) -> bool:
        """Hold ``number`` for a purchase resumed from a journal, which must look it up before
        anything else: wait (within ``budget``: then :class:`TimeoutError`) while another
        purchase holds it. ``False`` if another purchase of this client bought it meanwhile,
        so that the earlier attempt did not: the resumed purchase has nothing to look up. (One
        in doubt, such as the resumed purchase's own attempt cancelled in this process, is
        taken over.)"""
        while number in (claims := self._claims_of(account_sid)).held:
            async with asyncio.timeout(max(0.0, budget.remaining())):
                await claims.freed.wait()
        if number in claims.bought:
            return False
        claims.in_doubt.pop(number, None)
        claims.held.add(number)
        return True

    def done(self, account_sid: str, number: str, ending: Ending) -> None:
        """The purchase that held ``number`` ended. Bought or in doubt, it is never handed
        out again; not bought by us, another purchase may have it if a search lists it again
        (someone else bought it, or nothing was bought)."""
        claims = self._claims_of(account_sid)
        claims.held.discard(number)
        if ending != "not_bought" and number not in _SELLS_AGAIN:
            now = asyncio.get_running_loop().time()
            claims.forget_old(now)
            (claims.bought if ending == "bought" else claims.in_doubt)[number] = now
        claims.freed.set()
        claims.freed = asyncio.Event()

    def _claims_of(self, account_sid: str) -> _Claims:
        claims = self._claims.get(account_sid)
        if claims is None:
            claims = self._claims[account_sid] = _Claims()
        return claims

    def _forget_idle(self, now: float) -> None:
        """Drop the pools nobody uses, and the claims that keep nothing: a long-lived client
        buying on many accounts (subaccounts) or searches must not keep them all."""
        for key in [key for key, pool in self._pools.items() if pool.idle(now)]:
            del self._pools[key]
        in_use = {account_sid for account_sid, _ in self._pools}
        for account_sid, claims in list(self._claims.items()):
            claims.forget_old(now)
            if account_sid not in in_use and claims.empty():
                del self._claims[account_sid]

    async def _refill(
        self, pool: _Pool, search: Search, account_sid: str, budget: Budget
    ) -> tuple[int, int, int]:
        """Search, and queue what is free: how many were listed, queued, and held."""
        found = await self._search(search, account_sid, budget)
        claims = self._claims_of(account_sid)
        listed = [n.phone_number for n in found]
        fresh = [number for number in listed if claims.free(number)]
        # In an order of this process's own: several processes (or machines) buying in one area
        # code search alike, and taking the list in its order they would all want its first
        # numbers at once, and most would be refused 21422.
        self._random.shuffle(fresh)
        pool.waiting.extend(fresh)
        pool.found_at = asyncio.get_running_loop().time()
        return len(listed), len(fresh), sum(number in claims.held for number in listed)
