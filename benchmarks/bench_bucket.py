"""Benchmark :class:`~twilio_numbers_async.ratelimit.TokenBucket` on the real clock.

For each rate, concurrent acquirers hammer one bucket for a couple of seconds. The table shows
the rate achieved beyond the initial burst (tokens admitted after it, divided by the time to the
last grant) and how far each grant lags an ideal bucket with perfect timers. A timer that fires
late (asyncio waits in whole milliseconds) costs nothing when the bucket has room to bank the
tokens that accrued meanwhile; with ``capacity=1`` they overflow and are lost, so the lag adds
up and the achieved rate drops as the rate nears 1/ms. That is the price of the strict bound
``capacity + rate * T``. It also times an uncontended ``acquire()``, the cost every HTTP
request pays.

Usage::

    python benchmarks/bench_bucket.py [--json]

Takes about 15 seconds and needs nothing beyond the package itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from typing import Any

from twilio_numbers_async.ratelimit import TokenBucket

RATES = (10, 100, 1000)
DURATION = 2.0  # seconds per configuration
WORKERS = 32
FAST_PATH_CALLS = 200_000
FAST_PATH_REPEATS = 5


async def measure_rate(rate: float, capacity: float) -> dict[str, Any]:
    """Run ``WORKERS`` acquirers against one bucket for ``DURATION`` seconds."""
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(rate, capacity)
    grants: list[float] = []

    async def worker() -> None:
        while True:
            await bucket.acquire()
            grants.append(loop.time())

    tasks = [asyncio.create_task(worker()) for _ in range(WORKERS)]
    await asyncio.sleep(DURATION)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    # The bucket starts full at the first grant: ``burst`` tokens go at once, then one every
    # 1 / rate seconds.
    burst = int(capacity)
    first, last = grants[0], grants[-1]
    refilled = len(grants) - burst
    achieved = refilled / (last - first)
    lags = [when - (first + k / rate) for k, when in enumerate(grants[burst:], start=1)]
    return {
        "rate": rate,
        "capacity": capacity,
        "workers": WORKERS,
        "seconds": round(last - first, 3),
        "grants": len(grants),
        "achieved_per_s": round(achieved, 3),
        "error_pct": round(100 * (achieved - rate) / rate, 3),
        "lag_p50_ms": round(1000 * statistics.median(lags), 3),
        "lag_max_ms": round(1000 * max(lags), 3),
    }


async def measure_fast_path() -> dict[str, float]:
    """Nanoseconds per uncontended ``await bucket.acquire()``, and per ``await`` of a no-op."""
    bucket = TokenBucket(1e12, 1e12)  # never runs dry: every call takes the fast path

    async def noop() -> None:
        pass

    async def per_call(make: Any) -> float:
        best = float("inf")
        for _ in range(FAST_PATH_REPEATS):
            start = time.perf_counter_ns()
            for _ in range(FAST_PATH_CALLS):
                await make()
            best = min(best, (time.perf_counter_ns() - start) / FAST_PATH_CALLS)
        return best

    async def enter() -> None:
        async with bucket:
            pass

    return {
        "acquire_ns": round(await per_call(bucket.acquire), 1),
        "async_with_ns": round(await per_call(enter), 1),
        "noop_coroutine_ns": round(await per_call(noop), 1),
    }


async def run() -> dict[str, Any]:
    rows = [
        await measure_rate(rate, capacity)
        for rate in RATES
        for capacity in (1, rate)  # capacity 1: no burst to hide behind; then the default
    ]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "duration_s": DURATION,
        "rates": rows,
        "fast_path": await measure_fast_path(),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"TokenBucket, Python {results['python']} on {results['platform']}, "
        f"{WORKERS} acquirers, {results['duration_s']} s per row",
        "",
        "| rate/s | capacity | grants | achieved/s | error | lag p50 | lag max |",
        "|-------:|---------:|-------:|-----------:|------:|--------:|--------:|",
    ]
    lines += [
        f"| {r['rate']:g} | {r['capacity']:g} | {r['grants']} | {r['achieved_per_s']:.2f} "
        f"| {r['error_pct']:+.2f}% | {r['lag_p50_ms']:.2f} ms | {r['lag_max_ms']:.2f} ms |"
        for r in results["rates"]
    ]
    fast = results["fast_path"]
    lines += [
        "",
        "| uncontended call | ns/call |",
        "|:-----------------|--------:|",
        f"| `await bucket.acquire()` | {fast['acquire_ns']:.0f} |",
        f"| `async with bucket:` | {fast['async_with_ns']:.0f} |",
        f"| `await noop()` (baseline) | {fast['noop_coroutine_ns']:.0f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark TokenBucket on the real clock.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args()
    results = asyncio.run(run())
    print(json.dumps(results, indent=2) if args.json else markdown(results))


if __name__ == "__main__":
    main()
