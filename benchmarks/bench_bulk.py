"""``purchase_many`` throughput against the Sandbox, beside the same work done with raw aiohttp.

The :class:`~twilio_numbers_async.sandbox.Sandbox` (faults off) runs in its own process, pinned
to one CPU; this process is pinned to the other. Each run buys ``requests`` distinct numbers
(each run its own area code, as the sandbox sells a number only once), with the same five form
fields as the CPU benchmark:

- ``purchase_many``: ``client.purchase_many(generator, concurrency=c)``, the limiter off
  (``rate_limit=None``), ``max_concurrency=c``, retries on, every outcome checked;
- ``raw aiohttp``: ``c`` worker tasks pulling from the same kind of generator, each sending with
  the hand-tuned aiohttp client of ``clients.py`` (bytes body, precomputed header, orjson).

Rounds alternate which goes first. The sandbox does far more per request than the canned server
(authentication, spec validation, inventory, records), so at high concurrency it, not the
client, sets the pace: the client CPU per request is then the figure to compare, and the
sandbox's CPU per request is shown beside it.

Run on its own: ``python -m benchmarks.bench_bulk [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote_plus

from twilio_numbers_async import NumberPurchase, TwilioNumbersClient

from .clients import (
    FRIENDLY_NAME,
    SMS_URL,
    VOICE_METHOD,
    VOICE_URL,
    StatusError,
    Tuned,
    TunedNumber,
    loads,
)
from .server import ACCOUNT_SID, AUTH_TOKEN, ServerProcess, pin

CONCURRENCIES = (1, 16, 64)
SERVER_CPU, CLIENT_CPU = 0, 1


def numbers(area: int, count: int) -> Iterator[str]:
    return (f"+1{area}{5_550_000 + i:07d}" for i in range(count))


def requests(area: int, count: int) -> Iterator[NumberPurchase]:
    """Built lazily, one at a time, as ``purchase_many`` pulls them."""
    for number in numbers(area, count):
        yield NumberPurchase(
            phone_number=number,
            friendly_name=FRIENDLY_NAME,
            sms_url=SMS_URL,
            voice_url=VOICE_URL,
            voice_method=VOICE_METHOD,
        )


async def ours(base_url: str, area: int, count: int, concurrency: int) -> int:
    client = TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        base_url=base_url,
        rate_limit=None,
        max_concurrency=concurrency,
    )
    bought = 0
    async with client:
        async for outcome in client.purchase_many(requests(area, count), concurrency=concurrency):
            if not outcome.ok:
                raise AssertionError(f"purchase_many: {outcome.request!r} failed: {outcome.error}")
            bought += 1
    return bought


class _RawBuyer(Tuned):
    """The hand-tuned client, but buying a given number rather than a counter's."""

    async def buy(self, number: str) -> object:
        assert self.session is not None
        body = f"PhoneNumber={quote_plus(number)}{self.rest}".encode()
        async with self.session.post(self.url, data=body, headers=self.headers) as response:
            payload = await response.read()
            if response.status != 201:
                raise StatusError(response.status, payload[:200])
        return TunedNumber(loads(payload))


async def raw(base_url: str, area: int, count: int, concurrency: int) -> int:
    buyer = _RawBuyer()
    await buyer.open(base_url)
    source = numbers(area, count)
    bought = 0

    async def worker() -> None:
        nonlocal bought
        for number in source:  # shared: each worker takes the next number
            await buyer.buy(number)
            bought += 1

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await buyer.close()
    return bought


async def _timed(
    kind: str, base_url: str, area: int, count: int, concurrency: int
) -> dict[str, Any]:
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run = ours if kind == "purchase_many" else raw
    bought = await run(base_url, area, count, concurrency)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    if bought != count:
        raise AssertionError(f"{kind}: bought {bought} of {count}")
    return {"cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0}


def measure(
    *, rounds: int, count: int, concurrencies: Sequence[int] = CONCURRENCIES, progress: bool = True
) -> dict[str, Any]:
    client_pin = pin(CLIENT_CPU)
    cells: list[dict[str, Any]] = []
    area = 201
    with ServerProcess("sandbox", cpu=SERVER_CPU) as server:
        for round_ in range(rounds):
            for concurrency in concurrencies:
                order = ["purchase_many", "raw aiohttp"]
                if (round_ + concurrency) % 2:
                    order.reverse()
                for kind in order:
                    server_cpu0 = server.cpu_seconds()
                    cost = asyncio.run(_timed(kind, server.url, area, count, concurrency))
                    server_cpu1 = server.cpu_seconds()
                    area += 1
                    cells.append(
                        {
                            "client": kind,
                            "concurrency": concurrency,
                            "round": round_,
                            "requests": count,
                            "rps": count / cost["wall_s"],
                            "cpu_us": 1e6 * cost["cpu_s"] / count,
                            "server_cpu_us": (
                                1e6 * (server_cpu1 - server_cpu0) / count
                                if server_cpu0 is not None and server_cpu1 is not None
                                else None
                            ),
                        }
                    )
            if progress:
                print(f"  bulk: round {round_ + 1}/{rounds} done", flush=True)
        server_pin = server.pinned
    return {
        "requests_per_run": count,
        "rounds": rounds,
        "client_pinned": client_pin,
        "server_pinned": server_pin,
        "cells": cells,
        "summary": summarise(cells),
    }


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, dict[str, Any]] = {}
    for cell in cells:
        entry = table.setdefault(str(cell["concurrency"]), {}).setdefault(cell["client"], {})
        for metric in ("rps", "cpu_us", "server_cpu_us"):
            if cell[metric] is not None:
                entry.setdefault(metric, []).append(cell[metric])
    return {
        concurrency: {
            kind: {
                metric: {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
                for metric, values in metrics.items()
            }
            for kind, metrics in entry.items()
        }
        for concurrency, entry in table.items()
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"{results['requests_per_run']:,} purchases per run, {results['rounds']} round(s), "
        "Sandbox (faults off) in its own process",
        "",
        "| concurrency | client | purchases/s | client CPU µs/purchase | sandbox CPU µs/purchase "
        "| purchases/s vs raw |",
        "|---:|:---|---:|---:|---:|---:|",
    ]
    for concurrency, entry in results["summary"].items():
        raw_rps = entry.get("raw aiohttp", {}).get("rps", {}).get("median")
        for kind in ("purchase_many", "raw aiohttp"):
            if kind not in entry:
                continue
            m = entry[kind]
            server = m.get("server_cpu_us", {}).get("median")
            lines.append(
                f"| {concurrency} | {kind} | {m['rps']['median']:.0f} "
                f"| {m['cpu_us']['median']:.0f} "
                f"| {'-' if server is None else f'{server:.0f}'} "
                f"| {m['rps']['median'] / raw_rps:.2f} |"
                if raw_rps
                else ""
            )
    return "\n".join(lines)


def run(*, quick: bool) -> dict[str, Any]:
    return measure(rounds=1 if quick else 2, count=1_000 if quick else 10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description="purchase_many against the Sandbox.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(quick=args.quick)
    print(json.dumps(results, indent=2) if args.json else markdown(results))


if __name__ == "__main__":
    main()
