"""Area codes bought through a search beside given numbers, in bulk, with demo faults (issue 15).

    python -m benchmarks.bench_area_codes            # 10,000 purchases a run, 2 rounds
    python -m benchmarks.bench_area_codes --quick    # 1,000 purchases, 1 round

Each run starts a :class:`~twilio_numbers_async.sandbox.Sandbox` in a process of its own, pinned
to CPU 0, built as ``twilio-numbers demo`` builds its own (``Faults.demo()``, an account limit of
20 requests in flight, the same seed every run), with enough stock in every area code. The
client, pinned to CPU 1, is ``TwilioNumbersClient`` with its defaults (``area_codes="search"``,
the adaptive limit, the default retries and timeout) and ``purchase_many(requests,
journal=...)``. Its input is a job's rows spread over 20 area codes (five of them Canadian): once
as area codes, once as given numbers in the same area codes, in the same order. Rounds alternate
which goes first, so that a passing disturbance lands on both.

The Sandbox's records are the evidence: no number or request tag sold twice, every "bought"
outcome is a sale of its tag, every sale is behind a "bought" or "unknown" outcome, and the
``AvailablePhoneNumbers`` GETs it served, per number bought. Results go to
``benchmarks/area_codes.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from twilio_numbers_async import NumberPurchase, TwilioNumbersClient

from .bench_adaptive import CLIENT_CPU, SERVER_CPU, SandboxProcess
from .server import ACCOUNT_SID, AUTH_TOKEN, ServerProcess, pin

HERE: Final = Path(__file__).resolve().parent
SEED: Final = 0
ACCOUNT_LIMIT: Final = 20  # the demo's sandbox: the account takes 20 requests in flight
# 15 US and 5 Canadian area codes (searched in /CA/Local.json).
AREA_CODES: Final = (
    *("212", "213", "305", "312", "415", "503", "512", "617", "646", "702"),
    *("713", "718", "206", "404", "919"),
    *("416", "604", "514", "403", "613"),
)
KINDS: Final = ("area codes", "given numbers")


# --- the sandbox, in a process of its own -----------------------------------------------------


async def serve(stock: int) -> None:
    """The ``serve`` command: the demo's Sandbox; ``stats`` prints what it saw as one JSON line."""
    from twilio_numbers_async.sandbox import Faults, Sandbox

    sandbox = Sandbox(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        faults=Faults.demo(),
        seed=SEED,
        max_concurrency=ACCOUNT_LIMIT,
        area_code_stock=stock,
    )
    loop = asyncio.get_running_loop()
    async with sandbox:
        cpu0 = time.process_time()  # what serving costs, not starting Python
        print(f"READY {sandbox.url}", flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "stats":
                requests: Counter[str] = Counter()
                for record in sandbox.requests:
                    requests[f"{record.method} {_endpoint(record.path)} {record.status}"] += 1
                sales = [(p.friendly_name, p.sid, p.phone_number) for p in sandbox.purchases]
                stats = {"requests": requests, "sales": sales, "cpu": time.process_time() - cpu0}
                print(json.dumps(stats), flush=True)


def _endpoint(path: str) -> str:
    if "/AvailablePhoneNumbers/" in path:
        return "search"
    if path.endswith(("/IncomingPhoneNumbers.json", "/Mobile.json")):
        return "numbers"  # a purchase (POST), or a look-up by number (GET)
    return "other"


class DemoSandbox(SandboxProcess):
    """``with DemoSandbox(stock) as sandbox:``: the ``serve`` command above, in a child."""

    def __init__(self, stock: int) -> None:
        ServerProcess.__init__(self, "sandbox", cpu=SERVER_CPU)
        self.command = [sys.executable, "-m", "benchmarks.bench_area_codes", "serve"]
        self.command.append(f"--stock={stock}")


# --- the run ------------------------------------------------------------------------------------


def tag(index: int) -> str:
    return f"bench-{index:06d}"


def requests(kind: str, count: int) -> Iterator[NumberPurchase]:
    for index in range(count):
        area_code = AREA_CODES[index % len(AREA_CODES)]
        if kind == "area codes":
            yield NumberPurchase(area_code=area_code, friendly_name=tag(index))
        else:  # +1 AAA 6xx xxxx: never in the Sandbox's stock (+1 AAA 555 xxxx), never taken
            number = f"+1{area_code}6{index:06d}"
            yield NumberPurchase(phone_number=number, friendly_name=tag(index))


async def buy(url: str, kind: str, count: int, journal: Path) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    claims: dict[str, tuple[str, str | None, str | None]] = {}
    wrong_area = 0
    cpu0 = time.process_time()
    t0 = loop.time()
    async with TwilioNumbersClient(ACCOUNT_SID, AUTH_TOKEN, base_url=url) as client:
        async for outcome in client.purchase_many(requests(kind, count), journal=journal):
            number = outcome.number
            name = outcome.request.friendly_name or ""
            claims[name] = (outcome.status, number and number.sid, number and number.phone_number)
            area_code = outcome.request.area_code
            if number is not None and area_code and number.phone_number[2:5] != area_code:
                wrong_area += 1
        limit = client.concurrency.limit
    seconds = loop.time() - t0
    statuses = Counter(status for status, _, _ in claims.values())
    return {
        "kind": kind,
        "bought": statuses["bought"],
        "failed": statuses["failed"],
        "unknown": statuses["unknown"],
        "outcomes": len(claims),
        "wrong_area": wrong_area,
        "seconds": seconds,
        "rate": statuses["bought"] / seconds,
        "client_cpu_us": 1e6 * (time.process_time() - cpu0) / max(1, statuses["bought"]),
        "limit_at_end": limit,
        "claims": claims,
    }


def audit(
    claims: dict[str, tuple[str, str | None, str | None]], sales: list[Any]
) -> dict[str, int]:
    """The client's outcomes held against what the Sandbox sold (as the demo's audit does)."""
    sold: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, sid, number in sales:
        sold[name].append((sid, number))
    numbers = Counter(number for _, _, number in sales)
    return {
        "sold": len(sales),
        "numbers_sold_twice": sum(1 for n in numbers.values() if n > 1),
        "double": sum(1 for s in sold.values() if len(s) > 1),
        # A sale whose outcome says failed (or that has no outcome): money spent unknowingly.
        "untracked": sum(1 for name in sold if claims.get(name, ("failed",))[0] == "failed"),
        # A "bought" outcome that is no sale of its tag.
        "phantom": sum(
            1
            for name, (status, sid, number) in claims.items()
            if status == "bought" and (sid, number) not in sold.get(name, ())
        ),
    }


def one_run(kind: str, count: int, stock: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch, DemoSandbox(stock) as sandbox:
        run = asyncio.run(buy(sandbox.url, kind, count, Path(scratch) / "buy.jsonl"))
        stats = sandbox.stats()
    requests_seen: dict[str, int] = stats["requests"]
    searches = sum(n for key, n in requests_seen.items() if " search " in key)
    posts = sum(n for key, n in requests_seen.items() if key.startswith("POST "))
    lookups = sum(n for key, n in requests_seen.items() if key.startswith("GET numbers"))
    claims = run.pop("claims")
    row = {
        **run,
        **audit(claims, stats["sales"]),
        "searches": searches,
        "searches_per_purchase": searches / max(1, run["bought"]),
        "posts": posts,
        "posts_per_purchase": posts / max(1, run["bought"]),
        "lookups": lookups,
        "server_cpu_us": 1e6 * stats["cpu"] / max(1, run["bought"]),
        "sandbox_requests": dict(sorted(requests_seen.items())),
        "load": os.getloadavg()[0],
    }
    print(f"  {line(row)}", flush=True)
    return row


def line(row: dict[str, Any]) -> str:
    return (
        f"{row['kind']:>13}: {row['bought']} bought, {row['failed']} failed, {row['unknown']} "
        f"unknown, {row['double']} double, {row['untracked']} untracked, {row['phantom']} "
        f"phantom; {row['rate']:.0f}/s in {row['seconds']:.1f} s; {row['searches']} searches "
        f"({row['searches_per_purchase']:.3f} a purchase), {row['posts_per_purchase']:.2f} POSTs "
        f"a purchase, {row['lookups']} look-ups; CPU a purchase: client "
        f"{row['client_cpu_us']:.0f} us, sandbox {row['server_cpu_us']:.0f} us"
    )


def run(*, quick: bool, rounds: int) -> dict[str, Any]:
    count = 1_000 if quick else 10_000
    # Twice what a code's share of the rows needs: searches never find a code run dry.
    stock = 2 * count // len(AREA_CODES) + 100
    results: dict[str, Any] = {
        "quick": quick,
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "count": count,
        "area_codes": list(AREA_CODES),
        "stock": stock,
        "seed": SEED,
        "account_limit": ACCOUNT_LIMIT,
        "load_before": os.getloadavg()[0],
        "runs": [],
    }
    for i in range(rounds):
        for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
            results["runs"].append({"round": i + 1, **one_run(kind, count, stock)})
    results["load_after"] = os.getloadavg()[0]
    rates = {kind: [r["rate"] for r in results["runs"] if r["kind"] == kind] for kind in KINDS}
    ratios = [a / g for a, g in zip(rates["area codes"], rates["given numbers"], strict=True)]
    results["ratio"] = statistics.median(ratios)
    results["ratios"] = ratios
    return results


def markdown(results: dict[str, Any]) -> str:
    out = [
        "| run | bought | failed | unknown | double | untracked | phantom | searches a purchase "
        "| POSTs a purchase | purchases/s | seconds |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    out += [
        f"| {row['kind']}, round {row['round']} | {row['bought']} | {row['failed']} "
        f"| {row['unknown']} | {row['double']} | {row['untracked']} | {row['phantom']} "
        f"| {row['searches_per_purchase']:.3f} | {row['posts_per_purchase']:.2f} "
        f"| {row['rate']:.0f} | {row['seconds']:.1f} |"
        for row in results["runs"]
    ]
    ratios = ", ".join(f"{r:.2f}" for r in results["ratios"])
    out += [
        "",
        f"area codes / given numbers, purchases/s: {ratios} (median {results['ratio']:.2f})",
    ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    server = commands.add_parser("serve", help="(internal) the sandbox process")
    server.add_argument("--stock", type=int, required=True)
    parser.add_argument("--quick", action="store_true", help="1,000 purchases a run, 1 round")
    parser.add_argument("--rounds", type=int, help="rounds of both runs (default 2, quick 1)")
    parser.add_argument("--output", type=Path, default=HERE / "area_codes.json")
    args = parser.parse_args()

    if args.command == "serve":
        print(f"server pinned: {pin(SERVER_CPU)}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.stock))
        return
    print(f"client {pin(CLIENT_CPU)}, sandbox on CPU {SERVER_CPU}", flush=True)
    started = time.perf_counter()
    rounds = args.rounds or (1 if args.quick else 2)
    results = run(quick=args.quick, rounds=rounds)
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print()
    print(markdown(results))
    print(f"done in {results['seconds']:.0f} s; results in {args.output}")


if __name__ == "__main__":
    main()
