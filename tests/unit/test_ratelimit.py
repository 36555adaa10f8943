"""Tests for the token bucket, on a fake loop clock: nothing here really sleeps.

The ``clock`` fixture makes a :class:`~tests._clock.FakeClock` the running loop's clock: a timer
fires only once the test moves the clock past its deadline and lets the loop run a few rounds.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._clock import FakeClock, settle
from twilio_numbers_async import ratelimit
from twilio_numbers_async.ratelimit import Limiter, TokenBucket

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine
    from typing import Any


@pytest.fixture
async def clock() -> AsyncIterator[FakeClock]:
    with FakeClock().installed() as fake:
        yield fake


class TimerSpy:
    """Records every ``loop.call_at`` handle, to count the timers still due to fire."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: FakeClock) -> None:
        self.handles: list[asyncio.TimerHandle] = []
        self._call_at = loop.call_at
        self._clock = clock

    def __call__(self, when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        handle = self._call_at(when, callback, *args)
        self.handles.append(handle)
        return handle

    def pending(self) -> list[float]:
        """The deadlines of the timers neither cancelled nor fired yet."""
        return [h.when() for h in self.handles if not h.cancelled() and h.when() > self._clock.now]


@pytest.fixture
async def timers(clock: FakeClock) -> AsyncIterator[TimerSpy]:
    loop = asyncio.get_running_loop()
    spy = TimerSpy(loop, clock)
    with mock.patch.object(loop, "call_at", spy):
        yield spy


def start(aw: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    return asyncio.ensure_future(aw)


async def drain(bucket: TokenBucket) -> None:
    for _ in range(int(bucket.capacity)):
        await bucket.acquire()


# --- construction and validation -------------------------------------------------------------


def test_exports_are_sorted() -> None:
    assert ratelimit.__all__ == sorted(ratelimit.__all__)
    assert ratelimit.__all__ == [
        "AdaptiveConcurrency",
        "LimitChange",
        "LimitReason",
        "Limiter",
        "TokenBucket",
    ]


def test_is_a_limiter() -> None:
    limiter: Limiter = TokenBucket(1)  # mypy checks the signatures; this, that the names exist
    assert callable(limiter.acquire)
    assert callable(limiter.pause)


def test_attributes_and_repr() -> None:
    bucket = TokenBucket(25)
    assert bucket.rate == 25.0
    assert bucket.capacity == 25.0
    assert isinstance(bucket.rate, float)
    assert isinstance(bucket.capacity, float)
    assert repr(bucket) == "TokenBucket(rate=25.0, capacity=25.0)"
    assert repr(TokenBucket(2.5, 10)) == "TokenBucket(rate=2.5, capacity=10.0)"
    with pytest.raises(AttributeError):
        bucket.rate = 3  # type: ignore[misc]


def test_capacity_defaults_to_rate_but_at_least_one() -> None:
    assert TokenBucket(7).capacity == 7.0
    assert TokenBucket(0.5).capacity == 1.0


@pytest.mark.parametrize(
    ("rate", "match"),
    [
        (0, "greater than 0"),
        (-1.5, "greater than 0"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        (10**400, "finite"),
    ],
)
def test_rejects_bad_rate(rate: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenBucket(rate)


@pytest.mark.parametrize(
    ("capacity", "match"),
    [(0.5, "at least 1"), (0, "at least 1"), (-3, "at least 1"), (math.nan, "finite")],
)
def test_rejects_bad_capacity(capacity: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenBucket(10, capacity)


@pytest.mark.parametrize("value", ["25", None, True])
def test_rejects_non_numbers(value: Any) -> None:
    with pytest.raises(TypeError, match="must be a number"):
        TokenBucket(value)
    if value is not None:
        with pytest.raises(TypeError, match="must be a number"):
            TokenBucket(10, value)


@pytest.mark.parametrize(
    ("tokens", "match"), [(0, "at least 1"), (-1, "at least 1"), (6, "raise capacity")]
)
async def test_rejects_bad_token_counts(tokens: int, match: str) -> None:
    bucket = TokenBucket(1, 5)
    with pytest.raises(ValueError, match=match):
        await bucket.acquire(tokens)


# --- refill ------------------------------------------------------------------------------------


async def test_starts_full(clock: FakeClock) -> None:
    bucket = TokenBucket(2, 5)
    await bucket.acquire(3)
    await bucket.acquire(2)
    late = start(bucket.acquire())
    await settle()
    assert not late.done()
    await clock.advance(0.5)
    assert late.done()


async def test_refills_at_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(4, 4)
    await drain(bucket)
    first, second = start(bucket.acquire()), start(bucket.acquire(2))
    await clock.set(0.24)
    assert not first.done()
    await clock.set(0.25)
    assert first.done()
    await clock.set(0.74)
    assert not second.done()
    await clock.set(0.75)
    assert second.done()


async def test_refill_stops_at_capacity(clock: FakeClock) -> None:
    bucket = TokenBucket(10, 3)
    await drain(bucket)
    await clock.advance(100)
    await drain(bucket)  # three tokens, not a thousand
    late = start(bucket.acquire())
    await settle()
    assert not late.done()
    await clock.advance(0.1)
    assert late.done()


async def test_async_with_takes_one_token(clock: FakeClock) -> None:
    bucket = TokenBucket(1, 2)

    async def enter() -> None:
        async with bucket:
            pass

    await enter()
    await enter()
    late = start(enter())
    await settle()
    assert not late.done()
    await clock.advance(1)
    assert late.done()


# --- fairness and the timer ---------------------------------------------------------------------


async def test_fifo_with_mixed_sizes(clock: FakeClock) -> None:
    bucket = TokenBucket(1, 5)
    await drain(bucket)
    order: list[str] = []

    async def take(name: str, tokens: int) -> None:
        await bucket.acquire(tokens)
        order.append(name)

    tasks = [start(take("big", 3)), start(take("small", 1)), start(take("mid", 2))]
    await clock.set(1)  # one token: "small" would fit, but may not overtake "big"
    assert order == []
    await clock.set(3)
    assert order == ["big"]
    await clock.set(4)
    assert order == ["big", "small"]
    await clock.set(5.9)
    assert order == ["big", "small"]
    await clock.set(6)
    assert order == ["big", "small", "mid"]
    await asyncio.gather(*tasks)


async def test_newcomer_queues_behind_waiters_even_when_tokens_suffice(clock: FakeClock) -> None:
    bucket = TokenBucket(1, 5)
    await drain(bucket)
    big = start(bucket.acquire(5))
    await clock.set(2)  # two tokens in the bucket, "big" still waits for five
    small = start(bucket.acquire(1))
    await settle()
    assert not small.done()
    await clock.set(5)
    assert big.done()
    assert not small.done()
    await clock.set(6)
    assert small.done()


async def test_fast_path_creates_no_future_and_no_timer(clock: FakeClock) -> None:
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(1, 10)
    with (
        mock.patch.object(loop, "create_future", wraps=loop.create_future) as create_future,
        mock.patch.object(loop, "call_at", wraps=loop.call_at) as call_at,
    ):
        await drain(bucket)
        await clock.advance(3)
        await bucket.acquire(3)
    create_future.assert_not_called()
    call_at.assert_not_called()
    assert bucket._timer is None


async def test_one_timer_however_many_waiters(clock: FakeClock, timers: TimerSpy) -> None:
    bucket = TokenBucket(1, 1)
    await bucket.acquire()
    waiters = [start(bucket.acquire()) for _ in range(50)]
    await settle(50)  # many loop rounds with a frozen clock: no polling, no re-arming
    assert timers.pending() == [1.0]  # armed for exactly when the head can go
    for done in range(1, 51):
        await clock.advance(1)
        assert sum(w.done() for w in waiters) == done
        assert timers.pending() == ([done + 1.0] if done < 50 else [])
    assert len(timers.handles) == 50  # one timer per wake-up, never more
    assert bucket._timer is None


# --- cancellation ------------------------------------------------------------------------------


async def test_cancelled_head_takes_no_token_and_unblocks_the_next(
    clock: FakeClock, timers: TimerSpy
) -> None:
    bucket = TokenBucket(1, 2)
    await drain(bucket)
    big, small = start(bucket.acquire(2)), start(bucket.acquire(1))
    await clock.set(1)
    assert not small.done()
    assert timers.pending() == [2.0]
    big.cancel()
    await settle()
    assert big.cancelled()
    assert small.done()  # at t=1, not t=3: "big" took nothing
    after = start(bucket.acquire(1))
    await settle()
    assert timers.pending() == [2.0]
    await clock.set(1.9)
    assert not after.done()
    await clock.set(2)
    assert after.done()


async def test_cancelled_middle_waiter_takes_no_token(clock: FakeClock) -> None:
    bucket = TokenBucket(1, 1)
    await drain(bucket)
    first, middle, last = (start(bucket.acquire()) for _ in range(3))
    await settle()
    middle.cancel()
    await clock.set(1)
    assert first.done()
    await clock.set(2)
    assert middle.cancelled()
    assert last.done()
    assert bucket._timer is None


async def test_granted_then_cancelled_gives_tokens_back(clock: FakeClock, timers: TimerSpy) -> None:
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(1, 1)
    await drain(bucket)
    first, second = start(bucket.acquire()), start(bucket.acquire())
    await settle()
    # The bucket's timer (due at t=1) grants "first"; this one runs right after it in the same
    # loop round, before "first" resumes, which is the race being tested.
    loop.call_at(1.5, first.cancel)
    await clock.set(2)
    assert first.cancelled()
    assert second.done()  # got the token "first" gave back, at t=2 instead of t=3
    assert timers.pending() == []


async def test_granted_then_cancelled_refunds_nothing_after_a_pause(clock: FakeClock) -> None:
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(1, 1)
    await drain(bucket)
    first, second = start(bucket.acquire()), start(bucket.acquire())
    await settle()

    def pause_then_cancel() -> None:
        bucket.pause(10)
        first.cancel()

    loop.call_at(1.5, pause_then_cancel)
    await clock.set(2)
    assert first.cancelled()
    await clock.set(12.9)  # the pause emptied the bucket; a refund would let "second" through
    assert not second.done()
    await clock.set(13)
    assert second.done()


# --- pause ---------------------------------------------------------------------------------------


async def test_pause_holds_fast_path_acquirers(clock: FakeClock) -> None:
    bucket = TokenBucket(2, 5)
    bucket.pause(10)
    waiter = start(bucket.acquire())
    await clock.set(10)
    assert not waiter.done()
    await clock.set(10.5)  # the refill restarts at the pause's end
    assert waiter.done()


async def test_pause_holds_queued_waiters(clock: FakeClock, timers: TimerSpy) -> None:
    bucket = TokenBucket(1, 1)
    await drain(bucket)
    waiter = start(bucket.acquire())
    await clock.set(0.5)
    assert timers.pending() == [1.0]
    bucket.pause(5)
    assert timers.pending() == [6.5]  # the one timer moved to the pause's end plus a token
    await clock.set(1)  # when it was due before the pause
    assert not waiter.done()
    await clock.set(6.4)
    assert not waiter.done()
    await clock.set(6.5)
    assert waiter.done()


async def test_pause_empties_the_bucket(clock: FakeClock) -> None:
    bucket = TokenBucket(1, 5)
    bucket.pause(1)
    await clock.set(3)  # two seconds of refill since the pause ended, not a full bucket
    await bucket.acquire(2)
    late = start(bucket.acquire())
    await clock.set(3.9)
    assert not late.done()
    await clock.set(4)
    assert late.done()


async def test_pauses_extend_and_never_shorten(clock: FakeClock) -> None:
    bucket = TokenBucket(1, 1)
    bucket.pause(10)
    await clock.set(1)
    bucket.pause(3)  # ends at 4: must not shorten the pause ending at 10
    waiter = start(bucket.acquire())
    await clock.set(10.9)
    assert not waiter.done()
    bucket.pause(5)  # ends at 15.9: extends it
    await clock.set(16.8)
    assert not waiter.done()
    await clock.set(16.9)
    assert waiter.done()


@pytest.mark.parametrize("seconds", [0, -5.0])
async def test_pause_of_zero_or_less_does_nothing(clock: FakeClock, seconds: float) -> None:
    bucket = TokenBucket(1, 3)
    bucket.pause(seconds)
    await bucket.acquire(3)


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -math.inf])
def test_pause_rejects_nan_and_infinity(seconds: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        TokenBucket(1).pause(seconds)


async def test_pause_works_from_a_sync_callback(clock: FakeClock) -> None:
    bucket = TokenBucket(1, 3)
    asyncio.get_running_loop().call_soon(bucket.pause, 2)
    await settle()
    waiter = start(bucket.acquire())
    await clock.set(2.9)
    assert not waiter.done()
    await clock.set(3)
    assert waiter.done()


def test_pause_needs_a_loop_or_a_bucket_that_was_used() -> None:
    with pytest.raises(RuntimeError, match="never been used"):
        TokenBucket(1).pause(1)


# --- event loops --------------------------------------------------------------------------------


def test_module_level_bucket_survives_successive_asyncio_run() -> None:
    bucket = TokenBucket(1, 1)
    clock = FakeClock()

    async def main() -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        with mock.patch.object(loop, "time", clock):
            await clock.advance(1)
            await bucket.acquire()
            waiter = start(bucket.acquire())
            await settle()
            assert not waiter.done()
            await clock.advance(1)
            assert waiter.done()
        return loop

    first = asyncio.run(main())
    second = asyncio.run(main())
    assert first is not second
    assert bucket._loop is second


def test_pause_outside_a_loop_uses_the_last_loop_and_carries_over() -> None:
    bucket = TokenBucket(1000, 1000)
    asyncio.run(bucket.acquire())
    bucket.pause(1000)  # no loop running: measured on the last loop's clock

    async def held() -> bool:
        waiter = start(bucket.acquire())
        await settle()
        done = waiter.done()
        waiter.cancel()
        return done

    assert asyncio.run(held()) is False


def test_waiters_on_another_running_loop_forbid_use() -> None:
    bucket = TokenBucket(0.001, 1)  # real clock: the queued one's token is 1000 s away
    loop = asyncio.new_event_loop()
    try:

        async def queue_one() -> asyncio.Task[None]:
            await bucket.acquire()
            waiter = start(bucket.acquire())
            await settle()
            return waiter

        waiter = loop.run_until_complete(queue_one())
        assert not waiter.done()

        async def acquire_elsewhere() -> None:
            await bucket.acquire()

        async def pause_elsewhere() -> None:
            bucket.pause(1)

        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(acquire_elsewhere())
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(pause_elsewhere())
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            loop.run_until_complete(waiter)
    finally:
        loop.close()
    # Nobody waits any more, so the bucket may move.
    asyncio.run(pause_elsewhere())


def test_waiters_of_a_closed_loop_are_forgotten() -> None:
    bucket = TokenBucket(1000, 1)  # real clock: a fast rate keeps the waits to milliseconds
    loop = asyncio.new_event_loop()
    try:

        async def strand_one() -> Coroutine[Any, Any, None]:
            await bucket.acquire()
            # Stepped by hand rather than as a task, so closing the loop leaves no pending task.
            stranded = bucket.acquire()
            stranded.send(None)
            return stranded

        stranded = loop.run_until_complete(strand_one())
    finally:
        loop.close()
    assert bucket._waiters
    bucket.pause(0.001)  # no running loop, and the bucket's loop is closed: must not raise

    async def acquire_elsewhere() -> None:
        await bucket.acquire()

    asyncio.run(acquire_elsewhere())
    assert not bucket._waiters
    stranded.close()


# --- properties ---------------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[float, float, list[tuple[float, int, float | None]]]:
    """A rate, a capacity, and arrivals as (gap since previous, tokens, cancel after or None)."""
    rate = draw(st.floats(0.2, 50, allow_nan=False, allow_infinity=False))
    capacity = draw(st.floats(1, 8, allow_nan=False, allow_infinity=False))
    arrivals = draw(
        st.lists(
            st.tuples(
                st.floats(0, 2),
                st.integers(1, int(capacity)),
                st.none() | st.floats(0, 3),
            ),
            min_size=1,
            max_size=25,
        )
    )
    return rate, capacity, arrivals


async def run_scenario(
    rate: float,
    capacity: float,
    arrivals: list[tuple[float, int, float | None]],
    pauses: list[tuple[float, float]],
) -> tuple[list[tuple[float, int, int]], list[asyncio.Task[None]]]:
    """Play arrivals, cancellations and pauses on a fake clock; return (time, tokens, index)."""
    clock = FakeClock()
    bucket = TokenBucket(rate, capacity)
    grants: list[tuple[float, int, int]] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(index: int, tokens: int) -> None:
        await bucket.acquire(tokens)
        grants.append((clock.now, tokens, index))

    async def advance_to(when: float) -> None:
        # Stop at every deadline on the way, so grants are recorded at their exact time.
        while (timer := bucket._timer) is not None and timer.when() <= when:
            await clock.set(max(clock.now, timer.when()))
        await clock.set(max(clock.now, when))

    events: list[tuple[float, int, str, int | float]] = []
    at = 0.0
    for index, (gap, _tokens, cancel_after) in enumerate(arrivals):
        at += gap
        events.append((at, len(events), "arrive", index))
        if cancel_after is not None:
            events.append((at + cancel_after, len(events), "cancel", index))
    for when, seconds in pauses:
        events.append((when, len(events), "pause", seconds))

    with mock.patch.object(asyncio.get_running_loop(), "time", clock):
        for when, _, kind, arg in sorted(events):
            await advance_to(when)
            if kind == "arrive":
                index = int(arg)
                tasks.append(start(one(index, arrivals[index][1])))
            elif kind == "cancel":
                tasks[int(arg)].cancel()
            else:
                bucket.pause(arg)
            await settle()
        for _ in range(200):
            if bucket._timer is None:
                break
            await advance_to(bucket._timer.when())
        assert not bucket._waiters
        assert bucket._timer is None
        await asyncio.gather(*tasks, return_exceptions=True)
    return grants, tasks


@settings(max_examples=150, deadline=None)
@given(
    scenario=scenarios(),
    pauses=st.lists(st.tuples(st.floats(0, 10), st.floats(-1, 3)), max_size=3),
)
def test_window_bound_fifo_and_liveness(
    scenario: tuple[float, float, list[tuple[float, int, float | None]]],
    pauses: list[tuple[float, float]],
) -> None:
    rate, capacity, arrivals = scenario
    grants, tasks = asyncio.run(run_scenario(rate, capacity, arrivals, pauses))

    # Over every window [t_i, t_j] that starts at a grant: at most capacity + rate * T tokens.
    epsilon = 1e-6 * (1 + rate + capacity)
    by_time = sorted(grants)
    for i, (start_at, _, _) in enumerate(by_time):
        admitted = 0
        for end_at, tokens, _ in by_time[i:]:
            admitted += tokens
            assert admitted <= capacity + rate * (end_at - start_at) + epsilon

    # A pause admits nobody until it ends and one token has refilled.
    for paused_at, seconds in pauses:
        if seconds > 0:
            resume = paused_at + seconds + 1 / rate - epsilon
            assert not [when for when, _, _ in grants if paused_at < when < resume]

    # First come, first served: grants happen in arrival order.
    indices = [index for _, _, index in grants]
    assert indices == sorted(indices)

    # Every acquirer that was not cancelled got its tokens.
    granted = set(indices)
    for index, task in enumerate(tasks):
        assert (index in granted) != task.cancelled()


@settings(max_examples=100, deadline=None)
@given(scenario=scenarios())
def test_grants_match_an_ideal_fifo_bucket(
    scenario: tuple[float, float, list[tuple[float, int, float | None]]],
) -> None:
    rate, capacity, arrivals = scenario
    arrivals = [(gap, tokens, None) for gap, tokens, _ in arrivals]
    grants, _ = asyncio.run(run_scenario(rate, capacity, arrivals, []))

    # The reference: each request is served as soon as it, everyone before it, and the
    # continuously refilled bucket allow.
    expected: list[float] = []
    level, last, arrived, previous = capacity, 0.0, 0.0, 0.0
    for gap, tokens, _ in arrivals:
        arrived += gap
        now = max(arrived, previous)
        level = min(capacity, level + (now - last) * rate)
        if level < tokens:
            now += (tokens - level) / rate
            level = float(tokens)
        level -= tokens
        last = previous = now
        expected.append(now)
    assert [when for when, _, _ in grants] == pytest.approx(expected, rel=1e-9, abs=1e-6)
