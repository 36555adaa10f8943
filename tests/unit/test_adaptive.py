"""Tests for the adaptive concurrency limiter, driven by fake answers: nothing here sleeps.

Most tests hold slots open in tasks and report answers by hand. :class:`Account` plays Twilio:
it admits a request while fewer than ``k`` are in flight and refuses the rest at once, and the
test decides, with a seeded random choice, which admitted request is answered next. The only
clock read is the round trip behind :attr:`AdaptiveConcurrency.latency`, on a patched loop clock.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import TYPE_CHECKING
from unittest import mock

import pytest

from twilio_numbers_async._adaptive import AdaptiveConcurrency, LimitChange, Slot

from .test_ratelimit import FakeClock, settle

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


@pytest.fixture(autouse=True)
async def clock() -> AsyncIterator[FakeClock]:
    """The loop's clock, stopped: every round trip takes no time unless a test moves it."""
    fake = FakeClock(1000.0)
    with mock.patch.object(asyncio.get_running_loop(), "time", fake):
        yield fake


class Held:
    """A task holding one slot until the test answers for it."""

    def __init__(self, limiter: AdaptiveConcurrency) -> None:
        self.slot = limiter.slot()
        self.granted = False
        self.answer: asyncio.Future[Callable[[Slot], None]] = (
            asyncio.get_running_loop().create_future()
        )
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async with self.slot as slot:
            self.granted = True
            report = await self.answer
            report(slot)

    async def admit(self, concurrent_requests: int | None = None) -> None:
        self.answer.set_result(lambda slot: slot.admitted(concurrent_requests))
        await self.task

    async def reject(self) -> None:
        self.answer.set_result(Slot.rejected)
        await self.task

    async def drop(self) -> None:
        """Leave without a report: an error that says nothing about the limit."""
        self.answer.set_result(lambda slot: None)
        await self.task


async def hold(limiter: AdaptiveConcurrency, count: int) -> list[Held]:
    held = [Held(limiter) for _ in range(count)]
    await settle()
    return held


class Account:
    """Twilio's concurrency limit: ``k`` requests in flight, the next refused at once.

    With ``refusal_lag``, a refusal is heard only that many answers (to other requests) later,
    as over a network, where it takes a round trip to come back.
    """

    def __init__(
        self, limiter: AdaptiveConcurrency, k: int, *, refusal_lag: int = 0, seed: int = 0
    ) -> None:
        self.limiter = limiter
        self.k = k
        self.refusal_lag = refusal_lag
        self.in_flight: list[asyncio.Future[None]] = []
        self.posts = self.refused = self.bought = 0
        self.most_in_flight = 0
        self._answers = 0
        self._late: list[tuple[int, asyncio.Future[None]]] = []
        self._random = random.Random(seed)  # noqa: S311 - reproducible, not secret

    async def buy(self) -> None:
        """One purchase: sent again after each refusal, as the client will."""
        while True:
            async with self.limiter.slot() as slot:
                self.posts += 1
                if len(self.in_flight) >= self.k:
                    if self.refusal_lag:
                        heard = asyncio.get_running_loop().create_future()
                        self._late.append((self._answers + self.refusal_lag, heard))
                        await heard
                    self.refused += 1
                    slot.rejected()
                    continue
                answered = asyncio.get_running_loop().create_future()
                self.in_flight.append(answered)
                self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
                await answered
                self.bought += 1
                slot.admitted()
                return

    async def answer(self, count: int) -> None:
        """Answer ``count`` requests in flight, one a step, picked at random (latencies vary)."""
        for _ in range(count):
            await settle(3)
            self._answers += 1
            for at, heard in self._late:
                if at <= self._answers:
                    heard.set_result(None)
            self._late = [(at, heard) for at, heard in self._late if not heard.done()]
            await settle(3)
            if self.in_flight:
                answered = self.in_flight.pop(self._random.randrange(len(self.in_flight)))
                answered.set_result(None)
        await settle(3)


def start(account: Account, purchases: int) -> list[asyncio.Task[None]]:
    return [asyncio.ensure_future(account.buy()) for _ in range(purchases)]


async def finish(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def limits(changes: list[LimitChange]) -> list[int]:
    return [change.limit for change in changes]


# --- construction -------------------------------------------------------------------------------


def test_defaults_and_repr() -> None:
    limiter = AdaptiveConcurrency()
    assert (limiter.limit, limiter.ceiling) == (32, 1000)
    assert (limiter.in_flight, limiter.waiting, limiter.latency) == (0, 0, None)
    assert repr(limiter) == "AdaptiveConcurrency(limit=32, in_flight=0, ceiling=1000)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0}, "initial must be an int >= 1, not 0"),
        ({"ceiling": 0}, "ceiling must be an int >= 1, not 0"),
        ({"initial": True}, "initial must be an int >= 1, not True"),
        ({"ceiling": 2.5}, "ceiling must be an int >= 1, not 2.5"),
        ({"initial": 20, "ceiling": 10}, r"initial \(20\) is above ceiling \(10\)"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveConcurrency(**kwargs)  # type: ignore[arg-type]


# --- slots: taking, queueing, giving back -------------------------------------------------------


async def test_slots_up_to_the_limit_are_granted_at_once_and_the_rest_queue_in_order() -> None:
    limiter = AdaptiveConcurrency(initial=2)
    held = await hold(limiter, 4)
    assert [h.granted for h in held] == [True, True, False, False]
    assert (limiter.in_flight, limiter.waiting) == (2, 2)
    await held[1].drop()
    await settle()
    assert [h.granted for h in held] == [True, True, True, False]
    await held[0].drop()
    await settle()
    assert held[3].granted
    assert (limiter.in_flight, limiter.waiting) == (2, 0)
    await finish([h.task for h in held])
    assert limiter.in_flight == 0


async def test_a_newcomer_queues_behind_waiters_even_when_a_slot_just_freed() -> None:
    limiter = AdaptiveConcurrency(initial=1)
    first, second = await hold(limiter, 2)
    first.answer.set_result(lambda slot: None)
    await asyncio.sleep(0)  # first leaves, granting second's slot; second has not resumed
    # A newcomer arrives before the waiter resumes: the freed slot is already the waiter's.
    third = Held(limiter)
    await settle()
    assert (second.granted, third.granted) == (True, False)
    await finish([second.task, third.task])


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    limiter = AdaptiveConcurrency(initial=1)
    first, second, third = await hold(limiter, 3)
    second.task.cancel()
    await settle()
    assert limiter.waiting == 1
    await first.drop()
    await settle()
    assert third.granted
    assert limiter.in_flight == 1
    await finish([third.task])
    assert limiter.in_flight == 0


async def test_a_waiter_cancelled_once_granted_gives_its_slot_back() -> None:
    limiter = AdaptiveConcurrency(initial=1)
    first, second, third = await hold(limiter, 3)
    first.answer.set_result(lambda slot: None)
    await asyncio.sleep(0)  # first leaves, granting second's slot; second has not resumed
    assert limiter.in_flight == 1
    second.task.cancel()
    await settle()
    assert not second.granted
    assert third.granted
    assert limiter.in_flight == 1
    await finish([third.task])
    assert limiter.in_flight == 0


async def test_an_exception_in_the_block_gives_the_slot_back() -> None:
    limiter = AdaptiveConcurrency(initial=1)
    with pytest.raises(OSError, match="connection reset"):
        async with limiter.slot():
            raise OSError("connection reset")
    assert limiter.in_flight == 0
    assert limiter.limit == 1


async def test_a_slot_is_used_once_and_reports_once_inside() -> None:
    limiter = AdaptiveConcurrency()
    slot = limiter.slot()
    with pytest.raises(RuntimeError, match="this slot is new: report an answer once"):
        slot.admitted()
    async with slot:
        slot.admitted()
        with pytest.raises(RuntimeError, match="this slot is reported"):
            slot.rejected()
    with pytest.raises(RuntimeError, match="this slot is given back"):
        slot.admitted()
    with pytest.raises(RuntimeError, match="already used; take a new one"):
        async with slot:
            pass
    assert limiter.in_flight == 0


# --- the limit ----------------------------------------------------------------------------------


async def test_at_the_start_each_answer_while_the_limit_is_used_raises_it_by_one() -> None:
    changes: list[LimitChange] = []
    limiter = AdaptiveConcurrency(initial=4, on_change=changes.append)
    held = await hold(limiter, 4)
    for h in held:
        await h.admit()
    # Answered with 4 and 3 in flight, the first two raise it; with 2 and 1 in flight, under
    # half of the new limit (6) is used: no more.
    assert changes == [LimitChange(5, 4, "grow"), LimitChange(6, 5, "grow")]


async def test_a_program_that_does_not_fill_its_limit_never_grows_it() -> None:
    limiter = AdaptiveConcurrency(initial=4)
    for _ in range(300):
        async with limiter.slot() as slot:
            slot.admitted()
    assert limiter.limit == 4


async def test_a_refusal_drops_the_limit_to_below_the_refused_request_at_once() -> None:
    changes: list[LimitChange] = []
    limiter = AdaptiveConcurrency(initial=16, on_change=changes.append)
    held = await hold(limiter, 16)
    await held[11].reject()  # the 12th in flight was refused: the account took at most 11
    assert changes == [LimitChange(11, 16, "rejected")]
    # Answers to requests sent before the drop, high or low, change nothing.
    await held[15].admit()
    await held[14].reject()
    await held[0].admit()
    assert limiter.limit == 11
    # A later refusal lower down is news: it drops the limit again.
    await held[5].reject()
    assert limits(changes) == [11, 5]
    await finish([h.task for h in held])


async def test_a_refusal_at_a_level_the_account_took_before_also_gives_up_a_tenth() -> None:
    # The account's limit fell, or another program on it took room: as in AIMD, the larger of
    # several programs gives up more, and their shares converge.
    limiter = await known_limit(20)
    held = await probe_out(limiter)  # ten round trips at 20 without a refusal: settled
    normal = next(h for h in held if h.slot._ordinal == 20)
    await normal.reject()
    assert limiter.limit == 18  # not 19
    await finish([h.task for h in held])


async def test_a_refusal_just_after_a_cut_is_taken_at_its_word() -> None:
    # The cut before was not deep enough (a limit coming down from far above): no tenth more.
    limiter = await known_limit(20)
    held = await hold(limiter, 20)
    await held[-1].reject()
    assert limiter.limit == 19
    await finish([h.task for h in held])


async def test_the_limit_never_drops_below_one() -> None:
    limiter = AdaptiveConcurrency(initial=1)
    for _ in range(3):
        async with limiter.slot() as slot:
            slot.rejected()
    assert limiter.limit == 1


async def test_the_limit_never_grows_past_the_ceiling() -> None:
    limiter = AdaptiveConcurrency(initial=4, ceiling=6)
    account = Account(limiter, k=50)
    tasks = start(account, 400)
    await account.answer(400)
    assert limiter.limit == 6
    assert account.most_in_flight == 6
    assert account.refused == 0
    await finish(tasks)


# --- probes -------------------------------------------------------------------------------------


async def known_limit(limit: int, **kwargs: Callable[[LimitChange], None]) -> AdaptiveConcurrency:
    """A limiter that has found ``limit``: it started above it and was refused just over it."""
    limiter = AdaptiveConcurrency(initial=limit + 1, **kwargs)
    held = await hold(limiter, limit + 1)
    await held[-1].reject()
    for h in held[:-1]:
        await h.drop()
    assert limiter.limit == limit
    return limiter


async def answered(limiter: AdaptiveConcurrency, count: int, held: list[Held]) -> None:
    """Keep ``limiter`` full and admit ``count`` answers, the oldest first; ``held`` is what
    the test holds, and gains the slots taken to keep it full."""
    for _ in range(count):
        held += await hold(limiter, limiter.limit - limiter.in_flight)
        oldest = next(h for h in held if h.granted and not h.task.done())
        await oldest.admit()
    held[:] = [h for h in held if not h.task.done()]


async def probe_out(
    limiter: AdaptiveConcurrency, held: list[Held] | None = None, *, waiters: int = 0
) -> list[Held]:
    """Keep ``limiter`` full until its probe is granted (ten round trips, when it was not
    refused before); then queue ``waiters`` more. Returns what is held (``held``, grown): the
    probe is ``held[-1 - waiters]``."""
    held = [] if held is None else held
    await answered(limiter, 10 * limiter.limit, held)
    held += await hold(limiter, 2 + waiters)
    assert held[-1 - waiters].slot._probe
    return held


async def test_a_probe_goes_above_the_limit_every_ten_round_trips() -> None:
    limiter = await known_limit(20)
    held: list[Held] = []
    await answered(limiter, 199, held)
    held += await hold(limiter, 3)
    assert (limiter.in_flight, limiter.waiting) == (20, 2)  # no probe yet
    await held[0].admit()  # the 200th answer: ten round trips at 20 in flight
    await settle()
    # Its slot goes to the next in line, and the probe to the one after: above the limit.
    assert (limiter.in_flight, limiter.waiting) == (21, 0)
    assert [h.slot._probe for h in held[-2:]] == [False, True]
    # One probe at a time.
    held += await hold(limiter, 1)
    assert limiter.waiting == 1
    await finish([h.task for h in held])


async def test_each_refused_probe_puts_the_next_five_round_trips_further_off() -> None:
    limiter = await known_limit(20)
    held: list[Held] = []
    for rtts in (10, 15, 20, 25, 30, 30):
        await answered(limiter, rtts * 20 - 1, held)
        held += await hold(limiter, 2)
        assert (limiter.in_flight, limiter.waiting) == (20, 1)  # not yet
        await held[0].admit()  # the last answer before the probe: its slot to the waiter
        held += await hold(limiter, 1)
        assert limiter.in_flight == 21  # the probe
        await held.pop().reject()
        assert limiter.limit == 20
        held = [h for h in held if not h.task.done()]
    await finish([h.task for h in held])


async def test_once_the_limit_moved_the_next_probe_comes_ten_round_trips_on() -> None:
    limiter = await known_limit(20)
    held = await probe_out(limiter)
    await held.pop().reject()  # the next comes 15 round trips on...
    await answered(limiter, 5 * 20, held)
    await probe_out(limiter, held)
    await held.pop().admit()  # ... and finds the account takes 21
    assert limiter.limit == 21
    held = [h for h in held if not h.task.done()]
    held += await hold(limiter, 2)
    await next(h for h in held if h.slot._ordinal == 21).reject()  # but not 21 for long
    assert limiter.limit == 20
    for h in held:  # what was sent before the cut says nothing about the limit after it
        if not h.task.done():
            await h.drop()
    held = []
    await answered(limiter, 10 * 20 - 1, held)
    held += await hold(limiter, 2)
    assert limiter.waiting == 1
    await held[0].admit()
    held += await hold(limiter, 1)
    assert limiter.in_flight == 21  # the probe, ten round trips on
    await finish([h.task for h in held])


async def test_an_admitted_probe_raises_the_limit_and_it_climbs_by_2_4_8() -> None:
    changes: list[LimitChange] = []
    limiter = await known_limit(20, on_change=changes.append)
    held = await probe_out(limiter)
    await held.pop().admit()  # the probe, 21st in flight
    assert changes[-1] == LimitChange(21, 20, "probe")
    for step in (2, 4, 8):
        limit = limiter.limit
        held += await hold(limiter, limit - limiter.in_flight + 1)
        # Answers from below the top prove nothing yet...
        await next(h for h in held if h.slot._ordinal < limit).admit()
        assert limiter.limit == limit
        # ... the one at the top does.
        top = next(h for h in held if h.slot._ordinal == limit and not h.task.done())
        await top.admit()
        assert changes[-1] == LimitChange(limit + step, limit, "grow")
        held = [h for h in held if not h.task.done()]
    await finish([h.task for h in held])


async def test_small_limits_probe_every_ten_round_trips() -> None:
    limiter = await known_limit(3)
    held = await probe_out(limiter)  # after 30 answers
    assert limiter.in_flight == 4
    await finish([h.task for h in held])


async def test_a_probe_that_learnt_nothing_is_tried_again_on_the_next_request() -> None:
    limiter = await known_limit(20)
    held = await probe_out(limiter, waiters=1)
    probe, waiter = held[-2:]
    assert not waiter.granted
    await probe.drop()  # a 5xx, a dropped connection: no news about the limit
    await settle()
    assert waiter.slot._probe
    await finish([h.task for h in held])


async def test_the_concurrency_header_tells_a_real_probe_from_a_lucky_one() -> None:
    limiter = await known_limit(20)
    held = await probe_out(limiter, waiters=1)
    probe, waiter = held[-2:]
    # Twilio counted only 20 in flight: an answer was on its way back, the probe proved nothing.
    await probe.admit(concurrent_requests=20)
    assert limiter.limit == 20
    await settle()
    assert waiter.slot._probe  # so the next request probes again, at no cost
    await waiter.admit(concurrent_requests=21)
    assert limiter.limit == 21
    await finish([h.task for h in held])


# --- against an account that refuses beyond k -------------------------------------------------


@pytest.mark.parametrize("k", [1, 10, 30, 100])
async def test_it_finds_the_account_limit_and_pays_under_two_percent_for_it(k: int) -> None:
    limiter = AdaptiveConcurrency()
    account = Account(limiter, k)
    tasks = start(account, 2000)
    await account.answer(2000)
    assert account.bought == 2000
    assert limiter.limit in (k, k + 1)  # k + 1 only just after an admitted probe
    assert account.refused / account.posts <= (0.02 if k >= 10 else 0.1)
    await finish(tasks)


async def test_it_follows_the_account_limit_down_and_back_up() -> None:
    limiter = AdaptiveConcurrency()
    account = Account(limiter, 30)
    tasks = start(account, 2000)
    await account.answer(300)
    assert limiter.limit == 30
    account.k = 10
    # Within the answers to what was already in flight (30), the limit is down to 10.
    await account.answer(30)
    assert limiter.limit == 10
    refused = account.refused
    account.k = 30
    # A probe after 100 answers, then 11, 13, 17, 25, 41 -> refused -> 30: a few round trips.
    await account.answer(100 + 5 * 30)
    assert limiter.limit == 30
    assert account.refused - refused <= 15
    await finish(tasks)


async def test_late_refusals_do_not_make_the_limit_walk_down_one_refusal_at_a_time() -> None:
    limiter = AdaptiveConcurrency()
    account = Account(limiter, 30, refusal_lag=3)
    tasks = start(account, 2000)
    await account.answer(300)
    refused = account.refused
    account.k = 10
    await account.answer(100)
    assert limiter.limit == 10
    # The 20 requests over the new limit, and no more: a refusal counts out the requests
    # refused ahead of it (counting them in, it took 153).
    assert account.refused - refused <= 25
    await finish(tasks)


async def test_the_limit_over_time_is_reported_to_the_hook() -> None:
    changes: list[LimitChange] = []
    limiter = AdaptiveConcurrency(on_change=changes.append)
    account = Account(limiter, 40)
    tasks = start(account, 300)
    await account.answer(300)
    # One more per answer from 32, until a request above 40 was refused.
    first_cut = [c.reason for c in changes].index("rejected")
    assert changes[:first_cut] == [LimitChange(n + 1, n, "grow") for n in range(32, 32 + first_cut)]
    assert changes[first_cut].limit == 40
    assert all(c.previous == p.limit for p, c in itertools.pairwise(changes))
    await finish(tasks)


async def test_a_hook_that_raises_is_logged_and_the_report_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(change: LimitChange) -> None:
        raise ZeroDivisionError

    limiter = AdaptiveConcurrency(initial=1, on_change=broken)
    async with limiter.slot() as slot:
        slot.admitted()
    assert limiter.limit == 2
    assert "on_change hook raised" in caplog.text


# --- latency ------------------------------------------------------------------------------------


async def test_latency_is_the_smoothed_round_trip_of_admitted_requests(clock: FakeClock) -> None:
    limiter = AdaptiveConcurrency()
    first, refused = await hold(limiter, 2)
    clock.now += 0.2
    await first.admit()
    await refused.reject()  # a refusal's round trip is not the latency
    last = (await hold(limiter, 1))[0]
    clock.now += 1.0
    await last.admit()
    assert limiter.latency == pytest.approx(0.2 + (1.0 - 0.2) / 8)


async def test_refused_with_no_room_even_for_one_a_slot_is_held_longer(clock: FakeClock) -> None:
    # The limit cannot go below one: a pause instead, a round trip, doubling while it lasts,
    # rather than one refused request after another.
    limiter = AdaptiveConcurrency(initial=1, ceiling=1)
    async with limiter.slot() as slot:
        clock.now += 0.1
        slot.admitted()
    for pause in (0.1, 0.2, 0.4):
        refused, waiter = Held(limiter), Held(limiter)
        await settle()
        refused.answer.set_result(Slot.rejected)
        await settle()
        await clock.advance(pause - 0.001)
        assert not waiter.granted
        await clock.advance(0.001)
        assert waiter.granted
        await waiter.drop()
    async with limiter.slot() as slot:  # admitted again: no more pause
        slot.admitted()
    refused, waiter = Held(limiter), Held(limiter)
    await settle()
    await refused.drop()  # not refused: no pause
    assert waiter.granted
    await finish([waiter.task])


async def test_the_first_request_admitted_after_a_pause_probes(clock: FakeClock) -> None:
    limiter = AdaptiveConcurrency(initial=1, ceiling=10)
    async with limiter.slot() as slot:
        clock.now += 0.1
        slot.admitted()
    refused = Held(limiter)
    await settle()
    refused.answer.set_result(Slot.rejected)  # no room even for one: the floor, and a pause
    await settle()
    await clock.advance(0.1)
    assert (limiter.limit, limiter.in_flight) == (1, 0)
    # Room again: whatever held the account may have stopped. Probe at once.
    await (await hold(limiter, 1))[0].admit()
    held = await hold(limiter, 2)
    assert limiter.in_flight == 2
    assert held[1].slot._probe
    await finish([h.task for h in held])


async def test_nothing_grows_while_round_trips_are_twice_what_they_were(clock: FakeClock) -> None:
    # Requests queue on this side (a starved CPU): more in flight would only queue more.
    limiter = AdaptiveConcurrency(initial=4)
    for rtt in [0.1] * 4 + [1.0] * 8:
        held = await hold(limiter, limiter.limit)
        clock.now += rtt
        await held[-1].admit()  # from the top: it would grow the limit
        await finish([h.task for h in held])
    assert limiter.limit == 8  # four answers at 0.1 s grew it; none since
    assert limiter.latency is not None
    assert limiter.latency > 2 * 0.1
    for _ in range(16):  # back to the usual pace: once the smoothed latency follows, it grows
        held = await hold(limiter, limiter.limit)
        clock.now += 0.1
        await held[-1].admit()
        await finish([h.task for h in held])
    assert limiter.limit > 8
