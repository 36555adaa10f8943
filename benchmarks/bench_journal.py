"""Time and peak memory to open a long journal: what a rerun pays before its first request.

A journal of ``N`` bought requests (an intent and an outcome each, the outcome holding the
spec's example number, as ``purchase_many`` writes them) is written once; each measurement then
opens it in a fresh Python process (``--child``), so that the RSS high-water mark is its own.
``peak - baseline`` is what opening added: the index, and whatever reading left behind.

Run on its own: ``python -m benchmarks.bench_journal [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bench_memory import _peak_rss_mb
from .server import ACCOUNT_SID, example_body

ENDPOINT = "IncomingPhoneNumbers.json"


def write_journal(path: Path, count: int) -> None:
    """``count`` bought requests in format version 1, as ``purchase_many`` records them."""
    from twilio_numbers_async._serde import number_to_json, parse_number

    with path.open("w", encoding="ascii") as file:
        for i in range(count):
            phone = f"+1415{5_550_000 + i:07d}"
            form = f"PhoneNumber=%2B{phone[1:]}&FriendlyName=bench"
            digest = hashlib.sha256(f"{ACCOUNT_SID}\n{ENDPOINT}\n{form}".encode()).hexdigest()
            key = f"{digest[:32]}#0"
            number = number_to_json(
                parse_number(201, example_body(sid=f"PN{i:032x}", number=phone))
            )
            for record in (
                {"kind": "intent", "key": key, "index": i, "account": ACCOUNT_SID}
                | {"endpoint": ENDPOINT, "form": form},
                {"kind": "outcome", "key": key, "index": i, "status": "bought", "attempts": 1}
                | {"reconciled": False, "resend": False, "in_doubt": False}
                | {"number": number, "error": None},
            ):
                line = json.dumps({"v": 1, **record}, separators=(",", ":"), ensure_ascii=True)
                file.write(line + "\n")


def _child(path: str) -> dict[str, Any]:
    from twilio_numbers_async.bulk._journal import Journal

    baseline = _peak_rss_mb()
    started = time.perf_counter()
    journal = Journal.open(path)
    seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    asyncio.run(journal.close())
    return {"seconds": seconds, "baseline_mb": baseline, "peak_mb": peak}


def measure(counts: Sequence[int], *, progress: bool = True) -> dict[str, Any]:
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="bench-journal-") as directory:
            path = Path(directory) / "open.jsonl"
            write_journal(path, count)
            done = subprocess.run(  # noqa: S603 - this interpreter, our own module
                [sys.executable, "-m", "benchmarks.bench_journal", "--child", str(path)],
                cwd=Path(__file__).resolve().parent.parent,
                capture_output=True,
                check=False,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"journal child failed:\n{done.stderr}")
            row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            row.update(requests=count, journal_mb=path.stat().st_size / 1e6)
            rows.append(row)
            if progress:
                print(
                    f"  journal: open {count:,} requests in {row['seconds']:.2f} s, "
                    f"+{row['peak_mb'] - row['baseline_mb']:.1f} MB",
                    flush=True,
                )
    return {"rows": rows}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "Journal.open on a journal of N bought requests (an intent and an outcome each), "
        "a fresh process per row",
        "",
        "| requests | journal file (MB) | seconds | peak - baseline (MB) | KB per request |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        added = row["peak_mb"] - row["baseline_mb"]
        lines.append(
            f"| {row['requests']:,} | {row['journal_mb']:.0f} | {row['seconds']:.2f} "
            f"| {added:.1f} | {added * 1024 / row['requests']:.2f} |"
        )
    return "\n".join(lines)


def run(*, quick: bool) -> dict[str, Any]:
    return measure((10_000,) if quick else (10_000, 100_000))


def main() -> None:
    parser = argparse.ArgumentParser(description="Time and peak memory of Journal.open.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child)))
        return
    results = run(quick=args.quick)
    print(json.dumps(results, indent=2) if args.json else markdown(results))


if __name__ == "__main__":
    main()
