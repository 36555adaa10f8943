"""Benchmark the Redis-backed limiter: how accurate its shared rate is, and what an acquire costs.

Accuracy: for each rate, 1 and then 4 worker processes (8 acquirers each) share one
:class:`~twilio_numbers_async.redis_limiter.RedisTokenBucket` for a few seconds. The table shows
the rate achieved beyond the initial burst (grants after it, divided by the time from the first
grant to the last, all processes together, on the machine's monotonic clock) and the round trips
(script calls, from the server's ``INFO commandstats``) per acquire. With ``capacity=1`` a
waiter may only go once the one ahead of it has gone, so every late wake-up is lost time; with
the default capacity (one second's worth) the bucket banks it.

Overhead: microseconds per uncontended ``await acquire()`` (the bucket never runs dry), against
the in-process :class:`~twilio_numbers_async.ratelimit.TokenBucket` and a bare redis-py
``EVALSHA`` of ``return 1`` (the floor: one loopback round trip through redis-py).

Usage::

    python benchmarks/bench_redis.py [--json] [--redis-url redis://...]

Without ``--redis-url`` it starts a throw-away ``redis-server`` on a free loopback port (it must
be installed: ``bash .ci/install-redis``). Takes about a minute. Uses the keys
``twilio-numbers:{bench-...}:*`` (they expire by themselves).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis

from twilio_numbers_async.ratelimit import TokenBucket
from twilio_numbers_async.redis_limiter import RedisTokenBucket

RATES = (10, 100, 1000)
PROCESSES = (1, 4)
ACQUIRERS = 8  # per process
DURATION = 3.0  # seconds per row
OVERHEAD_CALLS = 5_000
LOCAL_CALLS = 200_000
REPEATS = 3


# --- a worker process -----------------------------------------------------------------------


async def worker(url: str, name: str, rate: float, capacity: float) -> None:
    """Acquire as fast as allowed for DURATION after "go" on stdin; print the grant times."""
    bucket = await RedisTokenBucket.from_url(url, name=name, rate=rate, capacity=capacity)
    grants: list[float] = []
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        deadline = time.monotonic() + DURATION

        async def acquirer() -> None:
            while time.monotonic() < deadline:
                await bucket.acquire()
                grants.append(time.monotonic())

        await asyncio.gather(*(acquirer() for _ in range(ACQUIRERS)))
    finally:
        await bucket.aclose()
    print(json.dumps(grants), flush=True)


# --- the accuracy rows ----------------------------------------------------------------------


async def measure_rate(url: str, rate: float, capacity: float, processes: int) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex}"
    admin = Redis.from_url(url)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            url,
            name,
            str(rate),
            str(capacity),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"ready"
        await admin.config_resetstat()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        grants: list[float] = []
        for proc in procs:
            out, _ = await proc.communicate()
            grants += json.loads(out.splitlines()[-1])
        stats = await admin.info("commandstats")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.communicate()
        await admin.aclose()
    grants.sort()
    calls = sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))
    burst = int(capacity)
    achieved = (len(grants) - burst) / (grants[-1] - grants[0])
    return {
        "rate": rate,
        "capacity": capacity,
        "processes": processes,
        "grants": len(grants),
        "achieved_per_s": round(achieved, 2),
        "error_pct": round(100 * (achieved - rate) / rate, 2),
        "round_trips_per_acquire": round(calls / len(grants), 2),
    }


# --- the overhead rows ----------------------------------------------------------------------


async def per_call_us(call: Any, calls: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            await call()
        best = min(best, (time.perf_counter() - start) / calls)
    return round(best * 1e6, 2)


async def measure_overhead(url: str) -> dict[str, float]:
    local = TokenBucket(1e12, 1e12)
    bucket = await RedisTokenBucket.from_url(url, name=f"bench-{uuid.uuid4().hex}", rate=1e9)
    slots = bucket.semaphore(1_000_000, lease=30)
    admin = Redis.from_url(url)
    floor = admin.register_script("return 1")

    async def bare_eval() -> None:
        await floor(keys=["bench"], args=[])

    async def slot() -> None:
        async with slots:
            pass

    try:
        return {
            "token_bucket_us": await per_call_us(local.acquire, LOCAL_CALLS),
            "evalsha_floor_us": await per_call_us(bare_eval, OVERHEAD_CALLS),
            "redis_bucket_us": await per_call_us(bucket.acquire, OVERHEAD_CALLS),
            "redis_slot_us": await per_call_us(slot, OVERHEAD_CALLS),
        }
    finally:
        await bucket.aclose()
        await admin.aclose()


# --- running it -----------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed: run `bash .ci/install-redis` or pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(  # noqa: S603 - our own arguments
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(500):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait()


async def run(url: str) -> dict[str, Any]:
    rows = [
        await measure_rate(url, rate, capacity, processes)
        for rate in RATES
        for capacity in (1, rate)
        for processes in PROCESSES
    ]
    admin = Redis.from_url(url)
    try:
        server = (await admin.info("server"))["redis_version"]
    finally:
        await admin.aclose()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "redis": server,
        "duration_s": DURATION,
        "rates": rows,
        "overhead": await measure_overhead(url),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"RedisTokenBucket, Python {results['python']}, Redis {results['redis']} on loopback, "
        f"{results['platform']}; {ACQUIRERS} acquirers per process, "
        f"{results['duration_s']} s per row",
        "",
        "| rate/s | capacity | processes | grants | achieved/s | error | round trips/acquire |",
        "|-------:|---------:|----------:|-------:|-----------:|------:|--------------------:|",
    ]
    lines += [
        f"| {r['rate']:g} | {r['capacity']:g} | {r['processes']} | {r['grants']} "
        f"| {r['achieved_per_s']:.2f} | {r['error_pct']:+.2f}% "
        f"| {r['round_trips_per_acquire']:.2f} |"
        for r in results["rates"]
    ]
    cost = results["overhead"]
    lines += [
        "",
        "| uncontended call | µs/call |",
        "|:-----------------|--------:|",
        f"| `await TokenBucket.acquire()` (in-process) | {cost['token_bucket_us']:.2f} |",
        f"| redis-py `EVALSHA` of `return 1` (the floor) | {cost['evalsha_floor_us']:.1f} |",
        f"| `await RedisTokenBucket.acquire()` | {cost['redis_bucket_us']:.1f} |",
        f"| `async with RedisSemaphore:` (acquire + release) | {cost['redis_slot_us']:.1f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the Redis-backed limiter.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, name, rate, capacity = args.worker
        asyncio.run(worker(url, name, float(rate), float(capacity)))
        return
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(redis_server())
        results = asyncio.run(run(url))
    print(json.dumps(results, indent=2) if args.json else markdown(results))


if __name__ == "__main__":
    main()
