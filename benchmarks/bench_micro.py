"""What validation, encoding and parsing cost alone, with no I/O: ``timeit``, best of repeats.

- ``NumberPurchase(...)``: building (and so validating) the benchmark's request;
- ``encode_form``: the request as ``application/x-www-form-urlencoded`` bytes;
- ``parse_number``: the canned 201 body (the spec's example resource) to an
  ``IncomingPhoneNumber``, and its parts: ``json.loads`` (and ``orjson.loads``, if installed, for
  comparison), ``parse_rfc2822`` (cached, as the client calls it, and uncached);
- ``purchase()`` through a transport that answers at once: the whole library's own cost per
  purchase (request model, encoding, retry loop, adaptive limit, token bucket, parsing), with
  aiohttp and the socket taken away;
- ``TokenBucket.acquire()`` uncontended.

Run on its own: ``python -m benchmarks.bench_micro [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import timeit
from collections.abc import Callable
from typing import Any

from twilio_numbers_async import (
    NumberPurchase,
    Request,
    Response,
    TokenBucket,
    TwilioNumbersClient,
)
from twilio_numbers_async._serde import encode_form, parse_number, parse_rfc2822

from .clients import FRIENDLY_NAME, SMS_URL, VOICE_METHOD, VOICE_URL
from .server import ACCOUNT_SID, AUTH_TOKEN, example_body

BODY = example_body(date="Thu, 30 Jul 2015 23:19:04 +0000")
DATE = "Thu, 30 Jul 2015 23:19:04 +0000"


def request() -> NumberPurchase:
    return NumberPurchase(
        phone_number="+14155550100",
        friendly_name=FRIENDLY_NAME,
        sms_url=SMS_URL,
        voice_url=VOICE_URL,
        voice_method=VOICE_METHOD,
    )


def per_call_us(fn: Callable[[], object], *, quick: bool) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()  # about 0.2 s per repeat
    if quick:
        number = max(1, number // 4)
    best = min(timer.repeat(repeat=3 if quick else 7, number=number))
    return 1e6 * best / number


class CannedTransport:
    """The transport seam answering the canned 201 at once: no aiohttp, no socket."""

    def __init__(self) -> None:
        self.response = Response(201, {"Content-Type": "application/json"}, BODY)

    async def send(self, request: Request) -> Response:
        return self.response

    async def aclose(self) -> None:
        pass


async def seam_stubbed_us(*, quick: bool) -> float:
    """Microseconds per ``purchase()`` through a transport that answers the canned 201 at once:
    the request model, encoding, retry loop, adaptive limit, token bucket and parsing."""
    client = TwilioNumbersClient(
        ACCOUNT_SID, AUTH_TOKEN, rate_limit=TokenBucket(1e9), transport=CannedTransport()
    )
    n = 5_000 if quick else 20_000
    best = float("inf")
    loop = asyncio.get_running_loop()
    for _ in range(3 if quick else 7):
        start = loop.time()
        for _ in range(n):
            await client.purchase(request())
        best = min(best, loop.time() - start)
    await client.aclose()
    return 1e6 * best / n


def run(*, quick: bool = False) -> dict[str, Any]:
    purchase = request()
    uncached = parse_rfc2822.__wrapped__
    rows: dict[str, float] = {
        "NumberPurchase(...) (validation)": per_call_us(request, quick=quick),
        "encode_form(request)": per_call_us(lambda: encode_form(purchase), quick=quick),
        "parse_number(201 body)": per_call_us(lambda: parse_number(201, BODY), quick=quick),
        "json.loads(201 body)": per_call_us(lambda: json.loads(BODY), quick=quick),
    }
    try:
        import orjson
    except ImportError:
        pass
    else:
        rows["orjson.loads(201 body)"] = per_call_us(lambda: orjson.loads(BODY), quick=quick)
    rows["parse_rfc2822 (cached)"] = per_call_us(lambda: parse_rfc2822(DATE), quick=quick)
    rows["parse_rfc2822 (uncached)"] = per_call_us(lambda: uncached(DATE), quick=quick)
    rows["purchase(), transport answering at once"] = asyncio.run(seam_stubbed_us(quick=quick))

    async def bucket_us() -> float:
        bucket = TokenBucket(1e12)
        n = 50_000 if quick else 200_000
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(n):
            await bucket.acquire()
        return 1e6 * (loop.time() - start) / n

    rows["TokenBucket.acquire() uncontended"] = asyncio.run(bucket_us())
    return {"body_bytes": len(BODY), "us_per_call": rows}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"201 body: {results['body_bytes']} bytes",
        "",
        "| operation | µs per call |",
        "|:---|---:|",
    ]
    lines += [f"| {name} | {us:.2f} |" for name, us in results["us_per_call"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Validation, encoding and parsing, alone.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(quick=args.quick)
    print(json.dumps(results, indent=2) if args.json else markdown(results))


if __name__ == "__main__":
    main()
