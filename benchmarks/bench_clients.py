"""Client CPU per request: ours against plain aiohttp, hand-tuned aiohttp and the twilio SDK.

The canned server (``server.py``) runs in its own process, pinned to one CPU; this process is
pinned to the other. All four clients stay open for the whole run. Each round runs every client
at every concurrency; a cell (one client, one concurrency, one round) is a few slices of calls
spread over ``concurrency`` worker tasks, and the clients' slices take turns in an order that
rotates, so that drift and passing disturbances (other load, CPU frequency, a neighbour on the
host) spread over all four rather than landing on one. A cell's cost is this process's CPU time
(``time.process_time()``) divided by its calls, its throughput the calls per wall-clock second.
After each slice the server confirms it answered exactly that many purchases, and says what CPU
time it spent on them. The ratios (ours / other) are taken per round, between cells measured
side by side.

Run on its own: ``python -m benchmarks.bench_clients [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from .clients import FACTORIES, NAMES, BenchClient, check_result
from .server import ServerProcess, pin

CONCURRENCIES = (1, 16, 64)
SERVER_CPU, CLIENT_CPU = 0, 1


async def server_stats(base_url: str) -> dict[str, Any]:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /_stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    stats: dict[str, Any] = json.loads(data.partition(b"\r\n\r\n")[2])
    return stats


async def drive(client: BenchClient, start: int, requests: int, concurrency: int) -> object:
    """``requests`` calls over ``concurrency`` workers; returns one result to check."""
    per_worker, extra = divmod(requests, concurrency)
    last: list[object] = []

    async def worker(first: int, count: int) -> None:
        create = client.create
        result = None
        for k in range(count):
            result = await create(first + k)
        last.append(result)

    jobs = []
    first = start
    for w in range(concurrency):
        count = per_worker + (w < extra)
        jobs.append(worker(first, count))
        first += count
    await asyncio.gather(*jobs)
    return last[0]


async def measure(
    client: BenchClient, base_url: str, start: int, requests: int, concurrency: int
) -> dict[str, float]:
    """One slice: ``requests`` calls; this process's CPU, the wall clock, the server's CPU."""
    gc.collect()
    before = await server_stats(base_url)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = await drive(client, start, requests, concurrency)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    after = await server_stats(base_url)
    check_result(client.name, result)
    answered = after["purchases"] - before["purchases"]
    if answered != requests or after["rejected"] != before["rejected"]:
        raise AssertionError(
            f"{client.name}: the server answered {answered} purchases of {requests} "
            f"(rejected {after['rejected'] - before['rejected']})"
        )
    return {
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "server_cpu_s": after["cpu_s"] - before["cpu_s"],
    }


async def compare(
    base_url: str,
    *,
    rounds: int,
    slices: int,
    slice_requests: int,
    concurrencies: Sequence[int] = CONCURRENCIES,
    names: Sequence[str] = NAMES,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every client at every concurrency, ``rounds`` times; a cell is ``slices`` slices of
    ``slice_requests`` calls, the clients' slices taking turns, so that a disturbance of a
    few hundred milliseconds lands on all of them rather than on one."""
    clients = [FACTORIES[name]() for name in names]
    cells: list[dict[str, Any]] = []
    counter = 0
    try:
        for client in clients:
            await client.open(base_url)
        # Warm up: connections open, caches and code paths hot.
        for client in clients:
            await drive(client, counter, max(256, 4 * max(concurrencies)), max(concurrencies))
            await drive(client, counter, 64, 1)
            counter += 10_000
        for round_ in range(rounds):
            for concurrency in concurrencies:
                totals = {
                    client.name: dict.fromkeys(("cpu_s", "wall_s", "server_cpu_s"), 0.0)
                    for client in clients
                }
                for slice_ in range(slices):
                    shift = (round_ + slice_) % len(clients)
                    for client in clients[shift:] + clients[:shift]:
                        cost = await measure(client, base_url, counter, slice_requests, concurrency)
                        counter += slice_requests
                        for key, value in cost.items():
                            totals[client.name][key] += value
                requests = slices * slice_requests
                for name, total in totals.items():
                    cells.append(
                        {
                            "client": name,
                            "concurrency": concurrency,
                            "round": round_,
                            "requests": requests,
                            "cpu_us": 1e6 * total["cpu_s"] / requests,
                            "rps": requests / total["wall_s"],
                            "server_cpu_us": 1e6 * total["server_cpu_s"] / requests,
                        }
                    )
            if progress:
                print(f"  clients: round {round_ + 1}/{rounds} done", flush=True)
    finally:
        for client in clients:
            await client.close()
    return cells


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and ranges per client and concurrency, and the per-round ratios."""
    table: dict[str, dict[str, Any]] = {}
    by_key: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for cell in cells:
        by_key.setdefault((cell["client"], cell["concurrency"]), []).append(cell)
    for (name, concurrency), group in sorted(by_key.items()):
        entry = table.setdefault(str(concurrency), {})
        entry[name] = {
            metric: _spread([c[metric] for c in group])
            for metric in ("cpu_us", "rps", "server_cpu_us")
        }
    ratios: dict[str, dict[str, Any]] = {}
    per_round: dict[tuple[int, int], dict[str, float]] = {}
    for cell in cells:
        per_round.setdefault((cell["round"], cell["concurrency"]), {})[cell["client"]] = cell[
            "cpu_us"
        ]
    for (_, concurrency), costs in sorted(per_round.items()):
        if "ours" not in costs:
            continue
        entry = ratios.setdefault(str(concurrency), {})
        for other in ("tuned", "sdk", "plain"):
            if other in costs:
                entry.setdefault(f"ours/{other}", []).append(costs["ours"] / costs[other])
    return {
        "table": table,
        "ratios": {
            c: {name: _spread(values) | {"rounds": values} for name, values in entry.items()}
            for c, entry in ratios.items()
        },
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _cell(spread: dict[str, float], spec: str) -> str:
    return f"{spread['median']:{spec}} ({spread['min']:{spec}}-{spread['max']:{spec}})"


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| in flight | client | CPU µs/request, median (min-max) | requests/s, median (min-max) "
        "| server CPU µs/request |",
        "|---:|:---|---:|---:|---:|",
    ]
    for concurrency, entry in summary["table"].items():
        for name in NAMES:
            if name not in entry:
                continue
            cpu, rps, server = (
                entry[name]["cpu_us"],
                entry[name]["rps"],
                entry[name]["server_cpu_us"],
            )
            lines.append(
                f"| {concurrency} | {name} | {_cell(cpu, '.0f')} | {_cell(rps, '.0f')} "
                f"| {server['median']:.0f} |"
            )
    lines += [
        "",
        "| in flight | ours / tuned | ours / sdk | ours / plain |",
        "|---:|---:|---:|---:|",
    ]
    for concurrency, entry in summary["ratios"].items():
        cells = []
        for key in ("ours/tuned", "ours/sdk", "ours/plain"):
            r = entry.get(key)
            cells.append(_cell(r, ".2f") if r is not None else "-")
        lines.append(f"| {concurrency} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(
    *,
    quick: bool,
    rounds: int | None = None,
    slices: int | None = None,
    slice_requests: int | None = None,
) -> dict[str, Any]:
    rounds = rounds or (3 if quick else 7)
    slices = slices or (2 if quick else 4)
    slice_requests = slice_requests or (128 if quick else 512)
    client_pin = pin(CLIENT_CPU)
    with ServerProcess("canned", cpu=SERVER_CPU) as server:
        cells = asyncio.run(
            compare(server.url, rounds=rounds, slices=slices, slice_requests=slice_requests)
        )
        server_pin = server.pinned
    return {
        "rounds": rounds,
        "slices_per_cell": slices,
        "requests_per_slice": slice_requests,
        "requests_per_cell": slices * slice_requests,
        "concurrencies": list(CONCURRENCIES),
        "client_pinned": client_pin,
        "server_pinned": server_pin,
        "cells": cells,
        "summary": summarise(cells),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Client CPU per request, four clients.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--slices", type=int)
    parser.add_argument("--slice-requests", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(
        quick=args.quick,
        rounds=args.rounds,
        slices=args.slices,
        slice_requests=args.slice_requests,
    )
    print(json.dumps(results, indent=2) if args.json else markdown(results["summary"]))


if __name__ == "__main__":
    main()
