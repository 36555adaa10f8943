"""An adaptive limit on requests in flight: it finds the account's concurrency limit by itself.

Twilio limits an account by concurrency: with ``K`` requests in flight, the next one is answered
429 (code 20429, "not processed, safe to retry") at once. ``K`` is not published, differs between
accounts, and moves when other programs on the account get busy. :class:`AdaptiveConcurrency`
learns it from the answers and holds the requests in flight at ``K``: a caller takes a
:class:`Slot`, sends, and reports how it went; the limit moves with the reports.

The controller, and why (``benchmarks/bench_adaptive.py`` measures it, and AIMD beside it):

- **The 20429 is the signal, not latency.** Netflix's Gradient2 and Vegas limits and Envoy's
  adaptive concurrency filter lower the limit when round trips grow, which is how a server that
  queues shows it is full. Twilio does not queue beyond ``K``, it refuses at once: latency stays
  flat up to the limit and only a 20429 says where it is.
- **A refusal gives a bound, not just a direction.** A request granted as the ``n``-th in
  flight was refused: the account took fewer than ``n``, fewer still by the requests ahead of
  it that were refused too (they took none of its room). The limit drops to that at once, not
  by a factor, and answers to requests granted before a drop are ignored. AIMD instead cuts by a
  factor and climbs back a step per round trip, a sawtooth that spends most of its time below
  ``K``: at ``K = 10``, sitting at 9 already loses 10% of what the account allows.
- **At the start, slow start.** Each answer admitted while the limit is in use raises it by
  one, so it doubles every round trip, until the first refusal. (Tripling reaches a high limit
  a round trip sooner, but measured worse: refusals that come back late, from requests waiting
  for a new connection on a busy machine, let it run to three times the account's limit.)
- **Then rare probes.** Once the limit is known, one request goes above it ten round trips
  (``10 * limit`` answers admitted) after the limit last moved, then, at limits of 10 and more,
  every 15, 20... up to 30 round trips while probes are refused: one answer in ``10 * limit``
  at most (1% at a limit of 10, 0.1% at 100), and a third of that once the limit has held.
  Refused, a probe cost one 429, answered at once. Admitted, the limit climbs by 2, 4, 8...
  each time a request at its top is admitted, until a refusal: a limit that rose from 10 to 30
  soon after it fell is found in about a second at 100 ms a request.
- **Several programs on one account.** A refusal at a level the account took before (a limit
  that lasted ten round trips) means its limit fell or another program took room: the limit then
  gives up a tenth besides, as AIMD does, so that the larger of several programs gives up more,
  and probes again after ten round trips. Probes count round trips, not answers, so a program
  with a small share probes as often as one with a large one. Shares drift together only where
  a program can take the room another frees, which over a network stays open for a round trip;
  on loopback the one that frees a slot takes it back first, and a program squeezed to one slot
  stays there until the other stops (measured in ``benchmarks/RESULTS.md``). Nothing in a
  20429 tells a program alone at ``K`` from one beside another: for equal shares, share one
  limit (through Redis) or use ``Twilio-Concurrent-Requests``.
- **Below one, a pause.** When even the first request in flight is refused (another program
  holds the whole account), the limit stays at one and that slot is held a round trip longer
  before it is given back, twice as long each time it happens again, up to four round trips:
  callers retry a refused request at once, and the limiter paces them. The first request
  admitted after that probes at once: the room may be back.
- **A brake for queueing on this side.** When round trips run at twice their usual length,
  requests queue before they reach Twilio (a busy event loop, a starved CPU): more in flight
  would only queue more, so the limit does not grow (nor probe) until they shorten again. This
  is the one use of latency.
- **``Twilio-Concurrent-Requests``**, when the caller passes it, confirms a probe: an admitted
  probe counts only if the account had more requests in flight than the old limit (an answer
  still on its way back can let a probe through that proves nothing). The limiter works as well
  without it.

Time comes from the running loop's clock. Waiters are served first come, first served and woken
directly by whoever frees their slot: nothing polls. It is not thread-safe: one per event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal

import attrs

from ._checks import check_count

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "DEFAULT_CEILING",
    "DEFAULT_INITIAL",
    "AdaptiveConcurrency",
    "LimitChange",
    "LimitReason",
    "Slot",
]

logger = logging.getLogger("twilio_numbers_async")

#: The limit's starting point. An account allowing 10 pays 22 refusals, answered at once, to
#: find it (1% of 2,000 purchases); one allowing 100 is reached in two to three round trips,
#: which is what a short run at a high limit loses.
DEFAULT_INITIAL: Final = 32
#: The most requests in flight the limiter ever allows, unless told otherwise.
DEFAULT_CEILING: Final = 1000
# A probe every this many round trips (limit answers) after the limit last moved: soon enough to
# find within a couple of seconds that the account allows more again. Each refused probe puts
# the next 5 round trips further off, up to 30: a limit that holds is probed less and less.
_PROBE_RTTS: Final = 10
_PROBE_RTTS_BACKOFF: Final = 5
_PROBE_RTTS_MOST: Final = 30
# The longest pause at the floor (see _rejected): this many round trips, and 2 s at most.
_PAUSE_ROUND_TRIPS: Final = 4
_PAUSE_MOST: Final = 2.0
# What a refusal below a settled limit leaves of it (see _rejected).
_YIELD: Final = 0.9
# Refusals remembered for _refused_ahead: far more than are ever heard during one request.
_REFUSALS_KEPT: Final = 1024
# Weight of the newest round trip in the smoothed latency (as TCP's SRTT: 1/8).
_RTT_WEIGHT: Final = 0.125
# How fast the base round trip follows a higher latency: over a few hundred answers.
_BASE_DRIFT: Final = 1 / 256
# Round trips this much above the base mean requests queue somewhere before Twilio's limit (a
# busy event loop, a starved CPU); well above the spread of Twilio's own latency, and of the
# extra round trips a new connection's handshake adds.
_QUEUEING: Final = 2.0

#: Why the limit moved: ``"grow"`` (no limit known yet, or climbing after a probe found room),
#: ``"probe"`` (a request above the limit was admitted), ``"rejected"`` (a 20429 showed the
#: account takes fewer).
LimitReason = Literal["grow", "probe", "rejected"]

# A slot's life: made, queued, granted, answer reported, given back.
_NEW: Final = "new"
_WAITING: Final = "waiting"
_HELD: Final = "held"
_REPORTED: Final = "reported"
_DONE: Final = "given back"


@attrs.frozen
class LimitChange:
    """What an ``on_change`` hook receives each time the limit moves."""

    #: The new limit on requests in flight.
    limit: int
    #: The limit before this change.
    previous: int
    reason: LimitReason


class AdaptiveConcurrency:
    """A limit on requests in flight that moves with Twilio's answers. ::

        limiter = AdaptiveConcurrency()
        async with limiter.slot() as slot:
            response = await send()
            if response.status == 429 and "Retry-After" not in response.headers:
                slot.rejected()  # a 20429 for concurrency: the limit is lower
            elif response.status < 500:
                slot.admitted()  # Twilio processed it (a 201, or a 4xx it refused)
            # Anything else (a 5xx, a dropped connection, an exception) reports nothing.

    The slot is held from entering the block to leaving it, whatever happens inside; a task
    cancelled while it waits takes no slot. A refused request may be sent again at once, in a
    new slot: the limit has already dropped, and when it cannot drop below one, leaving the
    block pauses instead. A 429 *with* ``Retry-After`` is a rate limit, not a concurrency one:
    report nothing and wait as it says.

    :param initial: The limit to start from, before any answer came back.
    :param ceiling: The most requests in flight ever allowed, whatever the answers say.
    :param on_change: Called with a :class:`LimitChange` each time the limit moves (from the
        loop, inside the report that moved it); an exception it raises is logged, never
        passed on to the request that reported.
    """

    __slots__ = (
        "_base",
        "_ceiling",
        "_epoch",
        "_granted",
        "_growing",
        "_in_flight",
        "_latency",
        "_limit",
        "_on_change",
        "_pause",
        "_paused_until",
        "_probe_due",
        "_probe_rtts",
        "_probing",
        "_refusals",
        "_refused",
        "_settled",
        "_since_probe",
        "_step",
        "_waiters",
    )

    #: The current limit on requests in flight.
    _limit: int
    #: The most the limit may reach.
    _ceiling: int
    #: Slots granted and not yet given back (a probe's included).
    _in_flight: int
    #: Queued ``(slot, future)`` pairs, oldest first; a future's result is set when granted.
    _waiters: deque[tuple[Slot, asyncio.Future[None]]]
    #: Counts the limit's drops: a slot granted before the latest drop reports stale news.
    _epoch: int
    #: No limit is known yet: each answer admitted while the limit is used raises it by one,
    #: so that it doubles every round trip (slow start).
    _growing: bool
    #: A probe found room: the next raise, doubling each time the limit is proven; 0 when not
    #: climbing.
    _step: int
    #: Admitted answers since the last probe, or since the limit last moved.
    _since_probe: int
    #: One slot above the limit may be granted, as a probe.
    _probe_due: bool
    #: The probe slot is out.
    _probing: bool
    #: Round trips at the limit before the next probe.
    _probe_rtts: int
    #: Slots granted so far: each slot's number, its place in the order of sending.
    _granted: int
    #: A limit that lasted ten round trips without a refusal: a level the account took.
    _settled: int
    #: Refusals heard so far.
    _refusals: int
    #: The numbers of the latest slots refused, in the order their refusals were heard.
    _refused: deque[int]
    #: Smoothed round trip of admitted answers, in seconds; ``None`` until one came back.
    _latency: float | None
    #: The smoothed round trip when nothing queues: the lowest seen, creeping up towards the
    #: current one so that a lasting change of Twilio's pace is followed; 0 before the first.
    _base: float
    _on_change: Callable[[LimitChange], None] | None
    #: The latest pause after a refusal at the floor; 0 once a request is admitted again.
    _pause: float
    #: Loop time until which nobody is granted a slot (a 429's Retry-After); 0 when none.
    _paused_until: float

    def __init__(
        self,
        *,
        initial: int = DEFAULT_INITIAL,
        ceiling: int = DEFAULT_CEILING,
        on_change: Callable[[LimitChange], None] | None = None,
    ) -> None:
        ceiling = check_count("ceiling", ceiling)
        initial = check_count("initial", initial)
        if initial > ceiling:
            raise ValueError(
                f"initial ({initial}) is above ceiling ({ceiling}); start at or below the "
                "ceiling, or raise it"
            )
        self._limit = initial
        self._ceiling = ceiling
        self._in_flight = 0
        self._waiters = deque()
        self._epoch = 0
        self._growing = initial < ceiling
        self._step = 0
        self._since_probe = 0
        self._probe_due = False
        self._probing = False
        self._probe_rtts = _PROBE_RTTS
        self._settled = 0
        self._granted = 0
        self._refusals = 0
        self._refused = deque(maxlen=_REFUSALS_KEPT)
        self._latency = None
        self._base = 0.0
        self._on_change = on_change
        self._pause = 0.0
        self._paused_until = 0.0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(limit={self._limit}, in_flight={self._in_flight}, "
            f"ceiling={self._ceiling})"
        )

    @property
    def limit(self) -> int:
        """The requests allowed in flight now (a probe may briefly add one)."""
        return self._limit

    @property
    def ceiling(self) -> int:
        """The most requests in flight the limiter ever allows."""
        return self._ceiling

    @property
    def in_flight(self) -> int:
        """Slots held now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Callers queued for a slot."""
        return len(self._waiters)

    @property
    def latency(self) -> float | None:
        """The smoothed round trip of admitted requests in seconds; ``None`` before the first.

        ``limit / latency`` is the request rate the limit allows.
        """
        return self._latency

    def slot(self, *, max_wait: float | None = None) -> Slot:
        """A slot to hold while one request is in flight: ``async with limiter.slot() as s:``.

        With ``max_wait`` (seconds), entering raises :class:`TimeoutError` rather than wait
        longer: at once when a :meth:`pause` would outlast it. A caller that times out takes no
        slot.
        """
        return Slot(self, max_wait)

    def pause(self, seconds: float) -> None:
        """Grant no slot, for ``seconds`` from now (a 429's ``Retry-After``: a rate limit, not a
        concurrency one); requests in flight go on. Overlapping pauses end at the latest end."""
        if not seconds > 0:
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        if until > self._paused_until:
            self._paused_until = until
            loop.call_at(until, self._wake)

    # --- taking and giving back ----------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _has_room(self) -> bool:
        if self._paused_until and self._now() < self._paused_until:
            return False
        return self._in_flight < self._limit or (self._probe_due and self._in_flight == self._limit)

    def _grant(self, slot: Slot, now: float) -> None:
        self._in_flight += 1
        self._granted += 1
        slot._number = self._granted
        slot._ordinal = self._in_flight
        slot._refusals = self._refusals
        slot._epoch = self._epoch
        slot._started = now
        if self._in_flight > self._limit:
            slot._probe = True
            self._probe_due = False
            self._probing = True

    async def _acquire(self, slot: Slot, max_wait: float | None) -> None:
        if not self._waiters and self._has_room():
            self._grant(slot, self._now())
            return
        if max_wait is not None and self._paused_until - self._now() > max_wait:
            raise TimeoutError(f"{self!r} is paused beyond the {max_wait:g} s allowed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (slot, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(max_wait):
                await fut
        except (asyncio.CancelledError, TimeoutError):
            if fut.cancelled():
                # Still queued, unless _wake already dropped the dead future.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            else:
                # Granted, but cancelled before it could resume: the slot was never used.
                self._release(slot)
            raise

    def _release(self, slot: Slot) -> None:
        self._in_flight -= 1
        if slot._probe and slot._state != _REPORTED:
            # The probe learnt nothing (an error, a cancellation): let the next request probe.
            self._probing = False
            self._probe_due = slot._epoch == self._epoch and self._limit < self._ceiling
        self._wake()

    def _wake(self) -> None:
        """Grant slots to waiters from the head of the queue while there is room."""
        waiters = self._waiters
        if not waiters:
            return
        now = self._now()
        while waiters and self._has_room():
            slot, fut = waiters.popleft()
            if fut.done():  # cancelled: its task removes nothing, the entry is gone
                continue
            self._grant(slot, now)
            fut.set_result(None)

    # --- feedback ------------------------------------------------------------------------

    def _admitted(self, slot: Slot, concurrent_requests: int | None) -> None:
        rtt = self._now() - slot._started
        if self._pause:
            # Room again after the account had none: whatever held it may have stopped, and
            # the limit is at the floor. Probe at once rather than ten round trips on.
            self._pause = 0.0
            self._probe_due = not self._probing and self._limit < self._ceiling
        latency = self._latency
        latency = self._latency = (
            rtt if latency is None else latency + _RTT_WEIGHT * (rtt - latency)
        )
        base = self._base
        if latency < base or not base:
            base = self._base = latency
        else:
            base = self._base = base + _BASE_DRIFT * (latency - base)
        if slot._probe:
            self._probing = False
        if slot._epoch != self._epoch:
            return  # granted before the limit dropped: says nothing about the new one
        if slot._probe:
            if concurrent_requests is not None and concurrent_requests <= self._limit:
                # The account was not above the limit after all: probe again, at no cost.
                self._probe_due = True
            else:
                self._step = 2
                self._probe_rtts = _PROBE_RTTS
                self._move(slot._ordinal, "probe")
        elif latency > _QUEUEING * base:
            # Requests queue on this side of Twilio (a busy event loop, a starved CPU): more in
            # flight would not be more purchases a second, only longer round trips. Hold.
            pass
        elif self._growing:
            # One more per answer, rather than a jump once a round trip: new requests go out as
            # answers come back, so a refusal is heard a few requests after the account's
            # limit is crossed, not a whole round trip's growth later. A limit that is not used
            # (fewer than half of it in flight) must not grow.
            if 2 * self._in_flight >= self._limit:
                self._move(self._limit + 1, "grow")
        elif self._step:
            # Climbing after a probe found room: raise by 2, 4, 8... each time a request at
            # the top of the limit is admitted. A probe can be admitted by luck (an answer was
            # still on its way back, so the account had room for a moment); then the next raise
            # waits for a proof that does not come, and the first refusal ends the climb.
            if slot._ordinal >= self._limit:
                step = self._step
                self._step = 2 * step
                self._move(self._limit + step, "grow")
        elif not self._probing and not self._probe_due and self._limit < self._ceiling:
            self._since_probe += 1
            if self._since_probe == _PROBE_RTTS * self._limit:
                # Ten round trips at this limit without a refusal: the account takes it.
                self._settled = self._limit
            if self._since_probe >= self._probe_rtts * self._limit:
                self._probe_due = True
        # No waking here: the reporter still holds its slot, and a probe granted now would be
        # the limit-th in flight by the time it is sent, not one above. Leaving the block wakes.

    def _rejected(self, slot: Slot) -> None:
        if slot._probe:
            self._probing = False
            if self._limit >= _PROBE_RTTS:
                # Below 10 there is little to save, and a program squeezed down to a few slots
                # by another on the account must find the room soon once the other stops.
                self._probe_rtts = min(self._probe_rtts + _PROBE_RTTS_BACKOFF, _PROBE_RTTS_MOST)
        self._growing = False
        self._step = 0
        self._probe_due = False
        self._since_probe = 0
        bound = slot._ordinal - 1 - self._refused_ahead(slot)
        if bound < 1:
            # The account had no room even for one: the limit cannot go below one, so this
            # slot is held a while longer instead (a limit below one, as a pause), doubling
            # while it lasts, lest the program send one refused request after another; but
            # not beyond a few round trips, to find the room soon when it comes back.
            first = self._latency if self._latency is not None else self._now() - slot._started
            self._pause = (
                min(2 * self._pause, _PAUSE_ROUND_TRIPS * first, _PAUSE_MOST)
                if self._pause
                else first
            )
            slot._pause = self._pause
        if slot._ordinal <= self._settled and not slot._probe:
            # Refused at a level the account took before: the account's limit fell, or another
            # program on it took room. Give up a tenth besides, as AIMD does: the larger of
            # several programs sharing an account gives up more, and their shares converge.
            # And probe soon again: the account may take more again as soon as it took less.
            bound = min(bound, int(self._limit * _YIELD))
            self._probe_rtts = _PROBE_RTTS
        bound = max(1, bound)
        self._refusals += 1
        self._refused.append(slot._number)
        if bound < self._limit:
            self._epoch += 1
            self._move(bound, "rejected")

    def _refused_ahead(self, slot: Slot) -> int:
        """How many of the requests in flight when ``slot`` was granted have been refused since.

        The account refused the n-th request in flight, so it takes fewer than n; fewer still
        by those: they were counted in n, but the account had refused them, and they took none
        of its room. Without this, a limit above the account's walks down one refusal at a
        time, each step paying for every request sent at the old limit before the refusals of
        the step above came back.
        """
        since = self._refusals - slot._refusals
        if since > len(self._refused):  # more than are kept: count them all
            return since
        # Only those sent before this slot: a later one was not in flight when it was granted.
        recent = itertools.islice(reversed(self._refused), since)
        return sum(1 for number in recent if number < slot._number)

    def _move(self, limit: int, reason: LimitReason) -> None:
        limit = min(limit, self._ceiling)
        previous = self._limit
        if limit == previous:
            return
        self._limit = limit
        self._since_probe = 0
        if limit == self._ceiling:
            self._growing = False
            self._step = 0
        logger.debug("concurrency limit %d -> %d (%s)", previous, limit, reason)
        hook = self._on_change
        if hook is not None:
            try:
                hook(LimitChange(limit, previous, reason))
            except Exception:
                # The report comes from a request that may have bought a number: a display's
                # bug must not turn that purchase into an error.
                logger.exception("the concurrency limit's on_change hook raised")


class Slot:
    """One request's place among those in flight, from :meth:`AdaptiveConcurrency.slot`.

    Enter it to wait for room (first come, first served), report the answer with
    :meth:`admitted` or :meth:`rejected` at most once while inside, and leave it to give the
    place back. A slot is used once.
    """

    __slots__ = (
        "_epoch",
        "_limiter",
        "_max_wait",
        "_number",
        "_ordinal",
        "_pause",
        "_probe",
        "_refusals",
        "_started",
        "_state",
    )

    def __init__(self, limiter: AdaptiveConcurrency, max_wait: float | None = None) -> None:
        self._limiter = limiter
        self._max_wait = max_wait
        self._state = _NEW
        self._probe = False
        self._number = 0
        self._pause = 0.0
        self._ordinal = 0
        self._refusals = 0
        self._epoch = 0
        self._started = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state}, {self._ordinal} in flight when granted>"

    async def __aenter__(self) -> Slot:
        if self._state != _NEW:
            raise RuntimeError("this slot was already used; take a new one with limiter.slot()")
        self._state = _WAITING
        try:
            await self._limiter._acquire(self, self._max_wait)
        except BaseException:
            self._state = _DONE  # no slot was taken: nothing to give back
            raise
        self._state = _HELD
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._pause:
                await asyncio.sleep(self._pause)
        finally:
            self._limiter._release(self)
            self._state = _DONE

    def admitted(self, concurrent_requests: int | None = None) -> None:
        """Twilio processed the request: a 2xx, or a 4xx other than 429.

        :param concurrent_requests: The ``Twilio-Concurrent-Requests`` header of the answer,
            if Twilio sent one: the account's requests in flight. Optional.
        """
        self._report()
        self._limiter._admitted(self, concurrent_requests)

    def rejected(self) -> None:
        """Twilio refused the request for concurrency: a 429 (20429) without ``Retry-After``."""
        self._report()
        self._limiter._rejected(self)

    def _report(self) -> None:
        if self._state != _HELD:
            raise RuntimeError(
                f"this slot is {self._state}: report an answer once, inside "
                "`async with limiter.slot() as slot:`"
            )
        self._state = _REPORTED
