"""Peak memory of ``purchase_many`` over a long streamed input, with and without a journal.

Each measurement runs in a fresh Python process (``--child``), so that its RSS high-water mark
(``VmHWM``; ``ru_maxrss`` where there is no /proc) is its own: imports, the client, and a
``purchase_many`` over ``N`` requests produced one at a time by a generator, at concurrency 64,
every outcome consumed and dropped as it arrives. The canned server answers from its own
process, so its memory is not counted. The baseline is the RSS just before the run starts
(everything imported, the client built), so ``peak - baseline`` is what the run itself added.

Run on its own: ``python -m benchmarks.bench_memory [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .server import ServerProcess, pin

SERVER_CPU, CLIENT_CPU = 0, 1
CONCURRENCY = 64


def _peak_rss_mb() -> float:
    """This process's RSS high-water mark, in MB.

    Linux keeps ``ru_maxrss`` across ``exec``: a child started by a large parent (the full run
    has the twilio SDK loaded) would report the parent's peak. ``VmHWM`` in /proc belongs to
    the process's own memory map, so it is read there first; ``ru_maxrss`` elsewhere.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _ru_maxrss_mb()


def _ru_maxrss_mb() -> float:
    # KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _current_rss_mb() -> float | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


async def _child(base_url: str, count: int, journal: str | None) -> dict[str, Any]:
    from twilio_numbers_async import NumberPurchase, TwilioNumbersClient

    from .clients import FRIENDLY_NAME, SMS_URL, VOICE_METHOD, VOICE_URL
    from .server import ACCOUNT_SID, AUTH_TOKEN

    def requests() -> Iterator[NumberPurchase]:
        for i in range(count):
            yield NumberPurchase(
                phone_number=f"+1415{5_550_000 + i:07d}",
                friendly_name=FRIENDLY_NAME,
                sms_url=SMS_URL,
                voice_url=VOICE_URL,
                voice_method=VOICE_METHOD,
            )

    client = TwilioNumbersClient(
        ACCOUNT_SID, AUTH_TOKEN, base_url=base_url, rate_limit=None, max_concurrency=CONCURRENCY
    )
    baseline = _peak_rss_mb()
    bought = 0
    started = time.perf_counter()
    async with client:
        async for outcome in client.purchase_many(
            requests(), concurrency=CONCURRENCY, journal=journal
        ):
            if not outcome.ok:
                raise AssertionError(f"{outcome.request!r}: {outcome.error}")
            bought += 1
    seconds = time.perf_counter() - started
    if bought != count:
        raise AssertionError(f"bought {bought} of {count}")
    return {
        "requests": count,
        "journal": journal is not None,
        "baseline_mb": baseline,
        "peak_mb": _peak_rss_mb(),
        "ru_maxrss_mb": _ru_maxrss_mb(),
        "end_rss_mb": _current_rss_mb(),
        "seconds": seconds,
    }


def _measure_one(base_url: str, count: int, journal: bool) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as directory:
        command = [
            sys.executable,
            "-m",
            "benchmarks.bench_memory",
            "--child",
            "--url",
            base_url,
            "--n",
            str(count),
        ]
        if journal:
            command += ["--journal", str(Path(directory) / "bench.jsonl")]
        done = subprocess.run(  # noqa: S603 - this interpreter, our own module
            command, cwd=root, capture_output=True, check=False, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"memory child failed:\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        path = Path(directory) / "bench.jsonl"
        result["journal_mb"] = path.stat().st_size / 1e6 if journal else None
        return result


def measure(counts: Sequence[int], *, progress: bool = True) -> dict[str, Any]:
    rows = []
    pin(CLIENT_CPU)  # the children inherit it
    with ServerProcess("canned", cpu=SERVER_CPU) as server:
        for journal in (False, True):
            for count in counts:
                rows.append(_measure_one(server.url, count, journal))
                if progress:
                    row = rows[-1]
                    print(
                        f"  memory: {count:,} requests, journal={journal}: "
                        f"peak {row['peak_mb']:.1f} MB",
                        flush=True,
                    )
    return {"concurrency": CONCURRENCY, "rows": rows}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"purchase_many at concurrency {results['concurrency']}, input streamed from a "
        "generator, a fresh process per row",
        "",
        "| requests | journal | peak RSS (MB) | baseline RSS (MB) | peak - baseline (MB) "
        "| journal file (MB) | seconds |",
        "|---:|:---|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        journal_mb = "-" if row["journal_mb"] is None else f"{row['journal_mb']:.0f}"
        lines.append(
            f"| {row['requests']:,} | {'yes' if row['journal'] else 'no'} "
            f"| {row['peak_mb']:.1f} | {row['baseline_mb']:.1f} "
            f"| {row['peak_mb'] - row['baseline_mb']:.1f} | {journal_mb} | {row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def run(*, quick: bool) -> dict[str, Any]:
    return measure((2_000, 10_000) if quick else (10_000, 50_000, 100_000))


def main() -> None:
    parser = argparse.ArgumentParser(description="Peak memory of purchase_many.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--journal", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.url, args.n, args.journal))))
        return
    results = run(quick=args.quick)
    print(json.dumps(results, indent=2) if args.json else markdown(results))


if __name__ == "__main__":
    main()
